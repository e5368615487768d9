package broker_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/broker"
	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// toolUpstream is a Go SDK server whose tools answer with their name and
// record every call's arguments.
type toolUpstream struct {
	url   string
	mu    sync.Mutex
	calls []string // "tool arguments"
}

func newToolUpstream(t *testing.T, name string, tools ...string) *toolUpstream {
	t.Helper()
	u := &toolUpstream{}
	server := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
	for _, tool := range tools {
		server.AddTool(&mcp.Tool{Name: tool, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				u.mu.Lock()
				u.calls = append(u.calls, tool+" "+string(req.Params.Arguments))
				u.mu.Unlock()
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: tool + " done"}}}, nil
			})
	}
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(srv.Close)
	u.url = srv.URL + "/mcp"
	return u
}

// callsOf are the calls of tool that reached the upstream, as their
// arguments.
func (u *toolUpstream) callsOf(tool string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, c := range u.calls {
		if name, args, _ := strings.Cut(c, " "); name == tool {
			out = append(out, args)
		}
	}
	return out
}

// chainBroker is a broker in process, as session-chain.yaml describes,
// that the test can stop and start again on the same address and store.
type chainBroker struct {
	addr, url, yaml, trail string
	records, mailer, bank  *toolUpstream
	stop                   func()
}

func startChainBroker(t *testing.T) *chainBroker {
	t.Helper()
	g := &chainBroker{addr: freeAddress(t)}
	g.url = "http://" + g.addr
	g.records = newToolUpstream(t, "records", "read_record")
	g.mailer = newToolUpstream(t, "mailer", "send_email")
	g.bank = newToolUpstream(t, "bank", "transfer", "delete_account")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	policy, err := filepath.Abs("../policies/session_chain.rego")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g.trail = filepath.Join(dir, "audit")
	g.yaml = fmt.Sprintf(scenario(t, "session-chain"), fmt.Sprintf("{bolt: {path: %q}}", filepath.Join(dir, "broker.db")), g.url, demoPasswordHash,
		base64.StdEncoding.EncodeToString(key), g.records.url, g.mailer.url, g.bank.url, policy, g.trail)
	g.start(t)
	t.Cleanup(func() { g.stop() })
	return g
}

// start serves the broker at its address until stop.
func (g *chainBroker) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the last broker's port may take a moment to be free
		if ln, err = net.Listen("tcp", g.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(g.yaml), "test.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.HTTP.Address, cfg.Admin.Address = g.addr, "127.0.0.1:0"
	b, err := broker.New(cfg, broker.Options{Logger: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ServeListener(ctx, ln) }()
	stopped := false
	g.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("broker did not shut down")
		}
	}
}

// userToken is an access token of the embedded Auth Provider for a user,
// through the configured agent client.
func userToken(t *testing.T, base, username string) string {
	t.Helper()
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	query := url.Values{"response_type": {"code"}, "client_id": {"agent"}, "redirect_uri": {"https://agent.example/cb"},
		"state": {"s"}, "resource": {base + "/mcp"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	back := browserLogin(t, base+"/authorize?"+query.Encode(), username, "demo-password", "allow")
	resp, err := http.PostForm(base+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"code_verifier": {verifier}, "redirect_uri": {"https://agent.example/cb"}, "client_id": {"agent"}, "resource": {base + "/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tokens); err != nil || tokens.AccessToken == "" {
		t.Fatalf("no access token for %s: %d %v", username, resp.StatusCode, err)
	}
	return tokens.AccessToken
}

// session is a Go SDK client session with its own MCP session
// (2025-11-25) as the holder of token.
func (g *chainBroker) session(t *testing.T, ctx context.Context, token string) *mcp.ClientSession {
	t.Helper()
	return g.connect(t, ctx, token, sessionful)
}

// connect connects a Go SDK client with opts (nil: the SDK's default, the
// sessionless 2026-07-28 protocol).
func (g *chainBroker) connect(t *testing.T, ctx context.Context, token string, opts *mcp.ClientSessionOptions) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "governed", Version: "1"}, nil)
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.url + "/mcp",
		HTTPClient: &http.Client{Transport: bearerTransport{token: token, base: http.DefaultTransport}}}, opts)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// outcome is what a tool call came to: "ok", the approval URL the
// URLElicitationRequiredError points to, or the error.
type outcome struct {
	ok      bool
	url     string
	message string
	code    int64
}

func chainCall(t *testing.T, ctx context.Context, s *mcp.ClientSession, tool string, args map[string]any) outcome {
	t.Helper()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err == nil {
		if res.IsError {
			t.Fatalf("%s: the upstream failed: %+v", tool, res.Content)
		}
		return outcome{ok: true}
	}
	var rpc *jsonrpc.Error
	if !errors.As(err, &rpc) {
		t.Fatalf("%s: %v", tool, err)
	}
	o := outcome{code: rpc.Code, message: rpc.Message}
	if rpc.Code == -32042 {
		var data struct {
			Elicitations []struct {
				Mode, ElicitationID, URL, Message string
			} `json:"elicitations"`
		}
		if err := json.Unmarshal(rpc.Data, &data); err != nil || len(data.Elicitations) != 1 || data.Elicitations[0].Mode != "url" || data.Elicitations[0].ElicitationID == "" {
			t.Fatalf("%s: URLElicitationRequiredError data %s", tool, rpc.Data)
		}
		o.url = data.Elicitations[0].URL
	}
	return o
}

// A read from a confidential source, then a send to an external sink in
// the same session, is held by the chain policy with its message; the
// send alone, or in another session, goes through; the history survives a
// restart of the broker.
func TestSessionChain(t *testing.T) {
	g := startChainBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	token := userToken(t, g.url, "alice")
	mail := map[string]any{"to": "someone@example.com", "body": "hello"}

	reader := g.session(t, ctx, token)
	if o := chainCall(t, ctx, reader, "records_read_record", map[string]any{"id": "r-1"}); !o.ok {
		t.Fatalf("read: %+v", o)
	}
	held := chainCall(t, ctx, reader, "mailer_send_email", mail)
	if held.code != -32042 || !strings.Contains(held.message, "this session read confidential data") || held.url == "" {
		t.Fatalf("send after a confidential read: %+v; want the policy's message and an approval URL", held)
	}
	if sent := g.mailer.callsOf("send_email"); len(sent) != 0 {
		t.Fatalf("the held send reached the mailer: %v", sent)
	}

	alone := g.session(t, ctx, token)
	if o := chainCall(t, ctx, alone, "mailer_send_email", mail); !o.ok {
		t.Fatalf("send alone in a fresh session: %+v", o)
	}
	// Read in one session, send in another: allowed.
	other := g.session(t, ctx, token)
	if o := chainCall(t, ctx, other, "records_read_record", map[string]any{"id": "r-2"}); !o.ok {
		t.Fatalf("read: %+v", o)
	}
	if o := chainCall(t, ctx, alone, "mailer_send_email", mail); !o.ok {
		t.Fatalf("send in a session that read nothing: %+v", o)
	}
	if sent := g.mailer.callsOf("send_email"); len(sent) != 2 {
		t.Fatalf("the mailer got %d sends, want 2", len(sent))
	}

	// Without sessions (2026-07-28) the history is that of the agent
	// acting for the user: a new connection escapes nothing.
	carol := userToken(t, g.url, "carol")
	if o := chainCall(t, ctx, g.connect(t, ctx, carol, nil), "mailer_send_email", mail); !o.ok {
		t.Fatalf("a sessionless send before any read: %+v", o)
	}
	if o := chainCall(t, ctx, g.connect(t, ctx, carol, nil), "records_read_record", map[string]any{"id": "r-3"}); !o.ok {
		t.Fatalf("a sessionless read: %+v", o)
	}
	if o := chainCall(t, ctx, g.connect(t, ctx, carol, nil), "mailer_send_email", mail); o.code != -32042 {
		t.Fatalf("a sessionless send after the same agent read for the same user: %+v; want it held", o)
	}
	if sent := g.mailer.callsOf("send_email"); len(sent) != 3 {
		t.Fatalf("the mailer got %d sends, want 3", len(sent))
	}

	// The broker restarts; the reader's session goes on and its history
	// with it.
	g.stop()
	g.start(t)
	again := chainCall(t, ctx, reader, "mailer_send_email", mail)
	if again.code != -32042 || !strings.Contains(again.message, "confidential") {
		t.Fatalf("send in the reading session after a restart: %+v; the history must survive", again)
	}
	if o := chainCall(t, ctx, alone, "mailer_send_email", mail); !o.ok {
		t.Fatalf("send in the clean session after a restart: %+v", o)
	}
	if sent := g.mailer.callsOf("send_email"); len(sent) != 4 {
		t.Fatalf("the mailer got %d sends, want 4", len(sent))
	}
}

// webUser is a person with a browser: at the approval page (which does
// not follow redirects) or at the console (which does).
type webUser struct {
	t      *testing.T
	client *http.Client
}

func newApprover(t *testing.T) *webUser {
	jar, _ := cookiejar.New(nil)
	return &webUser{t: t, client: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (a *webUser) get(target string) (*http.Response, string) {
	a.t.Helper()
	resp, err := a.client.Get(target)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (a *webUser) post(target string, form url.Values) (*http.Response, string) {
	a.t.Helper()
	resp, err := a.client.PostForm(target, form)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// csrf is the form token of a page.
func csrf(t *testing.T, page string) string {
	t.Helper()
	for _, input := range inputTag.FindAllString(page, -1) {
		if a := tagAttributes(input); a["name"] == "csrf" {
			return a["value"]
		}
	}
	t.Fatalf("no form token on the page: %s", page)
	return ""
}

// signIn opens the approval page and signs in; it returns the page shown
// after, and its status.
func (a *webUser) signIn(approvalURL, username string) (int, string) {
	a.t.Helper()
	resp, page := a.get(approvalURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `name="password"`) {
		a.t.Fatalf("approval page %s: %d %s", approvalURL, resp.StatusCode, page)
	}
	resp, page = a.post(approvalURL, url.Values{"csrf": {csrf(a.t, page)}, "username": {username}, "password": {"demo-password"}})
	return resp.StatusCode, page
}

// answer signs in and answers: "approve" or "deny".
func (a *webUser) answer(approvalURL, username, decision string) (int, string) {
	a.t.Helper()
	status, page := a.signIn(approvalURL, username)
	if status != http.StatusOK || !strings.Contains(page, `name="decision"`) {
		return status, page
	}
	resp, done := a.post(approvalURL, url.Values{"csrf": {csrf(a.t, page)}, "decision": {decision}})
	return resp.StatusCode, done
}

// A transfer above the limit needs a member of treasury: the user cannot
// approve it; bob can; the identical call then goes through once, and a
// changed argument, another session or a second use do not. An approval
// that expired and one that was denied let nothing through. The trail
// holds every step.
func TestApprovalBoundToTheCall(t *testing.T) {
	g := startChainBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	token := userToken(t, g.url, "alice")
	// A client that declares URL elicitation, and hears when an
	// elicitation it was pointed to is complete.
	completed := make(chan string, 16)
	client := mcp.NewClient(&mcp.Implementation{Name: "governed", Version: "1"}, &mcp.ClientOptions{
		Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "decline"}, nil
		},
		ElicitationCompleteHandler: func(_ context.Context, req *mcp.ElicitationCompleteNotificationRequest) {
			completed <- req.Params.ElicitationID
		},
	})
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.url + "/mcp",
		HTTPClient: &http.Client{Transport: bearerTransport{token: token, base: http.DefaultTransport}}}, sessionful)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	transfer := map[string]any{"amount": 5000, "to": "acct-9", "memo": "rent"}

	held := chainCall(t, ctx, s, "bank_transfer", transfer)
	if held.code != -32042 || !strings.HasPrefix(held.url, g.url+"/approvals/") || !strings.Contains(held.message, "treasury") {
		t.Fatalf("a large transfer: %+v; want a URL elicitation to the approval page naming treasury", held)
	}
	if again := chainCall(t, ctx, s, "bank_transfer", transfer); again.url != held.url {
		t.Errorf("asking again before an answer points to %s, want the same approval %s", again.url, held.url)
	}

	// The user is not one of the approvers of a four-eyes rule.
	if status, page := newApprover(t).signIn(held.url, "alice"); status != http.StatusForbidden || !strings.Contains(page, "someone else") {
		t.Fatalf("alice approving her own transfer: %d %s", status, page)
	}
	// Nor is a teller.
	if status, _ := newApprover(t).signIn(held.url, "carol"); status != http.StatusForbidden {
		t.Fatalf("carol (not in treasury) approving: %d", status)
	}
	bob := newApprover(t)
	status, page := bob.signIn(held.url, "bob")
	if status != http.StatusOK || !strings.Contains(page, "bank") || !strings.Contains(page, "bank_transfer") || !strings.Contains(page, "5000") || !strings.Contains(page, "acct-9") {
		t.Fatalf("the approval page shows %d %s; want the app, the tool and the arguments", status, page)
	}
	resp, done := bob.post(held.url, url.Values{"csrf": {csrf(t, page)}, "decision": {"approve"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(done, "Approved") {
		t.Fatalf("bob's approval: %d %s", resp.StatusCode, done)
	}
	select {
	case id := <-completed:
		if !strings.HasSuffix(held.url, "/"+id) {
			t.Errorf("notifications/elicitation/complete names %q, want the approval of %s", id, held.url)
		}
	case <-time.After(20 * time.Second):
		t.Error("the client was not told the elicitation is complete")
	}
	if got := g.bank.callsOf("transfer"); len(got) != 0 {
		t.Fatalf("the transfer reached the bank before the retry: %v", got)
	}

	// One argument changed: not approved.
	changed := map[string]any{"amount": 5001, "to": "acct-9", "memo": "rent"}
	if o := chainCall(t, ctx, s, "bank_transfer", changed); o.code != -32042 || o.url == held.url {
		t.Fatalf("a changed amount: %+v; want a new approval", o)
	}
	// Another session of the same user and agent: not approved.
	if o := chainCall(t, ctx, g.session(t, ctx, token), "bank_transfer", transfer); o.code != -32042 || o.url == held.url {
		t.Fatalf("the same call from another session: %+v; want a new approval", o)
	}
	// The same call in the same session, members in another order: once.
	reordered := map[string]any{"memo": "rent", "to": "acct-9", "amount": 5000}
	if o := chainCall(t, ctx, s, "bank_transfer", reordered); !o.ok {
		t.Fatalf("the approved call: %+v", o)
	}
	if o := chainCall(t, ctx, s, "bank_transfer", transfer); o.code != -32042 {
		t.Fatalf("the approved call a second time: %+v; want it held again", o)
	}
	if got := g.bank.callsOf("transfer"); len(got) != 1 || !strings.Contains(got[0], `"amount":5000`) {
		t.Fatalf("the bank got %v; want the approved transfer exactly once", got)
	}

	// Denied: refused with the approver's answer.
	deny := map[string]any{"amount": 7000, "to": "acct-1"}
	denied := chainCall(t, ctx, s, "bank_transfer", deny)
	if status, page := newApprover(t).answer(denied.url, "bob", "deny"); status != http.StatusOK || !strings.Contains(page, "Denied") {
		t.Fatalf("bob's denial: %d %s", status, page)
	}
	if o := chainCall(t, ctx, s, "bank_transfer", deny); o.code != -32010 || !strings.Contains(o.message, "denied") {
		t.Fatalf("a denied call: %+v; want it refused", o)
	}

	// Expired: delete_account's approval is good for 4 s.
	del := map[string]any{"account": "acct-3"}
	var approvedAt time.Time
	for attempt := 0; ; attempt++ {
		o := chainCall(t, ctx, s, "bank_delete_account", del)
		if o.code != -32042 {
			t.Fatalf("delete_account: %+v; the configuration holds it for approval", o)
		}
		status, page := newApprover(t).answer(o.url, "bob", "approve")
		if status == http.StatusOK && strings.Contains(page, "Approved") {
			approvedAt = time.Now()
			break
		}
		if status != http.StatusGone || attempt == 3 {
			t.Fatalf("approving delete_account: %d %s", status, page)
		}
		// The machine was slower than the request's 4 s: ask again.
	}
	time.Sleep(time.Until(approvedAt.Add(5 * time.Second)))
	if o := chainCall(t, ctx, s, "bank_delete_account", del); o.code != -32042 {
		t.Fatalf("an expired approval: %+v; want the call held again", o)
	}
	if got := g.bank.callsOf("delete_account"); len(got) != 0 {
		t.Fatalf("an expired approval let delete_account through: %v", got)
	}

	// The trail.
	steps := map[string]int{}
	var used *audit.Record
	err = audit.Query(g.trail, audit.Filter{}, func(r *audit.Record) bool {
		if r.Kind == audit.KindApproval {
			steps[r.Event]++
		}
		if r.Kind == audit.KindCall && r.Approval != nil && r.Approval.Status == "used" {
			used = r
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"approval.requested", "approval.shown", "approval.approved", "approval.refused", "approval.denied", "approval.used", "approval.expired"} {
		if steps[step] == 0 {
			t.Errorf("the trail has no %s record (%v)", step, steps)
		}
	}
	if steps["approval.refused"] < 2 {
		t.Errorf("the trail has %d refused approvers, want alice's and carol's", steps["approval.refused"])
	}
	if used == nil || used.Approval.By != "bob" || used.Subject != "alice" || used.Tool != "bank_transfer" {
		t.Errorf("the record of the approved call: %+v", used)
	}
}

// The approval page has the login page's protections: a form token good
// for one post, no framing, the Host check, and arguments shown escaped.
func TestApprovalPageHardening(t *testing.T) {
	g := startChainBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := g.session(t, ctx, userToken(t, g.url, "alice"))
	hostile := map[string]any{"amount": 9000, "to": "acct-9", "memo": `</pre><script>alert("x")</script><img src=x onerror=alert(1)>`, "secret": "hunter2"}
	held := chainCall(t, ctx, s, "bank_transfer", hostile)
	if held.code != -32042 {
		t.Fatalf("transfer: %+v", held)
	}

	bob := newApprover(t)
	resp, login := bob.get(held.url)
	if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("the approval page may be framed or kept: %v", resp.Header)
	}
	// A form posted without its token, or with another's, is refused.
	if r, _ := bob.post(held.url, url.Values{"username": {"bob"}, "password": {"demo-password"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in without the form token: %d", r.StatusCode)
	}
	if r, _ := bob.post(held.url, url.Values{"csrf": {"forged"}, "username": {"bob"}, "password": {"demo-password"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in with a forged form token: %d", r.StatusCode)
	}
	// A cross-site post carries no cookie: refused.
	if r, err := http.PostForm(held.url, url.Values{"csrf": {csrf(t, login)}, "username": {"bob"}, "password": {"demo-password"}}); err != nil || r.StatusCode == http.StatusOK {
		t.Errorf("a post without the page's cookie: %v %v", r.StatusCode, err)
	}
	status, page := bob.signIn(held.url, "bob")
	if status != http.StatusOK {
		t.Fatalf("sign-in: %d %s", status, page)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "<img") || !strings.Contains(page, "&lt;script&gt;") {
		t.Errorf("the arguments are not shown escaped:\n%s", page)
	}
	if strings.Contains(page, "hunter2") || !strings.Contains(page, "[REDACTED]") {
		t.Errorf("a member the trail redacts is shown: %s", page)
	}
	token := csrf(t, page)
	if r, _ := bob.post(held.url, url.Values{"csrf": {token}, "decision": {"approve"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("approve: %d", r.StatusCode)
	}
	// The same form again: spent.
	if r, _ := bob.post(held.url, url.Values{"csrf": {token}, "decision": {"approve"}}); r.StatusCode == http.StatusOK {
		t.Errorf("the approval form was taken twice")
	}
	// The approved call sent eight times at once: one goes through.
	var wg sync.WaitGroup
	var passed, heldAgain atomic.Int32
	for range 8 {
		wg.Go(func() {
			res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "bank_transfer", Arguments: hostile})
			var rpc *jsonrpc.Error
			switch {
			case err == nil && !res.IsError:
				passed.Add(1)
			case errors.As(err, &rpc) && rpc.Code == -32042:
				heldAgain.Add(1)
			default:
				t.Errorf("a parallel retry: %v", err)
			}
		})
	}
	wg.Wait()
	if passed.Load() != 1 || heldAgain.Load() != 7 || len(g.bank.callsOf("transfer")) != 1 {
		t.Errorf("8 parallel retries of one approved call: %d passed, %d held, the bank got %d; want 1, 7, 1",
			passed.Load(), heldAgain.Load(), len(g.bank.callsOf("transfer")))
	}
	// At most approvals.maxPendingPerUser (5) wait for one user; the
	// parallel retries left one waiting.
	for i := range 4 {
		if o := chainCall(t, ctx, s, "bank_transfer", map[string]any{"amount": 2000 + i}); o.code != -32042 {
			t.Fatalf("pending approval %d: %+v", i+2, o)
		}
	}
	if o := chainCall(t, ctx, s, "bank_transfer", map[string]any{"amount": 3000}); o.code != -32010 || !strings.Contains(o.message, "too many") {
		t.Errorf("a sixth approval waiting for one user: %+v; want it refused", o)
	}
	// Host checks: a page asked for under another name is refused.
	req, _ := http.NewRequest(http.MethodGet, held.url, nil)
	req.Host = "evil.example"
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusForbidden {
		t.Errorf("the approval page under another Host: %v %v", r.StatusCode, err)
	}
	// Unknown and malformed approvals.
	for _, path := range []string{"/approvals/nope", "/approvals/" + strings.Repeat("a", 500), "/approvals/%3Cscript%3E"} {
		if r, _ := newApprover(t).get(g.url + path); r.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d", path, r.StatusCode)
		}
	}
}

// routedTransport sends each request to the replica the test names.
type routedTransport struct {
	to    atomic.Pointer[url.URL]
	token string
}

func (r *routedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	to := r.to.Load()
	req.URL.Scheme, req.URL.Host, req.Host = to.Scheme, to.Host, ""
	req.Header.Set("Authorization", "Bearer "+r.token)
	return http.DefaultTransport.RoundTrip(req)
}

// Replicas sharing Redis share the history and the approvals: a read on
// one replica holds a send on the other; the approval answered through
// the balancer (its steps on either replica) lets the call through once,
// on whichever replica it arrives.
func TestSessionChainAcrossReplicas(t *testing.T) {
	server := redistest.Start(t)
	issuer, backends := roundRobin(t)
	records := newToolUpstream(t, "records", "read_record")
	mailer := newToolUpstream(t, "mailer", "send_email")
	bank := newToolUpstream(t, "bank", "transfer", "delete_account")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	policy, err := filepath.Abs("../policies/session_chain.rego")
	if err != nil {
		t.Fatal(err)
	}
	var replicas []*url.URL
	for range 2 {
		u, _ := url.Parse(startBroker(t, scenario(t, "session-chain"), fmt.Sprintf("{redis: {addresses: [%q], keyPrefix: \"chain:\"}}", server.Addr()), issuer, demoPasswordHash,
			base64.StdEncoding.EncodeToString(key), records.url, mailer.url, bank.url, policy, filepath.Join(t.TempDir(), "audit")))
		replicas = append(replicas, u)
	}
	backends(replicas)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	route := &routedTransport{token: userToken(t, issuer, "alice")}
	route.to.Store(replicas[0])
	s, err := mcp.NewClient(&mcp.Implementation{Name: "replicas", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: issuer + "/mcp", HTTPClient: &http.Client{Transport: route}}, sessionful)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mail := map[string]any{"to": "someone@example.com"}
	if o := chainCall(t, ctx, s, "records_read_record", map[string]any{"id": "r-1"}); !o.ok {
		t.Fatalf("read on replica 0: %+v", o)
	}
	route.to.Store(replicas[1])
	held := chainCall(t, ctx, s, "mailer_send_email", mail)
	if held.code != -32042 || !strings.HasPrefix(held.url, issuer+"/approvals/") {
		t.Fatalf("send on replica 1 after a read on replica 0: %+v; want it held", held)
	}
	// The user answers for herself ("self"), through the balancer.
	if status, page := newApprover(t).answer(held.url, "alice", "approve"); status != http.StatusOK || !strings.Contains(page, "Approved") {
		t.Fatalf("alice's approval through the balancer: %d %s", status, page)
	}
	route.to.Store(replicas[0])
	if o := chainCall(t, ctx, s, "mailer_send_email", mail); !o.ok {
		t.Fatalf("the approved send on replica 0: %+v", o)
	}
	route.to.Store(replicas[1])
	if o := chainCall(t, ctx, s, "mailer_send_email", mail); o.code != -32042 {
		t.Fatalf("the approved send again, on replica 1: %+v; want it held", o)
	}
	if sent := mailer.callsOf("send_email"); len(sent) != 1 {
		t.Fatalf("the mailer got %d sends, want the approved one", len(sent))
	}
}

// Where users sign in at an identity provider, approvers do too: the
// approval page sends the user to the provider and back, then shows the
// call; the user's own approval lets the call through once.
func TestFederatedApprover(t *testing.T) {
	brokerAddress := freeAddress(t)
	brokerURL := "http://" + brokerAddress
	idp := startIDPArgs(t, "--login-redirect", brokerURL+"/callback")
	agentRedirect := "http://" + freeAddress(t) + "/cb"
	bank := newToolUpstream(t, "bank", "transfer")
	startBrokerAt(t, brokerAddress, scenario(t, "federated-approval"), filepath.Join(t.TempDir(), "broker.db"), brokerURL, idp.Issuer, agentRedirect, bank.url)

	// carol's token for the agent, through the provider.
	start, verifier := agentAuthorizeURL(brokerURL, agentRedirect, "state-ok")
	back, page := newBrowser(t).signIn(start, "carol", "carol-password", func(u *url.URL) bool { return strings.HasPrefix(u.String(), agentRedirect) })
	if back == nil {
		t.Fatalf("sign-in did not return to the agent: %s", page)
	}
	resp, err := http.PostForm(brokerURL+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"redirect_uri": {agentRedirect}, "client_id": {"agent"}, "code_verifier": {verifier}})
	if err != nil {
		t.Fatal(err)
	}
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(readBody(t, resp), &tokens); err != nil || tokens.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := connectWithToken(t, ctx, brokerURL+"/mcp", tokens.AccessToken)
	transfer := map[string]any{"amount": 10, "to": "acct-2"}
	held := chainCall(t, ctx, s, "bank_transfer", transfer)
	if held.code != -32042 {
		t.Fatalf("transfer: %+v; want it held for carol's approval", held)
	}

	// carol opens the link: to the provider, back to the broker's
	// callback, on to the approval, signed in.
	b := newBrowser(t)
	stop, page := b.signIn(held.url, "carol", "carol-password", func(*url.URL) bool { return false })
	if stop != nil || !strings.Contains(page, `name="decision"`) || !strings.Contains(page, "carol") || !strings.Contains(page, "acct-2") {
		t.Fatalf("the approval page after the provider's sign-in: %s\nrequests:\n%s", page, strings.Join(b.trail, "\n"))
	}
	want := []string{"GET " + brokerURL + "/approvals/", "GET " + idp.Issuer + "/auth 303", "GET " + brokerURL + "/callback 303", "GET " + brokerURL + "/approvals/"}
	if missed := b.missed(want); missed != "" {
		t.Fatalf("the way to the approval missed %q; requests:\n%s", missed, strings.Join(b.trail, "\n"))
	}
	target, _ := url.Parse(held.url)
	resp2, done := b.do(target, url.Values{"csrf": {csrf(t, page)}, "decision": {"approve"}})
	if resp2.StatusCode != http.StatusOK || !strings.Contains(done, "Approved") {
		t.Fatalf("carol's approval: %d %s", resp2.StatusCode, done)
	}
	if o := chainCall(t, ctx, s, "bank_transfer", transfer); !o.ok {
		t.Fatalf("the approved transfer: %+v", o)
	}
	if got := bank.callsOf("transfer"); len(got) != 1 {
		t.Fatalf("the bank got %v; want the approved transfer once", got)
	}
}
