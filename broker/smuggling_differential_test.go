package broker_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// goStdUpstream is an MCP server that decodes with encoding/json, as
// mark3labs/mcp-go and go-sdk before v1.3 do (case-insensitive keys).
type goStdUpstream struct {
	mu    sync.Mutex
	calls []string // "name amount"
}

func (u *goStdUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		w.WriteHeader(400)
		return
	}
	if m.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var result string
	switch m.Method {
	case "initialize":
		w.Header().Set("Mcp-Session-Id", "up-1")
		result = `{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"go","version":"1"}}`
	case "tools/list":
		result = `{"tools":[{"name":"list-orders","inputSchema":{"type":"object"}},{"name":"cancel-order","inputSchema":{"type":"object"}},{"name":"transfer","inputSchema":{"type":"object"}}]}`
	case "tools/call":
		var p struct {
			Name      string `json:"name"`
			Arguments struct {
				Amount float64 `json:"amount"`
			} `json:"arguments"`
		}
		_ = json.Unmarshal(m.Params, &p)
		u.mu.Lock()
		u.calls = append(u.calls, fmt.Sprintf("%s %v", p.Name, p.Arguments.Amount))
		u.mu.Unlock()
		result = `{"content":[{"type":"text","text":"ran ` + p.Name + `"}]}`
	default:
		result = `{}`
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, result)
}

func (u *goStdUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.calls...)
}

func TestCaseVariantNameRefused(t *testing.T) {
	up := &goStdUpstream{}
	srv := httptest.NewServer(up)
	defer srv.Close()
	policy := filepath.Join(t.TempDir(), "p.rego")
	os.WriteFile(policy, []byte("package orchestrator\n\nresult := {\"allowed\": input.request.mcp.tool.params.name == \"list-orders\"}\n"), 0o600)
	endpoint, as, resource := policyBroker(t, srv.URL, policy, false) // namespacing disabled
	c := newWireClient(t, endpoint)
	c.header.Set("Authorization", "Bearer "+tokenFor(t, as, resource, "alice"))
	c.initialize(`{}`)
	msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"cancel-order"}}`))
	t.Logf("plain forbidden call: %v", msgs)
	msgs = readMessages(t, c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list-orders","Name":"cancel-order"}}`))
	t.Logf("smuggled call: %v", msgs)
	t.Logf("upstream saw: %v", up.seen())
	for _, s := range up.seen() {
		if s == "cancel-order 0" {
			t.Errorf("BYPASS: policy allowed list-orders, upstream ran cancel-order")
		}
	}
}

func TestCaseVariantArgumentRefused(t *testing.T) {
	up := &goStdUpstream{}
	srv := httptest.NewServer(up)
	defer srv.Close()
	policy, _ := filepath.Abs("../policies/argument_rule.rego")
	endpoint, as, resource := policyBroker(t, srv.URL, policy, true) // namespaced shop_
	c := newWireClient(t, endpoint)
	c.header.Set("Authorization", "Bearer "+tokenFor(t, as, resource, "alice"))
	c.initialize(`{}`)
	msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shop_transfer","arguments":{"amount":5000}}}`))
	t.Logf("plain over-limit: %v", msgs)
	msgs = readMessages(t, c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"shop_transfer","arguments":{"amount":500,"AMOUNT":5000000}}}`))
	t.Logf("smuggled: %v", msgs)
	t.Logf("upstream saw: %v", up.seen())
	for _, s := range up.seen() {
		if s == "transfer 5e+06" {
			t.Errorf("BYPASS: policy judged amount 500, upstream transferred 5000000")
		}
	}
}

func TestFoldedArgumentNameRefused(t *testing.T) {
	up := &goStdUpstream{}
	srv := httptest.NewServer(up)
	defer srv.Close()
	policy, _ := filepath.Abs("../policies/argument_rule.rego")
	endpoint, as, resource := policyBroker(t, srv.URL, policy, true) // namespaced: params are re-encoded
	c := newWireClient(t, endpoint)
	c.header.Set("Authorization", "Bearer "+tokenFor(t, as, resource, "alice"))
	c.initialize(`{}`)
	msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"shop_transfer","arguments":{"amount":500},"argumentſ":{"amount":7000000}}}`))
	t.Logf("smuggled: %v", msgs)
	t.Logf("upstream saw: %v", up.seen())
	for _, s := range up.seen() {
		if s == "transfer 7e+06" {
			t.Errorf("BYPASS via U+017F: policy judged 500, upstream transferred 7000000")
		}
	}
}
