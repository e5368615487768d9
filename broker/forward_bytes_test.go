package broker_test

import (
	"net/http"
	"strings"
	"testing"
)

// unusualArguments is valid JSON that a re-encoder would change: HTML
// characters, escapes written in another way than an encoder writes them,
// numbers no float holds, exponents, whitespace and member order.
const unusualArguments = `{ "html" : "<a href=\"x\">&amp;</a> <<>> &&",
	"accent":"\u00e9\u00E9", "slash":"a\/b", "nul":"\u0000", "line":"\u2028",
	"big":12345678901234567890, "huge":1e400, "tiny":-0.0, "exp":1E+2,
	"zeta":{"b":[ 1 , 2 ],"a":null}, "alpha":true }`

// The parameters an upstream receives are the client's bytes: only the
// names the broker rewrites change, nothing is escaped, reordered or
// reformatted on the way.
func TestForwardedParamsKeepClientBytes(t *testing.T) {
	up := &scriptUpstream{tools: `[{"name":"echo","inputSchema":{"type":"object"}}]`}
	base := startBroker(t, scenario(t, "script"), scriptApps("cap", newScriptUpstream(t, up)))
	c := newWireClient(t, base+"/mcp")
	c.initialize(`{}`)

	for _, tc := range []struct {
		name, method, params, want string
	}{
		{
			name:   "tools/call",
			method: "tools/call",
			params: `{"arguments":` + unusualArguments + `, "name" : "cap_echo","_meta":{"x-trace":"<&>"}}`,
			want:   `{"arguments":` + unusualArguments + `, "name" : "echo","_meta":{"x-trace":"<&>"}}`,
		},
		{
			name:   "prompts/get",
			method: "prompts/get",
			params: `{"name":"cap_greet","arguments":{"who":"<b>&amp;\u00e9</b>"}}`,
			want:   `{"name":"greet","arguments":{"who":"<b>&amp;\u00e9</b>"}}`,
		},
		{
			name:   "completion/complete",
			method: "completion/complete",
			params: `{"ref":{"type":"ref/prompt", "name":"cap_greet","x":"<>"},"argument":{"name":"who","value":"&\/<"}}`,
			want:   `{"ref":{"type":"ref/prompt", "name":"greet","x":"<>"},"argument":{"name":"who","value":"&\/<"}}`,
		},
		{
			name:   "escaped member name",
			method: "tools/call",
			params: `{"n\u0061me":"cap_echo","arguments":{"q":"<&>"}}`,
			want:   `{"n\u0061me":"echo","arguments":{"q":"<&>"}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.received(tc.method))
			msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"`+tc.method+`","params":`+tc.params+`}`))
			if len(msgs) != 1 || msgs[0]["result"] == nil {
				t.Fatalf("client got %v", msgs)
			}
			got := up.received(tc.method)
			if len(got) != before+1 {
				t.Fatalf("upstream received %d %s, want %d", len(got), tc.method, before+1)
			}
			if params := rawParams(t, got[before]); params != tc.want {
				t.Errorf("upstream params:\n got %s\nwant %s", params, tc.want)
			}
		})
	}
}

// A request under the broker's body cap reaches an upstream with the same
// cap: forwarding does not inflate it past the cap.
func TestNearCapRequestNotInflated(t *testing.T) {
	up := &scriptUpstream{tools: `[{"name":"echo","inputSchema":{"type":"object"}}]`}
	base := startBroker(t, scenario(t, "script"), scriptApps("cap", newScriptUpstream(t, up)))
	c := newWireClient(t, base+"/mcp")
	c.initialize(`{}`)

	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"cap_echo","arguments":{"text":"` +
		strings.Repeat("<&>", (scriptBodyCap-1024)/3) + `"}}}`
	resp := c.post(body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("broker answered %d to a body of %d bytes", resp.StatusCode, len(body))
	}
	msgs := readMessages(t, resp)
	if len(msgs) != 1 || msgs[0]["result"] == nil {
		t.Errorf("client got an error: %.300v", msgs)
	}
	got := up.received("tools/call")
	if len(got) != 1 {
		t.Fatalf("upstream received %d tools/call, want 1 (a body over its cap is refused unread)", len(got))
	}
	if len(got[0]) > len(body) {
		t.Errorf("the upstream received %d bytes for a client body of %d", len(got[0]), len(body))
	}
}
