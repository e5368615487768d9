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
