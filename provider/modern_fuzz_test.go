package provider

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Whatever a modern request holds, reading it never fails in a way
// other than a refusal, the params it leaves are JSON without the modern
// _meta members, and a result it is given stays JSON.
func FuzzModernRequest(f *testing.F) {
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1},`+meta+`}}`, "2026-07-28", "tools/call", "t")
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{`+meta+`}}`, "2026-07-28", "tools/list", "")
	f.Add(`{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"a://b","_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/logLevel":"info","k":[1]}}}`, " 2099-01-01", "resources/read", "a://b")
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"_meta":null}}`, "", "", "")
	f.Fuzz(func(t *testing.T, body, version, method, name string) {
		msgs, errs, batch, err := jsonrpc.DecodeBatch([]byte(body), 8)
		if err != nil || batch || len(msgs) != 1 || errs[0] != nil || msgs[0].Kind() != jsonrpc.KindRequest {
			return
		}
		m := msgs[0]
		r := httptest.NewRequest("POST", "/mcp", nil)
		for k, v := range map[string]string{"MCP-Protocol-Version": version, "Mcp-Method": method, "Mcp-Name": name} {
			if v != "" && !strings.ContainsAny(v, "\r\n\x00") {
				r.Header.Set(k, v)
			}
		}
		_ = modernPost(r, msgs, false)
		facts, herr := checkModern(r, m)
		if herr != nil {
			if herr.Status < 400 || herr.Status > 499 {
				t.Fatalf("refusal with status %d", herr.Status)
			}
			return
		}
		params := withoutModernMeta(m.Params, facts.meta)
		if !json.Valid(params) {
			t.Fatalf("params left not JSON: %s", params)
		}
		var p struct {
			Meta map[string]json.RawMessage `json:"_meta"`
		}
		if err := json.Unmarshal(params, &p); err != nil {
			t.Fatalf("params left not an object: %s", params)
		}
		for _, k := range []string{MetaProtocolVersion, MetaClientCapabilities, MetaClientInfo, MetaLogLevel} {
			if _, ok := p.Meta[k]; ok {
				t.Fatalf("%s left in %s", k, params)
			}
		}
		pr := &Provider{serverInfo: json.RawMessage(`{"name":"mcpbroker","version":"1"}`)}
		if res := pr.modernResult(m.Method, m.Params, "complete"); !json.Valid(res) {
			t.Fatalf("result not JSON: %s", res)
		}
	})
}
