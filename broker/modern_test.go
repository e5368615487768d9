package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// modernBroker serves the sample ledger (%[1]q), a sessionful upstream,
// to clients of every generation on one endpoint.
const modernBroker = openProvider + `apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[1]q}}
`

// A Go SDK client of the newest version opens with server/discover and
// is served without a session; the ledger's transfer confirmation, an
// elicitation the sessionful upstream sends mid-call, reaches it as an
// input_required result, and its answer completes the transfer.
func TestModernClientThroughBroker(t *testing.T) {
	upstream := sampleLedger(t)
	base := startBroker(t, modernBroker, "http://"+upstream+"/mcp")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var elicited atomic.Int32
	client := mcp.NewClient(&mcp.Implementation{Name: "modern", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			elicited.Add(1)
			if !strings.Contains(req.Params.Message, "Transfer") {
				t.Errorf("elicitation message %q", req.Params.Message)
			}
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}, nil
		},
	})
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("negotiated %q, want 2026-07-28", v)
	}
	if cs.ID() != "" {
		t.Fatalf("a modern client got session id %q", cs.ID())
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) == 0 {
		t.Fatal("no tools listed")
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ledger_get_balance", Arguments: map[string]any{"account": "alice"}})
	if err != nil || res.IsError {
		t.Fatalf("get_balance: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "ledger_transfer", Arguments: map[string]any{"from": "alice", "to": "bob", "amount": 1500}})
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError || elicited.Load() != 1 {
		t.Fatalf("transfer: isError %v, elicited %d times: %s", res.IsError, elicited.Load(), toolText(res))
	}
	if !strings.Contains(toolText(res), "moved 1500") {
		t.Fatalf("transfer result: %s", toolText(res))
	}
}

func toolText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// modernPost sends one raw modern request.
func modernPost(t *testing.T, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(readBody(t, resp))
}

// The modern request rules, each refusal in the protocol's terms.
func TestModernRequestRules(t *testing.T) {
	upstream := sampleLedger(t)
	base := startBroker(t, modernBroker, "http://"+upstream+"/mcp")
	url := base + "/mcp"
	meta := func(version string) string {
		return fmt.Sprintf(`"_meta":{"io.modelcontextprotocol/protocolVersion":%q,"io.modelcontextprotocol/clientCapabilities":{}}`, version)
	}
	std := func(method, name string) map[string]string {
		h := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
		if name != "" {
			h["Mcp-Name"] = name
		}
		return h
	}
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"},` + meta("2026-07-28") + `}}`
	cases := []struct {
		name   string
		body   string
		header map[string]string
		status int
		code   int
		data   string
	}{
		{"served", call, std("tools/call", "ledger_get_balance"), 200, 0, ""},
		{"removed method", `{"jsonrpc":"2.0","id":7,"method":"ping","params":{` + meta("2026-07-28") + `}}`, std("ping", ""), 404, -32601, ""},
		{"initialize is gone", `{"jsonrpc":"2.0","id":7,"method":"logging/setLevel","params":{"level":"info",` + meta("2026-07-28") + `}}`, std("logging/setLevel", ""), 404, -32601, ""},
		{"version in _meta, no header", call, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "ledger_get_balance"}, 400, -32020, ""},
		{"header, no _meta", `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`, std("tools/list", ""), 400, -32602, ""},
		{"no capabilities", `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, std("tools/list", ""), 400, -32602, ""},
		{"header differs", `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{` + meta("2099-01-01") + `}}`, std("tools/list", ""), 400, -32020, ""},
		{"unsupported version", `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{` + meta("2099-01-01") + `}}`, map[string]string{"MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"}, 400, -32022, `"requested":"2099-01-01"`},
		{"no Mcp-Method", call, map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Name": "ledger_get_balance"}, 400, -32020, ""},
		{"Mcp-Method differs", call, std("tools/list", "ledger_get_balance"), 400, -32020, ""},
		{"no Mcp-Name", call, std("tools/call", ""), 400, -32020, ""},
		{"Mcp-Name differs", call, std("tools/call", "ledger_transfer"), 400, -32020, ""},
		{"whitespace around values", call, map[string]string{"MCP-Protocol-Version": " 2026-07-28 ", "Mcp-Method": " tools/call", "Mcp-Name": "ledger_get_balance  "}, 200, 0, ""},
		{"batch", "[" + call + "]", std("tools/call", "ledger_get_balance"), 400, -32600, ""},
		{"unknown requestState", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"},"requestState":"forged","inputResponses":{},` + meta("2026-07-28") + `}}`, std("tools/call", "ledger_get_balance"), 400, -32602, ""},
		{"discover the sessionful way, without a session", `{"jsonrpc":"2.0","id":7,"method":"server/discover","params":{}}`, map[string]string{"MCP-Protocol-Version": "2025-11-25"}, 400, -32600, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := modernPost(t, url, tc.body, tc.header)
			if tc.status != 0 && resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.code == 0 {
				if !strings.Contains(body, `"resultType":"complete"`) || !strings.Contains(body, `"io.modelcontextprotocol/serverInfo"`) {
					t.Fatalf("result lacks resultType or serverInfo: %s", body)
				}
				return
			}
			if !strings.Contains(body, fmt.Sprintf(`"code":%d`, tc.code)) {
				t.Fatalf("want code %d: %s", tc.code, body)
			}
			if tc.status >= 400 && !strings.HasPrefix(tc.body, "[") && tc.header["MCP-Protocol-Version"] != "2025-11-25" && !strings.Contains(body, `"id":7`) {
				t.Fatalf("the error does not echo the request id: %s", body)
			}
			if tc.data != "" && !strings.Contains(body, tc.data) {
				t.Fatalf("want %s in: %s", tc.data, body)
			}
		})
	}

	// Discovery names every version served, and lists say how long they
	// may be kept, privately.
	_, body := modernPost(t, url, `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{`+meta("2026-07-28")+`}}`, std("server/discover", ""))
	var discover struct {
		Result struct {
			SupportedVersions []string        `json:"supportedVersions"`
			Capabilities      json.RawMessage `json:"capabilities"`
			CacheScope        string          `json:"cacheScope"`
			ResultType        string          `json:"resultType"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(sseData(body)), &discover); err != nil {
		t.Fatalf("discover: %v: %s", err, body)
	}
	if r := discover.Result; len(r.SupportedVersions) < 2 || r.SupportedVersions[0] != "2026-07-28" || r.CacheScope != "private" || r.ResultType != "complete" || !strings.Contains(string(r.Capabilities), "tools") {
		t.Fatalf("discover result: %s", body)
	}
	_, body = modernPost(t, url, `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{`+meta("2026-07-28")+`}}`, std("tools/list", ""))
	if !strings.Contains(body, `"ttlMs":`) || !strings.Contains(body, `"cacheScope":"private"`) {
		t.Fatalf("tools/list result: %s", body)
	}

	// Nothing outlives a modern request: GET and DELETE are refused.
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2026-07-28")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Fatalf("%s: %d, Allow %q", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}

// sseData returns the data of the last event of an SSE body, or the body
// when it is plain JSON.
func sseData(body string) string {
	last := body
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "data: "); ok {
			last = rest
		}
	}
	return last
}

// modernUpstreamBroker reaches the sample ledger served without sessions
// (%[1]q) as protocolVersion %[2]q says.
const modernUpstreamBroker = openProvider + `apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[1]q, protocolVersion: %[2]q}}
`

// A 2026-07-28 upstream is reached without sessions, named or found with
// server/discover; its input_required result reaches a 2025-11-25 client
// as the elicitation request it knows, and a 2026-07-28 client as an
// input_required result; both complete the transfer.
func TestModernUpstream(t *testing.T) {
	upstream := sampleLedger(t, "--stateless")
	for _, protocol := range []string{"2026-07-28", "auto"} {
		t.Run(protocol, func(t *testing.T) {
			base := startBroker(t, modernUpstreamBroker, "http://"+upstream+"/mcp", protocol)
			for _, clientVersion := range []string{"2025-11-25", "2026-07-28"} {
				t.Run("client "+clientVersion, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					var elicited atomic.Int32
					updated := make(chan string, 16)
					client := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, &mcp.ClientOptions{
						ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
							elicited.Add(1)
							return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}, nil
						},
						ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
							select {
							case updated <- req.Params.URI:
							default:
							}
						},
					})
					cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"}, &mcp.ClientSessionOptions{ProtocolVersion: clientVersion})
					if err != nil {
						t.Fatal(err)
					}
					defer cs.Close()
					if v := cs.InitializeResult().ProtocolVersion; v != clientVersion {
						t.Fatalf("negotiated %q", v)
					}
					tools, err := cs.ListTools(ctx, nil)
					if err != nil || len(tools.Tools) == 0 {
						t.Fatalf("tools/list: %v %+v", err, tools)
					}
					res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ledger_transfer", Arguments: map[string]any{"from": "alice", "to": "bob", "amount": 1100}})
					if err != nil {
						t.Fatal(err)
					}
					if res.IsError || elicited.Load() != 1 || !strings.Contains(toolText(res), "moved 1100") {
						t.Fatalf("transfer: isError %v, elicited %d: %s", res.IsError, elicited.Load(), toolText(res))
					}
					if clientVersion != "2025-11-25" {
						return
					}
					// A resource of the upstream subscribed to: the broker
					// listens for it upstream.
					if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "ledger://accounts/bob"}); err != nil {
						t.Fatalf("subscribe: %v", err)
					}
					uri := untilHeard(t, ctx, updated, func() {
						if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ledger_transfer", Arguments: map[string]any{"from": "alice", "to": "bob", "amount": 1}}); err != nil {
							t.Fatal(err)
						}
					})
					if uri != "ledger://accounts/bob" {
						t.Fatalf("update of %q", uri)
					}
				})
			}
		})
	}
}

// Calls held for a modern client's answers are bounded per user (here
// one address, unauthenticated): past the bound the client is told to
// answer or abandon its own first; each held call costs a bounded part
// of the heap, and answered, they are all let go.
func TestHeldCallsBounded(t *testing.T) {
	upstream := sampleLedger(t)
	admin := freeAddress(t)
	url := startBroker(t, modernBroker+"admin: {address: %[2]q}\n", "http://"+upstream+"/mcp", admin) + "/mcp"
	const perUser = 64
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`
	header := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "ledger_transfer"}
	transfer := func(id int, extra string) (*http.Response, string) {
		return modernPost(t, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_transfer","arguments":{"from":"alice","to":"bob","amount":1001},%s%s}}`, id, extra, meta), header)
	}
	// One held call, so that what every one shares is in place.
	resp, body := transfer(0, "")
	state, key := inputRequired(t, body)
	states := []string{state}
	goroutinesBefore := runtime.NumGoroutine()
	heapBefore := liveHeap()
	start := time.Now()
	for i := 1; i < perUser; i++ {
		_, body := transfer(i, "")
		state, _ := inputRequired(t, body)
		states = append(states, state)
	}
	held := liveHeap() - heapBefore
	goroutines := runtime.NumGoroutine() - goroutinesBefore
	t.Logf("%d held calls: live heap +%d bytes (%d a call), goroutines %+d", perUser-1, held, held/(perUser-1), goroutines)
	if held/(perUser-1) > 256<<10 {
		t.Errorf("a held call costs %d bytes of live heap, want at most 256 KiB", held/(perUser-1))
	}
	resp, body = transfer(perUser, "")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "answer or abandon") {
		t.Fatalf("call past the bound: %d %s", resp.StatusCode, body)
	}
	t.Logf("held in %v", time.Since(start))
	start = time.Now()
	// Declined, every call ends, and frees its place.
	for i, state := range states {
		answer := fmt.Sprintf(`"requestState":%q,"inputResponses":{%q:{"action":"decline"}},`, state, key)
		_, body := transfer(1000+i, answer)
		if !strings.Contains(body, `"resultType":"complete"`) || !strings.Contains(body, "not confirmed") {
			t.Fatalf("declined transfer %d: %s", i, body)
		}
	}
	t.Logf("declined in %v", time.Since(start))
	resp, body = transfer(2000, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "input_required") {
		t.Fatalf("after the held calls ended: %d %s", resp.StatusCode, body)
	}
	for event, want := range map[string]float64{"held": perUser + 1, "resumed": perUser, "refused": 1} {
		if got := metricSum(t, "http://"+admin, "mcpbroker_held_calls_total", map[string]string{"event": event}); got != want {
			t.Errorf("mcpbroker_held_calls_total{event=%q} = %v, want %v", event, got, want)
		}
	}
}

// subscriptions/listen: acknowledged first with what is granted (here a
// resource of the sessionful ledger, subscribed upstream through the
// pipeline), then only those notifications, each naming the listen.
func TestModernListen(t *testing.T) {
	upstream := sampleLedger(t)
	url := startBroker(t, modernBroker, "http://"+upstream+"/mcp") + "/mcp"
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := postListen(t, ctx, url, `{"jsonrpc":"2.0","id":"watch-1","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["ledger://accounts/alice"]},`+meta+`}}`)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("listen: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		buf := make([]byte, 64<<10)
		var pending string
		for {
			n, err := resp.Body.Read(buf)
			pending += string(buf[:n])
			for {
				line, rest, ok := strings.Cut(pending, "\n")
				if !ok {
					break
				}
				pending = rest
				if data, ok := strings.CutPrefix(line, "data: "); ok {
					events <- data
				}
			}
			if err != nil {
				return
			}
		}
	}()
	ack := <-events
	if !strings.Contains(ack, `"notifications/subscriptions/acknowledged"`) || !strings.Contains(ack, `"io.modelcontextprotocol/subscriptionId":"watch-1"`) ||
		!strings.Contains(ack, `"resourceSubscriptions":["ledger://accounts/alice"]`) || !strings.Contains(ack, `"toolsListChanged":true`) {
		t.Fatalf("first event: %s", ack)
	}
	// Transfers touch alice's and bob's accounts: only alice's reaches
	// the stream. The upstream stream opens as the listen starts, so
	// transfers go on until one is heard.
	header := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "ledger_transfer"}
	i := 0
	ev := untilHeard(t, ctx, events, func() {
		i++
		_, out := modernPost(t, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_transfer","arguments":{"from":"alice","to":"bob","amount":1},%s}}`, i, meta), header)
		if !strings.Contains(out, "moved 1") {
			t.Fatalf("transfer: %s", out)
		}
	})
	if !strings.Contains(ev, `"notifications/resources/updated"`) || !strings.Contains(ev, `"uri":"ledger://accounts/alice"`) || !strings.Contains(ev, `"io.modelcontextprotocol/subscriptionId":"watch-1"`) {
		t.Fatalf("notification: %s", ev)
	}
}

// untilHeard does act until something arrives on heard, and returns it:
// a stream that listens upstream opens as the listening starts, so the
// first acts may go unheard.
func untilHeard(t *testing.T, ctx context.Context, heard <-chan string, act func()) string {
	t.Helper()
	for {
		act()
		select {
		case v, ok := <-heard:
			if !ok {
				t.Fatal("the stream ended")
			}
			return v
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("nothing was heard")
		}
	}
}

// A requestState is the caller's own: another user presenting it is
// refused as if it named nothing, and the call it names goes on for its
// owner. Each round is authenticated like any request.
func TestHeldCallsAreTheCallersOwn(t *testing.T) {
	upstreamURL, _ := countingUpstream(t)
	endpoint, as, resource := allowAllBroker(t, upstreamURL)
	alice := tokenFor(t, as, resource, "alice", "finance")
	mallory := tokenFor(t, as, resource, "mallory", "finance")
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`
	transfer := func(token string, id int, extra string) (*http.Response, string) {
		header := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "shop_transfer"}
		if token != "" {
			header["Authorization"] = "Bearer " + token
		}
		return modernPost(t, endpoint, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"shop_transfer","arguments":{"from":"alice","to":"bob","amount":1500},%s%s}}`, id, extra, meta), header)
	}
	_, body := transfer(alice, 1, "")
	answer := confirmed(inputRequired(t, body))
	if resp, body := transfer("", 2, answer); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a round without a token: %d %s", resp.StatusCode, body)
	}
	if resp, body := transfer(mallory, 3, answer); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "-32602") {
		t.Fatalf("mallory presenting alice's requestState: %d %s", resp.StatusCode, body)
	}
	resp, body := transfer(alice, 4, answer)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "moved 1500") || !strings.Contains(body, `"id":4`) {
		t.Fatalf("alice's own next round: %d %s", resp.StatusCode, body)
	}
}

// Requests without a session reuse the upstream sessions the same agent
// token's earlier ones opened, instead of opening and ending one around
// every call; another agent gets its own.
func TestSessionlessRequestsReuseUpstreamSessions(t *testing.T) {
	upstreamURL, hits := countingUpstream(t)
	endpoint, as, resource := allowAllBroker(t, upstreamURL)
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	balance := func(token string, id int) {
		header := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "shop_get_balance", "Authorization": "Bearer " + token}
		_, body := modernPost(t, endpoint, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"shop_get_balance","arguments":{"account":"alice"},%s}}`, id, meta), header)
		if !strings.Contains(body, "alice: ") {
			t.Fatalf("call %d: %s", id, body)
		}
	}
	alice := tokenFor(t, as, resource, "alice", "finance")
	balance(alice, 0) // the app is met: its upstream session is opened
	const calls = 20
	before := hits.Load()
	for i := 1; i <= calls; i++ {
		balance(alice, i)
	}
	if n := hits.Load() - before; n > calls+3 {
		t.Errorf("%d calls without a session made %d upstream requests, want about one each", calls, n)
	}
	before = hits.Load()
	balance(tokenFor(t, as, resource, "bob", "finance"), 100)
	if n := hits.Load() - before; n < 3 {
		t.Errorf("another agent's call made %d upstream requests: it was given alice's upstream session", n)
	}
}

// sampleLedger runs the sample ledger upstream with args and returns its
// address.
func sampleLedger(t *testing.T, args ...string) string {
	t.Helper()
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	addr := freeAddress(t)
	startProcess(t, addr, bin, append(append([]string{"upstream", "sample"}, args...), "--listen", addr)...)
	return addr
}

// allowAllBroker is policyBroker with a policy that allows everything.
func allowAllBroker(t *testing.T, upstreamURL string) (endpoint string, as *oauthtest.Issuer, resource string) {
	t.Helper()
	policy := filepath.Join(t.TempDir(), "allow.rego")
	writeFile(t, policy, "package orchestrator\n\nresult := {\"allowed\": true}\n")
	return policyBroker(t, upstreamURL, policy, true)
}

// inputRequired reads an input_required result asking one question, and
// returns its requestState and the question's name.
func inputRequired(t *testing.T, body string) (state, key string) {
	t.Helper()
	var r struct {
		Result struct {
			ResultType    string                     `json:"resultType"`
			InputRequests map[string]json.RawMessage `json:"inputRequests"`
			RequestState  string                     `json:"requestState"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(sseData(body)), &r); err != nil || r.Result.ResultType != "input_required" || len(r.Result.InputRequests) != 1 || r.Result.RequestState == "" {
		t.Fatalf("want input_required asking one question: %s", body)
	}
	for k := range r.Result.InputRequests {
		key = k
	}
	return r.Result.RequestState, key
}

// confirmed is the next round's params members answering the ledger's
// transfer confirmation with yes.
func confirmed(state, key string) string {
	return fmt.Sprintf(`"requestState":%q,"inputResponses":{%q:{"action":"accept","content":{"confirm":true}}},`, state, key)
}

// Listen streams are bounded per user (here one address): each holds a
// connection and upstream sessions with their streams. Past the bound a
// listen is refused with 429 until one closes.
func TestModernListensBounded(t *testing.T) {
	upstream := sampleLedger(t)
	url := startBroker(t, modernBroker, "http://"+upstream+"/mcp") + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listen := func(ctx context.Context, id int) *http.Response {
		return postListen(t, ctx, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, id))
	}
	const perUser = 16
	cancels := make([]context.CancelFunc, perUser)
	for i := range perUser {
		lctx, stop := context.WithCancel(ctx)
		cancels[i] = stop
		resp := listen(lctx, i)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("listen %d: %d", i, resp.StatusCode)
		}
		defer resp.Body.Close()
	}
	resp := listen(ctx, perUser)
	body := string(readBody(t, resp))
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "close one first") {
		t.Fatalf("listen past the bound: %d %s", resp.StatusCode, body)
	}
	cancels[0]()
	eventually(t, "a listen to be admitted after one closed", func() bool {
		lctx, stop := context.WithCancel(ctx)
		defer stop()
		resp := listen(lctx, 100)
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	for _, stop := range cancels {
		stop()
	}
}

// postListen opens a subscriptions/listen of the 2026-07-28 protocol with
// body, until ctx ends; the caller closes the response.
func postListen(t *testing.T, ctx context.Context, url, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "subscriptions/listen")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
