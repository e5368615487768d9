package broker_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Server-to-client requests that would go to the client carrying the
// broker's session.
const (
	askSampling      = `{"jsonrpc":"2.0","id":"%s","method":"sampling/createMessage","params":{"messages":[],"maxTokens":10}}`
	askSamplingTools = `{"jsonrpc":"2.0","id":"%s","method":"sampling/createMessage","params":{"messages":[],"maxTokens":10,"tools":[{"name":"t","inputSchema":{"type":"object"}}]}}`
	askRoots         = `{"jsonrpc":"2.0","id":"%s","method":"roots/list"}`
	askForm          = `{"jsonrpc":"2.0","id":"%s","method":"elicitation/create","params":{"mode":"form","message":"m","requestedSchema":{"type":"object","properties":{}}}}`
	askFormNoMode    = `{"jsonrpc":"2.0","id":"%s","method":"elicitation/create","params":{"message":"m","requestedSchema":{"type":"object","properties":{}}}}`
	askURL           = `{"jsonrpc":"2.0","id":"%s","method":"elicitation/create","params":{"mode":"url","message":"m","url":"https://idp.example/consent","elicitationId":"e1"}}`
	askURLNoMode     = `{"jsonrpc":"2.0","id":"%s","method":"elicitation/create","params":{"message":"m","url":"https://idp.example/consent","elicitationId":"e1"}}`
	askOtherMode     = `{"jsonrpc":"2.0","id":"%s","method":"elicitation/create","params":{"mode":"telepathy","message":"m"}}`
)

// An upstream reaches the client only with what the client declared: a
// capability declared null is not declared, an empty elicitation object
// means form mode only, and a mode or sampling feature the client did not
// declare is refused to the upstream with invalid params, never relayed.
func TestServerRequestsNeedDeclaredCapability(t *testing.T) {
	up := &scriptUpstream{}
	base := startBroker(t, scenario(t, "script"), scriptApps("cap", newScriptUpstream(t, up)))
	const relayed = 0
	tests := []struct {
		name, capabilities, ask string
		want                    int // relayed, or the error code the upstream gets
	}{
		{"sampling null", `{"sampling":null}`, askSampling, -32601},
		{"sampling declared", `{"sampling":{}}`, askSampling, relayed},
		{"sampling tools undeclared", `{"sampling":{}}`, askSamplingTools, -32602},
		{"sampling tools declared", `{"sampling":{"tools":{}}}`, askSamplingTools, relayed},
		{"sampling tools null", `{"sampling":{"tools":null}}`, askSamplingTools, -32602},
		{"roots null", `{"roots":null}`, askRoots, -32601},
		{"roots declared", `{"roots":{}}`, askRoots, relayed},
		{"elicitation null", `{"elicitation":null}`, askForm, -32601},
		{"empty elicitation, form", `{"elicitation":{}}`, askForm, relayed},
		{"empty elicitation, form without mode", `{"elicitation":{}}`, askFormNoMode, relayed},
		{"empty elicitation, url", `{"elicitation":{}}`, askURL, -32602},
		{"empty elicitation, url without mode", `{"elicitation":{}}`, askURLNoMode, -32602},
		{"empty elicitation, unknown mode", `{"elicitation":{}}`, askOtherMode, -32602},
		{"form only, url", `{"elicitation":{"form":{}}}`, askURL, -32602},
		{"url null, url", `{"elicitation":{"form":{},"url":null}}`, askURL, -32602},
		{"form and url, url", `{"elicitation":{"form":{},"url":{}}}`, askURL, relayed},
		{"url only, url", `{"elicitation":{"url":{}}}`, askURL, relayed},
		{"url only, form", `{"elicitation":{"url":{}}}`, askForm, -32602},
		{"url only, form without mode", `{"elicitation":{"url":{}}}`, askFormNoMode, -32602},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newWireClient(t, base+"/mcp")
			c.initialize(tt.capabilities)
			id := fmt.Sprintf("ask-%d", i)
			ask := fmt.Sprintf(tt.ask, id)
			var method struct {
				Method string `json:"method"`
			}
			_ = json.Unmarshal([]byte(ask), &method)
			msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"cap_script","arguments":{"messages":[`+ask+`]}}}`))
			sawRequest := false
			for _, m := range msgs {
				if m["method"] == method.Method {
					sawRequest = true
				}
			}
			if last := msgs[len(msgs)-1]; last["result"] == nil {
				t.Fatalf("the call failed: %v", msgs)
			}
			answer := up.responseTo(id)
			if tt.want == relayed {
				if !sawRequest || answer != nil {
					t.Errorf("want the request relayed; client saw it: %v, upstream got %v", sawRequest, answer)
				}
				return
			}
			if sawRequest {
				t.Errorf("the client received %s it did not declare: %v", method.Method, msgs)
			}
			var code any
			if e, ok := answer["error"].(map[string]any); ok {
				code = e["code"]
			}
			if code != float64(tt.want) {
				t.Errorf("upstream got %v, want error %d", answer, tt.want)
			}
		})
	}
}

// An upstream is told exactly the capabilities the broker will honour:
// members declared null are left out, and capabilities that are not
// objects are refused at initialize.
func TestUpstreamSeesDeclaredCapabilities(t *testing.T) {
	up := &scriptUpstream{}
	base := startBroker(t, scenario(t, "script"), scriptApps("cap", newScriptUpstream(t, up)))
	tests := []struct {
		name, capabilities, want string // want "" : initialize refused with -32602
	}{
		{"nulls left out", `{"sampling":null,"roots":{"listChanged":true},"elicitation":{"form":{},"url":null},"experimental":{"x":{"a":"<&>"}}}`,
			`{"roots":{"listChanged":true},"elicitation":{"form":{}},"experimental":{"x":{"a":"<&>"}}}`},
		{"as declared", `{"sampling":{"tools":{}},"elicitation":{}}`, `{"sampling":{"tools":{}},"elicitation":{}}`},
		{"not an object", `[]`, ""},
		{"null", `null`, ""},
		{"sampling not an object", `{"sampling":true}`, ""},
		{"elicitation mode not an object", `{"elicitation":{"url":1}}`, ""},
		{"roots not an object", `{"roots":"yes"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.received("initialize"))
			c := newWireClient(t, base+"/mcp")
			resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":` + tt.capabilities + `,"clientInfo":{"name":"wire","version":"1"}}}`)
			msgs := readMessages(t, resp)
			if tt.want == "" {
				e, _ := msgs[0]["error"].(map[string]any)
				if e == nil || e["code"] != float64(-32602) {
					t.Errorf("initialize: %v, want -32602", msgs)
				}
				if n := len(up.received("initialize")); n != before {
					t.Errorf("the upstream was initialized with capabilities %s", tt.capabilities)
				}
				return
			}
			// The upstream session opens at the session's first request
			// that needs the app.
			c.session, c.version = resp.Header.Get("Mcp-Session-Id"), "2025-11-25"
			c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`).Body.Close()
			readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"cap_echo","arguments":{}}}`))
			got := up.received("initialize")
			if len(got) != before+1 {
				t.Fatalf("upstream initializations: %d, want %d (%v)", len(got), before+1, msgs)
			}
			var p struct {
				Capabilities json.RawMessage `json:"capabilities"`
			}
			_ = json.Unmarshal([]byte(rawParams(t, got[before])), &p)
			var gotCaps, wantCaps any
			_ = json.Unmarshal(p.Capabilities, &gotCaps)
			_ = json.Unmarshal([]byte(tt.want), &wantCaps)
			if !reflect.DeepEqual(gotCaps, wantCaps) {
				t.Errorf("upstream was told %s, want %s", p.Capabilities, tt.want)
			}
			if strings.Contains(string(p.Capabilities), "null") {
				t.Errorf("a null member reached the upstream: %s", p.Capabilities)
			}
		})
	}
}
