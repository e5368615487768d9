package broker_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// sessionlessBroker serves Streamable HTTP without sessions in front of
// the sample ledger (%[1]q).
const sessionlessBroker = `
version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: false}}
apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[1]q}}
`

// session.enabled: false serves clients that keep no session: no id is
// issued, every POST stands alone with auth, policy and forwarding as
// usual, and GET and DELETE are refused with 405.
func TestSessionlessStreamableHTTP(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	upstream := freeAddress(t)
	startProcess(t, upstream, bin, "upstream", "sample", "--listen", upstream)
	base := startBroker(t, sessionlessBroker, "http://"+upstream+"/mcp")

	resp, err := http.Post(base+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("initialize: %d, session id %q", resp.StatusCode, resp.Header.Get("Mcp-Session-Id"))
	}
	// A request needs no initialize before it.
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := string(readBody(t, resp))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "alice") {
		t.Fatalf("a call with no session: %d %s", resp.StatusCode, body)
	}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequest(method, base+"/mcp", nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s: %d, Allow %q; want 405, POST", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}

	// The Go SDK's client works with it as with any server that issues
	// no session id.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "sessionless", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()
	if names := toolNames(t, ctx, session); !names["ledger_get_balance"] {
		t.Errorf("tools/list: %v", names)
	}
	for range 3 {
		if res := callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "bob"}); res.IsError || !strings.Contains(text(res), "bob") {
			t.Errorf("call: %s", text(res))
		}
	}
}
