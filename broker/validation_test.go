package broker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// validationBroker validates the arguments and results of the app at
// %[1]q; %[2]q is its trail.
const validationBroker = openProvider + `audit: {dir: %[2]q}
apps:
  - name: shop
    type: mcpProxy
    toolNamespace: {disabled: true}
    upstream: {transport: stream, stream: {url: %[1]q}}
    validation:
      arguments: enforce
      results: enforce
      limits: {argumentBytes: 4096, depth: 8, stringBytes: 256}
`

// Schemas of the upstream's tools: 2020-12 by default and explicit, and
// draft-07.
const (
	transferInput = `{"type":"object","properties":{
		"from":{"type":"string","minLength":1,"pattern":"^[a-z]+$"},
		"to":{"type":"string","minLength":1},
		"amount":{"type":"integer","exclusiveMinimum":0,"maximum":1000000},
		"currency":{"enum":["EUR","USD"]},
		"notify":{"type":"string","format":"email"},
		"when":{"type":"string","format":"date-time"}
	},"required":["from","to","amount"],"additionalProperties":false}`
	orderInput = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
	"$defs":{"item":{"type":"object","properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1}},"required":["sku","qty"]}},
	"properties":{
		"items":{"type":"array","minItems":1,"maxItems":3,"items":{"$ref":"#/$defs/item"}},
		"payment":{"oneOf":[
			{"type":"object","properties":{"card":{"type":"string"}},"required":["card"]},
			{"type":"object","properties":{"iban":{"type":"string"}},"required":["iban"]}]}
	},"required":["items"],"unevaluatedProperties":false}`
	searchInput = `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
	"properties":{
		"query":{"type":"string","minLength":2},
		"limit":{"type":"integer","minimum":1,"maximum":50},
		"range":{"type":"array","items":[{"type":"integer"},{"type":"integer"}],"additionalItems":false},
		"tags":{"type":"array","items":{"type":"string"},"uniqueItems":true}
	},"required":["query"],"additionalProperties":false}`
	quoteOutput = `{"type":"object","properties":{"price":{"type":"number"},"currency":{"type":"string"}},"required":["price","currency"]}`
)

// startValidatedUpstream serves the tools transfer, order, search and
// quote (whose structured result is right for "ok" and wrong otherwise).
func startValidatedUpstream(t *testing.T) *sdkUpstream {
	u := newSDKUpstream(t, "shop")
	ok := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil
	}
	for name, schema := range map[string]string{"transfer": transferInput, "order": orderInput, "search": searchInput} {
		u.server.AddTool(&mcp.Tool{Name: name, Description: name, InputSchema: json.RawMessage(schema)}, ok)
	}
	u.server.AddTool(&mcp.Tool{Name: "quote", Description: "quote", InputSchema: json.RawMessage(`{"type":"object"}`), OutputSchema: json.RawMessage(quoteOutput)},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			structured := map[string]any{"price": 9.5, "currency": "EUR"}
			if !strings.Contains(string(req.Params.Arguments), `"ok"`) {
				structured = map[string]any{"price": "nine"}
			}
			raw, _ := json.Marshal(structured)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(raw)}}, StructuredContent: json.RawMessage(raw)}, nil
		})
	return u
}

// Arguments that do not fit the tool's inputSchema, or the argument
// limits, are answered with an isError result naming the failing paths,
// before the policy and the upstream: the upstream never sees them.
// Arguments that fit reach it.
func TestArgumentValidation(t *testing.T) {
	u := startValidatedUpstream(t)
	trail := t.TempDir()
	c := newWireClient(t, startBroker(t, validationBroker, u.url, trail)+"/mcp")
	c.initialize(`{}`)
	long := strings.Repeat("x", 300)
	deep := strings.Repeat(`{"a":`, 10) + "1" + strings.Repeat("}", 10)
	tests := []struct {
		tool, args string
		want       []string // fragments of the isError text; none: valid
	}{
		{"transfer", `{"from":"alice","to":"bob","amount":10,"currency":"EUR"}`, nil},
		{"transfer", `{"from":"alice","to":"bob","amount":"10"}`, []string{"/amount: got string, want integer"}},
		{"transfer", `{"from":"alice","amount":10}`, []string{"missing property 'to'"}},
		{"transfer", `{"from":"alice","to":"bob","amount":1,"currency":"GBP"}`, []string{"/currency: value must be one of 'EUR', 'USD'"}},
		{"transfer", `{"from":"alice","to":"bob","amount":0}`, []string{"/amount: exclusiveMinimum"}},
		{"transfer", `{"from":"alice","to":"bob","amount":2000000}`, []string{"/amount: maximum"}},
		{"transfer", `{"from":"Alice","to":"bob","amount":1}`, []string{"/from: 'Alice' does not match pattern"}},
		{"transfer", `{"from":"alice","to":"bob","amount":1,"admin":true}`, []string{"additional properties 'admin' not allowed"}},
		{"transfer", `{"from":"alice","to":"bob","amount":1,"notify":"nobody"}`, []string{"/notify: 'nobody' is not valid email"}},
		{"transfer", `{"from":"alice","to":"bob","amount":1,"when":"soon"}`, []string{"/when: 'soon' is not valid date-time"}},
		{"transfer", `{"from":"","amount":-1}`, []string{"missing property 'to'", "/from: minLength", "/amount: exclusiveMinimum"}},
		{"transfer", `{}`, []string{"missing properties 'from', 'to', 'amount'"}},
		{"order", `{"items":[{"sku":"a","qty":1}],"payment":{"card":"x"}}`, nil},
		{"order", `{"items":[{"sku":"a","qty":1},{"sku":"b","qty":0}]}`, []string{"/items/1/qty: minimum"}},
		{"order", `{"items":[{"qty":2}]}`, []string{"/items/0: missing property 'sku'"}},
		{"order", `{"items":[]}`, []string{"/items: minItems"}},
		{"order", `{"items":[{"sku":"a","qty":1}],"payment":{"cash":true}}`, []string{"/payment: missing property 'card'", "/payment: missing property 'iban'"}},
		{"order", `{"items":[{"sku":"a","qty":1}],"payment":{"card":"x","iban":"y"}}`, []string{"/payment: 'oneOf' failed, subschemas 0, 1 matched"}},
		{"order", `{"items":[{"sku":"a","qty":1}],"coupon":"x"}`, []string{"/coupon: not allowed here"}},
		{"search", `{"query":"mcp","limit":5,"range":[1,2],"tags":["a"]}`, nil},
		{"search", `{"query":"m"}`, []string{"/query: minLength"}},
		{"search", `{"query":"mcp","range":[1,"2"]}`, []string{"/range/1: got string, want integer"}},
		{"search", `{"query":"mcp","range":[1,2,3]}`, []string{"/range"}},
		{"search", `{"query":"mcp","tags":["a","a"]}`, []string{"/tags: items at 0 and 1 are equal"}},
		{"search", `{"query":"mcp","limit":0,"sort":"asc"}`, []string{"/limit: minimum", "additional properties 'sort' not allowed"}},
		{"search", `{"query":"` + long + `"}`, []string{"longer than the 256 allowed"}},
		{"search", `{"query":"mcp","deep":` + deep + `}`, []string{"nest deeper than the 8 levels allowed"}},
	}
	for i, tt := range tests {
		before := u.counts()["tools/call"]
		r, e := call(t, c, tt.tool, tt.args)
		if e != nil {
			t.Errorf("case %d (%s %s): a JSON-RPC error %v, want a result", i, tt.tool, tt.args, e)
			continue
		}
		reached := u.counts()["tools/call"] - before
		text := resultText(r)
		if len(tt.want) == 0 {
			if r["isError"] == true || reached != 1 {
				t.Errorf("case %d (%s %s): isError %v, %q; reached the upstream %d times", i, tt.tool, tt.args, r["isError"], text, reached)
			}
			continue
		}
		if r["isError"] != true || reached != 0 {
			t.Errorf("case %d (%s %s): isError %v, reached the upstream %d times; want an isError result and no call", i, tt.tool, tt.args, r["isError"], reached)
		}
		if !strings.HasPrefix(text, "Invalid arguments for tool "+tt.tool+": ") {
			t.Errorf("case %d: text %q", i, text)
		}
		for _, w := range tt.want {
			if !strings.Contains(text, w) {
				t.Errorf("case %d (%s %s): %q does not say %q", i, tt.tool, tt.args, text, w)
			}
		}
	}
	if n := countRecords(t, trail, func(r *audit.Record) bool {
		return r.Event == "tools/call" && strings.HasPrefix(r.Detail, "Invalid arguments")
	}); n < 20 {
		t.Errorf("%d refused calls recorded, want every one", n)
	}
}

// A result whose structuredContent does not fit the tool's outputSchema
// becomes an isError result, and is recorded as such; one that fits
// passes as it came.
func TestResultValidation(t *testing.T) {
	u := startValidatedUpstream(t)
	c := newWireClient(t, startBroker(t, validationBroker, u.url, t.TempDir())+"/mcp")
	c.initialize(`{}`)
	r, e := call(t, c, "quote", `{"mode":"ok"}`)
	if e != nil || r["isError"] == true || r["structuredContent"] == nil {
		t.Fatalf("a fitting result: %v %v", r, e)
	}
	r, e = call(t, c, "quote", `{"mode":"bad"}`)
	if e != nil || r["isError"] != true || r["structuredContent"] != nil || !strings.Contains(resultText(r), "does not match its output schema") || !strings.Contains(resultText(r), "/price: got string, want number") {
		t.Fatalf("a result off its schema: %v %v", r, e)
	}
}

func resultText(result map[string]any) string {
	var texts []string
	content, _ := result["content"].([]any)
	for _, c := range content {
		if m, ok := c.(map[string]any); ok {
			if s, ok := m["text"].(string); ok {
				texts = append(texts, s)
			}
		}
	}
	return strings.Join(texts, "\n")
}

func countRecords(t *testing.T, trail string, match func(*audit.Record) bool) int {
	t.Helper()
	n := 0
	if err := audit.Query(trail, audit.Filter{}, func(r *audit.Record) bool {
		if match(r) {
			n++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
