package broker_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// wireClient speaks Streamable HTTP by hand, to see exactly what the
// broker puts on the wire.
type wireClient struct {
	t        testing.TB
	url      string
	session  string
	version  string
	header   http.Header
	response *http.Response
}

func newWireClient(t testing.TB, url string) *wireClient {
	return &wireClient{t: t, url: url, header: http.Header{}}
}

// post sends a body and returns the raw HTTP response.
func (c *wireClient) post(body string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	if c.version != "" {
		req.Header.Set("MCP-Protocol-Version", c.version)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

// initialize opens a session.
func (c *wireClient) initialize(capabilities string) {
	c.t.Helper()
	resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":` + capabilities + `,"clientInfo":{"name":"wire","version":"1"}}}`)
	msgs := readMessages(c.t, resp)
	if resp.StatusCode != http.StatusOK || len(msgs) != 1 || msgs[0]["error"] != nil {
		c.t.Fatalf("initialize: %d %v", resp.StatusCode, msgs)
	}
	c.session = resp.Header.Get("Mcp-Session-Id")
	c.version = "2025-11-25"
	if r := c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`); r.StatusCode != http.StatusAccepted {
		c.t.Fatalf("initialized: %d", r.StatusCode)
	}
}

// readMessages reads every JSON-RPC message of a JSON or SSE response, in
// order.
func readMessages(t testing.TB, resp *http.Response) []map[string]any {
	t.Helper()
	defer resp.Body.Close()
	var out []map[string]any
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, _ := io.ReadAll(resp.Body)
		if len(strings.TrimSpace(string(raw))) == 0 {
			return nil
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("response body %q: %v", raw, err)
		}
		return append(out, m)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || strings.TrimSpace(data) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("event data %q: %v", data, err)
		}
		out = append(out, m)
	}
	return out
}

// Progress and logging notifications must reach the client before the
// result they belong to; the conformance suite does not check the order.
func TestProgressOrderOnTheWire(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	addr := freeAddress(t)
	startProcess(t, addr, bin, "upstream", "sample", "--listen", addr)
	brokerURL := startBroker(t, `
version: 1
mcpProvider:
  enabled: true
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true}}
apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: "http://%s/mcp"}}
`, addr)
	c := newWireClient(t, brokerURL+"/mcp")
	c.initialize(`{}`)
	if r := c.post(`{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug"}}`); r.StatusCode != http.StatusOK {
		t.Fatalf("setLevel: %d", r.StatusCode)
	}
	resp := c.post(`{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"ledger_slow_count","arguments":{"n":4,"delay_ms":5},"_meta":{"progressToken":"tok"}}}`)
	msgs := readMessages(t, resp)
	var progressSeen, logsSeen int
	for i, m := range msgs {
		switch m["method"] {
		case "notifications/progress":
			progressSeen++
			if tok := m["params"].(map[string]any)["progressToken"]; tok != "tok" {
				t.Errorf("progress token %v, want the client's own", tok)
			}
		case "notifications/message":
			logsSeen++
		default:
			if m["id"] != "call-7" {
				t.Errorf("message %d: %v", i, m)
			}
			if i != len(msgs)-1 {
				t.Errorf("the result came at position %d of %d", i, len(msgs))
			}
		}
	}
	if progressSeen != 4 || logsSeen != 4 {
		t.Errorf("before the result: %d progress and %d log notifications, want 4 and 4 (%v)", progressSeen, logsSeen, msgs)
	}
}
