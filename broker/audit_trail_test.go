package broker_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// answer is what a client received for one request.
type answer struct {
	what   string
	status int
	body   []byte
}

func (a answer) digest() string {
	sum := sha256.Sum256(a.body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (a answer) rpcCode() int64 {
	var m struct {
		Error *struct {
			Code int64 `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &m) != nil || m.Error == nil {
		return 0
	}
	return m.Error.Code
}

// auditedBroker runs a broker process with OAuth, the transfer limit
// policy and an audit trail, in front of a sample upstream process.
type auditedBroker struct {
	bin, dir, config string
	url, admin       string
	issuer           *oauthtest.Issuer
	broker, upstream *exec.Cmd
}

func startAuditedBroker(t *testing.T) *auditedBroker {
	t.Helper()
	b := &auditedBroker{bin: buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker"), dir: t.TempDir()}
	upstreamAddr := freeAddress(t)
	b.upstream = startProcess(t, upstreamAddr, b.bin, "upstream", "sample", "--listen", upstreamAddr)
	brokerAddr, adminAddr := freeAddress(t), freeAddress(t)
	b.url, b.admin = "http://"+brokerAddr+"/mcp", "http://"+adminAddr
	b.issuer = oauthtest.NewIssuer(t, &oauthtest.Options{Audience: b.url})
	policy, err := filepath.Abs("../policies/argument_rule.rego")
	if err != nil {
		t.Fatal(err)
	}
	b.config = filepath.Join(b.dir, "broker.yaml")
	writeFile(t, b.config, fmt.Sprintf(scenario(t, "audited"), brokerAddr, adminAddr, b.trail(), b.issuer.MetadataURL(), b.url, upstreamAddr, policy))
	b.broker = startProcess(t, brokerAddr, b.bin, "serve", "--config", b.config)
	return b
}

func (b *auditedBroker) trail() string { return filepath.Join(b.dir, "audit") }

// token is an access token for alice through agent-app with scope.
func (b *auditedBroker) token(t *testing.T, scope string) string {
	c := b.issuer.Claims(time.Now())
	c["scope"], c["jti"] = scope, rand.Text()
	return b.issuer.Mint(t, c)
}

// records reads the whole trail.
func (b *auditedBroker) records(t *testing.T) []*audit.Record {
	t.Helper()
	var records []*audit.Record
	if err := audit.Query(b.trail(), audit.Filter{}, func(r *audit.Record) bool {
		records = append(records, r)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return records
}

// jsonClient is a wire client that asks for plain JSON answers, whose
// bodies are the bytes the broker digests.
func jsonClient(t *testing.T, url, token string) *wireClient {
	c := newWireClient(t, url)
	c.header.Set("Accept", "application/json")
	c.header.Set("Authorization", "Bearer "+token)
	return c
}

func (c *wireClient) send(what, body string) answer {
	c.t.Helper()
	resp := c.post(body)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return answer{what: what, status: resp.StatusCode, body: raw}
}

// The trail has one record per decision, each saying what the client
// received byte for byte: an allowed call, one the policy denies, one the
// upstream fails, a token without the scope the broker requires (403,
// step-up) and a token that is no token (401). The metrics count the same
// calls, and audit verify passes on the trail.
func TestAuditTrailSaysWhatTheClientReceived(t *testing.T) {
	b := startAuditedBroker(t)
	good := b.token(t, "mcp:tools ledger:read")
	c := jsonClient(t, b.url, good)
	c.initialize(`{}`)
	session := c.session

	arguments := `{"account":"alice"}`
	answers := []answer{
		c.send("allowed", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":`+arguments+`}}`),
		c.send("denied", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ledger_transfer","arguments":{"from":"alice","to":"bob","amount":5000}}}`),
		c.send("upstream error", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ledger_fail_protocol","arguments":{}}}`),
	}
	weak := b.token(t, "ledger:read")
	c.header.Set("Authorization", "Bearer "+weak)
	answers = append(answers, c.send("step-up", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{}}}`))
	c.header.Set("Authorization", "Bearer not-a-token")
	answers = append(answers, c.send("bad token", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{}}}`))
	// Refused by the transport, before any message reaches the pipeline.
	c.header.Set("Authorization", "Bearer "+good)
	answers = append(answers, c.send("not JSON", `{"jsonrpc":`))
	c.session = "not-a-session"
	answers = append(answers, c.send("unknown session", `{"jsonrpc":"2.0","id":6,"method":"ping"}`))
	c.session = session

	wantStatus := map[string]int{"allowed": 200, "denied": 200, "upstream error": 200, "step-up": 403, "bad token": 401, "not JSON": 400, "unknown session": 404}
	for _, a := range answers {
		if a.status != wantStatus[a.what] {
			t.Fatalf("%s: status %d, want %d: %s", a.what, a.status, wantStatus[a.what], a.body)
		}
	}

	var calls []*audit.Record
	var opened *audit.Record
	for _, r := range b.records(t) {
		switch {
		case r.Kind == audit.KindSession && r.Event == "session.opened":
			opened = r
		case r.Kind == audit.KindCall:
			calls = append(calls, r)
		}
	}
	if opened == nil || opened.Subject != "alice" || opened.Client != "agent-app" {
		t.Errorf("session opened: %+v", opened)
	}
	if len(calls) != len(answers) {
		t.Fatalf("%d call records for %d requests: %+v", len(calls), len(answers), calls)
	}
	sessionSum := sha256.Sum256([]byte(session))
	for i, a := range answers {
		r := calls[i]
		got := r.Result
		if got == nil || got.HTTPStatus != a.status || got.Digest != a.digest() || got.Bytes != len(a.body) || got.RPCCode != a.rpcCode() {
			t.Errorf("%s: the record's result %+v, the client received %d, %d bytes, %s, code %d", a.what, got, a.status, len(a.body), a.digest(), a.rpcCode())
		}
		if !strings.HasPrefix(r.Source, "127.0.0.1:") || r.ID == "" || r.Seq == 0 || r.Prev == "" {
			t.Errorf("%s: source %q, id %q, seq %d, prev %q", a.what, r.Source, r.ID, r.Seq, r.Prev)
		}
		if a.status == 200 && (r.Session != hex.EncodeToString(sessionSum[:6]) || r.Subject != "alice" || r.Issuer != b.issuer.ID || r.Client != "agent-app" || r.App != "ledger" || r.Method != "tools/call") {
			t.Errorf("%s: who and what: %+v", a.what, r)
		}
	}
	policyText, err := os.ReadFile("../policies/argument_rule.rego")
	if err != nil {
		t.Fatal(err)
	}
	policySum := sha256.Sum256(policyText)
	allowed, denied, failed, stepUp, badToken, notJSON, unknownSession := calls[0], calls[1], calls[2], calls[3], calls[4], calls[5], calls[6]
	if notJSON.Event != "request.refused" || notJSON.Result.RPCCode != -32700 || notJSON.Subject != "alice" || notJSON.Session != hex.EncodeToString(sessionSum[:6]) {
		t.Errorf("not JSON: %+v %+v", notJSON, notJSON.Result)
	}
	if unknownSession.Event != "request.refused" || unknownSession.Method != "POST /mcp" {
		t.Errorf("unknown session: %+v %+v", unknownSession, unknownSession.Result)
	}
	if d := allowed.Decision; d == nil || !d.Allowed || d.Policy != "transfer-limit" || d.PolicyVersion != "1" || d.PolicyHash != "sha256:"+hex.EncodeToString(policySum[:]) {
		t.Errorf("allowed: decision %+v", d)
	}
	if allowed.Tool != "ledger_get_balance" || allowed.UpstreamTool != "get_balance" || allowed.ArgumentsDigest != audit.Digest([]byte(arguments)) || allowed.Arguments != nil || allowed.UpstreamMillis <= 0 {
		t.Errorf("allowed: tool %q/%q, arguments %q %s, upstream %vms", allowed.Tool, allowed.UpstreamTool, allowed.ArgumentsDigest, allowed.Arguments, allowed.UpstreamMillis)
	}
	if d := denied.Decision; d == nil || d.Allowed || denied.Result.RPCCode != -32010 || !strings.Contains(string(answers[1].body), d.ExternalMessage) || d.ExternalMessage == "" {
		t.Errorf("denied: decision %+v, result %+v", d, denied.Result)
	}
	if failed.Decision == nil || !failed.Decision.Allowed || failed.Result.RPCCode != -32603 {
		t.Errorf("upstream error: decision %+v, result %+v", failed.Decision, failed.Result)
	}
	if stepUp.Event != "request.refused" || !strings.Contains(stepUp.Detail, "scope") || badToken.Event != "request.refused" {
		t.Errorf("refusals: %+v %+v", stepUp, badToken)
	}
	raw, err := os.ReadDir(b.trail())
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range raw {
		data, err := os.ReadFile(filepath.Join(b.trail(), entry.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{good, weak, session} {
			if strings.Contains(string(data), secret) {
				t.Errorf("%s holds a token or the session id", entry.Name())
			}
		}
	}

	// The metrics count what the trail records.
	count := func(family string, labels map[string]string) float64 { return metricSum(t, b.admin, family, labels) }
	for decision, want := range map[string]float64{"allowed": 1, "denied": 1, "error": 1} {
		if got := count("mcpbroker_calls_total", map[string]string{"method": "tools/call", "decision": decision}); got != want {
			t.Errorf("mcpbroker_calls_total{decision=%q} = %v, want %v", decision, got, want)
		}
	}
	for status, want := range map[string]float64{"401": 1, "403": 1} {
		if got := count("mcpbroker_http_refusals_total", map[string]string{"status": status}); got != want {
			t.Errorf("mcpbroker_http_refusals_total{status=%q} = %v, want %v", status, got, want)
		}
	}

	verify := exec.Command(b.bin, "audit", "verify", b.trail())
	if out, err := verify.CombinedOutput(); err != nil {
		t.Errorf("audit verify: %v\n%s", err, out)
	}

	// Stopped, the broker signs a last checkpoint, which verifies with
	// the public key it published beside the trail.
	if err := b.broker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.broker.Wait(); err != nil {
		t.Fatalf("the broker did not exit cleanly: %v", err)
	}
	verify = exec.Command(b.bin, "audit", "verify", "--jwks", b.trail()+".key.jwks", b.trail())
	out, err := verify.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "checkpoint") {
		t.Errorf("audit verify --jwks: %v\n%s", err, out)
	}
	t.Logf("audit verify --jwks:\n%s", out)
}
