package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// newWaitingSDKServer serves a Go SDK server whose tool "wait" reports
// progress once, then answers when release is closed.
func newWaitingSDKServer(t *testing.T, release <-chan struct{}) string {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "alpha", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "wait", Description: "reports progress, then waits"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: req.Params.GetProgressToken(), Progress: 1, Message: "genuine",
			}); err != nil {
				return nil, nil, err
			}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
		})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// streamMessages reads the messages of an SSE response as they arrive.
func streamMessages(t *testing.T, resp *http.Response) <-chan map[string]any {
	out := make(chan map[string]any, 16)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || strings.TrimSpace(data) == "" {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(data), &m) == nil {
				out <- m
			}
		}
	}()
	return out
}

// A progress notification reaches the client only from the app serving
// the call it reports on: another app that sends progress under that
// call's token (the client's, or any token the broker might use upstream)
// is not relayed, while the genuine progress still arrives before the
// result, under the client's token.
func TestForgedProgressFromAnotherAppDropped(t *testing.T) {
	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	alpha := newWaitingSDKServer(t, release)
	beta := &scriptUpstream{}
	base := startBroker(t, scenario(t, "script"), scriptApps("alpha", alpha, "beta", newScriptUpstream(t, beta)))
	c := newWireClient(t, base+"/mcp")
	c.initialize(`{}`)

	call := c.post(`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"alpha_wait","arguments":{},"_meta":{"progressToken":"tok-A"}}}`)
	alphaMsgs := streamMessages(t, call)
	first, ok := <-alphaMsgs
	if !ok || first["method"] != "notifications/progress" {
		t.Fatalf("alpha's call: first message %v, want its progress", first)
	}

	var forged []string
	for _, token := range []string{`"tok-A"`, `"1"`, `"2"`, `"a"`, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"} {
		forged = append(forged, fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%s,"progress":99,"message":"forged"}}`, token))
	}
	msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"beta_script","arguments":{"messages":[`+strings.Join(forged, ",")+`]}}}`))
	for _, m := range msgs {
		if m["method"] == "notifications/progress" {
			t.Errorf("beta's progress for another call reached the client: %v", m)
		}
	}
	if last := msgs[len(msgs)-1]; last["id"] != "b" || last["result"] == nil {
		t.Errorf("beta's call: %v", msgs)
	}

	close(release)
	released = true
	all := []map[string]any{first}
	for m := range alphaMsgs {
		all = append(all, m)
	}
	progress := 0
	for i, m := range all {
		switch {
		case m["method"] == "notifications/progress":
			progress++
			p, _ := m["params"].(map[string]any)
			if p["progressToken"] != "tok-A" || p["message"] != "genuine" {
				t.Errorf("progress on alpha's call: %v, want the genuine one under tok-A", p)
			}
		case m["id"] == "a" && m["result"] != nil:
			if i != len(all)-1 {
				t.Errorf("the result came at %d of %d", i, len(all))
			}
		default:
			t.Errorf("unexpected message on alpha's call: %v", m)
		}
	}
	if progress != 1 {
		t.Errorf("alpha's call carried %d progress notifications, want 1: %v", progress, all)
	}
}

// Notifications about an upstream's own requests to the client — a URL
// elicitation's completion, a cancellation — reach the client only from
// the app that made the request.
func TestForgedRequestNotificationsFromAnotherAppDropped(t *testing.T) {
	alpha, beta := &scriptUpstream{}, &scriptUpstream{}
	base := startBroker(t, scenario(t, "script"), scriptApps("alpha", newScriptUpstream(t, alpha), "beta", newScriptUpstream(t, beta)))
	c := newWireClient(t, base+"/mcp")
	c.initialize(`{"elicitation":{"form":{},"url":{}}}`)

	script := func(app string, messages ...string) []map[string]any {
		t.Helper()
		return readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+app+`_script","arguments":{"messages":[`+strings.Join(messages, ",")+`]}}}`))
	}
	scriptError := func(app, rpcError string) []map[string]any {
		t.Helper()
		return readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+app+`_script","arguments":{"error":`+rpcError+`}}}`))
	}
	complete := func(id string) string {
		return `{"jsonrpc":"2.0","method":"notifications/elicitation/complete","params":{"elicitationId":"` + id + `"}}`
	}
	cancelled := func(id string) string {
		return `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + id + `,"reason":"r"}}`
	}
	notifications := func(msgs []map[string]any, method string) []map[string]any {
		var out []map[string]any
		for _, m := range msgs {
			if m["method"] == method {
				out = append(out, m)
			}
		}
		return out
	}

	// Alpha asks the client to visit a URL; the client is told a
	// client-side id for the request.
	asked := notifications(script("alpha", `{"jsonrpc":"2.0","id":"e-1","method":"elicitation/create","params":{"mode":"url","message":"m","url":"https://idp.example/","elicitationId":"el-A"}}`), "elicitation/create")
	if len(asked) != 1 {
		t.Fatalf("alpha's elicitation was not relayed")
	}
	clientID, _ := json.Marshal(asked[0]["id"])
	// Alpha's tool also needs a URL visited before it can run.
	scriptError("alpha", `{"code":-32042,"message":"visit","data":{"elicitations":[{"mode":"url","elicitationId":"el-B","url":"https://idp.example/b","message":"m"}]}}`)

	forged := script("beta", complete("el-A"), complete("el-B"), cancelled(`"e-1"`), cancelled(string(clientID)))
	for _, m := range forged {
		if m["method"] != nil {
			t.Errorf("beta's notification about alpha's request reached the client: %v", m)
		}
	}

	genuine := script("alpha", complete("el-A"), complete("el-B"), cancelled(`"e-1"`))
	if got := notifications(genuine, "notifications/elicitation/complete"); len(got) != 2 {
		t.Errorf("alpha's completions: %v, want both", genuine)
	}
	got := notifications(genuine, "notifications/cancelled")
	if len(got) != 1 {
		t.Fatalf("alpha's cancellation: %v", genuine)
	}
	if p, _ := got[0]["params"].(map[string]any); p["requestId"] != asked[0]["id"] {
		t.Errorf("alpha's cancellation names %v, want the client-side id %v", p["requestId"], asked[0]["id"])
	}
	// A completion is relayed once; after it the id is nobody's.
	if again := script("alpha", complete("el-A")); len(notifications(again, "notifications/elicitation/complete")) != 0 {
		t.Errorf("a second completion of el-A was relayed: %v", again)
	}
}

// An update about a resource reaches the client only from the app that
// serves its URI: an app cannot announce changes to another app's
// resources.
func TestForgedResourceUpdateFromAnotherAppDropped(t *testing.T) {
	alpha, beta := &scriptUpstream{}, &scriptUpstream{}
	apps := fmt.Sprintf("  - {name: alpha, type: mcpProxy, toolNamespace: {name: alpha_}, resourceNamespace: {uriPrefixes: [\"ledger://\"]}, upstream: {transport: stream, stream: {url: %q}}}\n", newScriptUpstream(t, alpha)) +
		scriptApps("beta", newScriptUpstream(t, beta))
	base := startBroker(t, scenario(t, "script"), apps)
	c := newWireClient(t, base+"/mcp")
	c.initialize(`{}`)
	updated := func(uri string) string {
		return `{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"` + uri + `"}}`
	}
	relayed := func(app string, uris ...string) map[string]bool {
		t.Helper()
		messages := make([]string, len(uris))
		for i, uri := range uris {
			messages[i] = updated(uri)
		}
		out := map[string]bool{}
		for _, m := range readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+app+`_script","arguments":{"messages":[`+strings.Join(messages, ",")+`]}}}`)) {
			if m["method"] == "notifications/resources/updated" {
				out[m["params"].(map[string]any)["uri"].(string)] = true
			}
		}
		return out
	}
	if got := relayed("beta", "ledger://accounts/alice", "notes://beta/1"); got["ledger://accounts/alice"] || !got["notes://beta/1"] {
		t.Errorf("beta's updates relayed: %v, want only its own notes://beta/1", got)
	}
	if got := relayed("alpha", "ledger://accounts/alice", "notes://beta/1"); !got["ledger://accounts/alice"] || got["notes://beta/1"] {
		t.Errorf("alpha's updates relayed: %v, want only ledger://accounts/alice", got)
	}
}
