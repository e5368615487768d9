package schema_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/apps/schema"
)

// Schemas of real tools' shapes: a transfer (2020-12, no $schema), an
// order with nested items (2020-12, explicit), a search (draft-07).
const (
	transferSchema = `{"type":"object","properties":{
		"from":{"type":"string","minLength":1,"maxLength":32,"pattern":"^[a-z]+$"},
		"to":{"type":"string","minLength":1},
		"amount":{"type":"integer","exclusiveMinimum":0,"maximum":1000000},
		"currency":{"enum":["EUR","USD"]},
		"memo":{"type":"string","maxLength":10},
		"notify":{"type":"string","format":"email"},
		"when":{"type":"string","format":"date-time"},
		"ref":{"type":"string","format":"uuid"},
		"kind":{"const":"transfer"}
	},"required":["from","to","amount"],"additionalProperties":false,
	"dependentRequired":{"notify":["memo"]}}`
	orderSchema = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
	"$defs":{"item":{"type":"object","properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1}},"required":["sku","qty"]}},
	"properties":{
		"items":{"type":"array","minItems":1,"maxItems":3,"items":{"$ref":"#/$defs/item"}},
		"point":{"type":"array","prefixItems":[{"type":"number"},{"type":"number"}],"items":false},
		"payment":{"oneOf":[
			{"type":"object","properties":{"card":{"type":"string"}},"required":["card"]},
			{"type":"object","properties":{"iban":{"type":"string"}},"required":["iban"]}]},
		"contact":{"anyOf":[{"type":"string","format":"email"},{"type":"string","pattern":"^\\+[0-9]+$"}]}
	},"required":["items"],"unevaluatedProperties":false}`
	searchSchema = `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
	"definitions":{"range":{"type":"array","items":[{"type":"integer"},{"type":"integer"}],"additionalItems":false}},
	"properties":{
		"query":{"type":"string","minLength":2},
		"limit":{"type":"integer","minimum":1,"maximum":50},
		"range":{"$ref":"#/definitions/range"},
		"tags":{"type":"array","items":{"type":"string"},"uniqueItems":true}
	},"required":["query"],"additionalProperties":false}`
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name, schema, args string
		want               []string // "path: message fragment"; none: valid
	}{
		{"transfer valid", transferSchema, `{"from":"alice","to":"bob","amount":10,"currency":"EUR"}`, nil},
		{"wrong type", transferSchema, `{"from":"alice","to":"bob","amount":"10"}`, []string{"/amount: got string, want integer"}},
		{"missing required", transferSchema, `{"from":"alice","amount":10}`, []string{": missing property 'to'"}},
		{"enum", transferSchema, `{"from":"alice","to":"bob","amount":1,"currency":"GBP"}`, []string{"/currency: value must be one of"}},
		{"const", transferSchema, `{"from":"alice","to":"bob","amount":1,"kind":"refund"}`, []string{"/kind: value must be 'transfer'"}},
		{"exclusive minimum", transferSchema, `{"from":"alice","to":"bob","amount":0}`, []string{"/amount: exclusiveMinimum"}},
		{"maximum", transferSchema, `{"from":"alice","to":"bob","amount":2000000}`, []string{"/amount: maximum"}},
		{"pattern", transferSchema, `{"from":"Alice1","to":"bob","amount":1}`, []string{"/from: 'Alice1' does not match pattern"}},
		{"maxLength", transferSchema, `{"from":"alice","to":"bob","amount":1,"memo":"far too long a memo"}`, []string{"/memo: maxLength"}},
		{"additional property", transferSchema, `{"from":"alice","to":"bob","amount":1,"admin":true}`, []string{": additional properties 'admin' not allowed"}},
		{"format email", transferSchema, `{"from":"alice","to":"bob","amount":1,"memo":"m","notify":"not-an-address"}`, []string{"/notify: 'not-an-address' is not valid email"}},
		{"format email valid", transferSchema, `{"from":"alice","to":"bob","amount":1,"memo":"m","notify":"a@example.com"}`, nil},
		{"format date-time", transferSchema, `{"from":"alice","to":"bob","amount":1,"when":"yesterday"}`, []string{"/when: 'yesterday' is not valid date-time"}},
		{"format uuid", transferSchema, `{"from":"alice","to":"bob","amount":1,"ref":"1234"}`, []string{"/ref: '1234' is not valid uuid"}},
		{"dependentRequired", transferSchema, `{"from":"alice","to":"bob","amount":1,"notify":"a@example.com"}`, []string{": properties 'memo' required, if 'notify' exists"}},
		{"several at once", transferSchema, `{"from":"","amount":-5}`, []string{": missing property 'to'", "/from: minLength", "/amount: exclusiveMinimum"}},
		{"order valid", orderSchema, `{"items":[{"sku":"a","qty":1}],"point":[1.5,2],"payment":{"card":"x"},"contact":"+4930"}`, nil},
		{"nested array item", orderSchema, `{"items":[{"sku":"a","qty":1},{"sku":"b","qty":0}]}`, []string{"/items/1/qty: minimum"}},
		{"nested missing", orderSchema, `{"items":[{"qty":2}]}`, []string{"/items/0: missing property 'sku'"}},
		{"minItems", orderSchema, `{"items":[]}`, []string{"/items: minItems"}},
		{"maxItems", orderSchema, `{"items":[{"sku":"a","qty":1},{"sku":"a","qty":1},{"sku":"a","qty":1},{"sku":"a","qty":1}]}`, []string{"/items: maxItems"}},
		{"prefixItems", orderSchema, `{"items":[{"sku":"a","qty":1}],"point":[1,"x"]}`, []string{"/point/1: got string, want number"}},
		{"items false after prefix", orderSchema, `{"items":[{"sku":"a","qty":1}],"point":[1,2,3]}`, []string{"/point/2: not allowed here"}},
		{"oneOf none", orderSchema, `{"items":[{"sku":"a","qty":1}],"payment":{"cash":true}}`, []string{"/payment: missing property 'card'", "/payment: missing property 'iban'"}},
		{"oneOf both", orderSchema, `{"items":[{"sku":"a","qty":1}],"payment":{"card":"x","iban":"y"}}`, []string{"/payment: 'oneOf' failed, subschemas 0, 1 matched"}},
		{"anyOf none", orderSchema, `{"items":[{"sku":"a","qty":1}],"contact":"call me"}`, []string{"/contact"}},
		{"unevaluatedProperties", orderSchema, `{"items":[{"sku":"a","qty":1}],"coupon":"x"}`, []string{"/coupon: not allowed here"}},
		{"draft-07 valid", searchSchema, `{"query":"mcp","limit":5,"range":[1,2],"tags":["a","b"]}`, nil},
		{"draft-07 items tuple", searchSchema, `{"query":"mcp","range":[1,"2"]}`, []string{"/range/1: got string, want integer"}},
		{"draft-07 additionalItems", searchSchema, `{"query":"mcp","range":[1,2,3]}`, []string{"/range"}},
		{"draft-07 uniqueItems", searchSchema, `{"query":"mcp","tags":["a","a"]}`, []string{"/tags: items at 0 and 1 are equal"}},
		{"draft-07 required and bounds", searchSchema, `{"limit":100}`, []string{": missing property 'query'", "/limit: maximum"}},
		{"not an object", searchSchema, `[1]`, []string{": got array, want object"}},
		{"not JSON", searchSchema, `{"query":`, []string{": not valid JSON"}},
	}
	cache := schema.NewCache(8)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := cache.Compile(tt.schema, []byte(tt.schema))
			if err != nil {
				t.Fatal(err)
			}
			f := s.Validate([]byte(tt.args))
			if len(tt.want) == 0 {
				if f != nil {
					t.Fatalf("invalid: %s", f.Text())
				}
				return
			}
			if f == nil {
				t.Fatal("valid, want a failure")
			}
			got := make([]string, len(f.Problems))
			for i, p := range f.Problems {
				got[i] = p.Path + ": " + p.Message
			}
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					found = found || strings.HasPrefix(g, w)
				}
				if !found {
					t.Errorf("problems %q, want one starting %q", got, w)
				}
			}
		})
	}
}

// A schema never loads another document: a remote $ref fails to compile.
func TestRemoteRefRefused(t *testing.T) {
	for _, ref := range []string{"https://example.com/schema.json", "file:///etc/passwd", "other.json"} {
		_, err := schema.Compile([]byte(`{"$ref":"` + ref + `"}`))
		if err == nil || !strings.Contains(err.Error(), "never fetched") {
			t.Errorf("$ref %s: %v, want a refusal", ref, err)
		}
	}
	if _, err := schema.Compile([]byte(`{"type":"object","properties":{"a":{"$ref":"#/$defs/a"}},"$defs":{"a":{"type":"string"}}}`)); err != nil {
		t.Errorf("a local $ref: %v", err)
	}
	for _, bad := range []string{`"x"`, `{"type":12}`, `{`, `{"minimum":"zero"}`} {
		if _, err := schema.Compile([]byte(bad)); err == nil {
			t.Errorf("schema %s compiled", bad)
		}
	}
}

func TestCheckLimits(t *testing.T) {
	l := schema.Limits{MaxArgumentBytes: 100, MaxDepth: 3, MaxStringBytes: 10}
	tests := []struct {
		args string
		want string
	}{
		{`{"a":[{"b":"0123456789"}]}`, ""},
		{`{"a":"` + strings.Repeat("x", 200) + `"}`, "bytes, more than"},
		{`{"a":[[{"b":1}]]}`, "nest deeper"},
		{`{"a":"01234567890"}`, "longer than"},
		{`{"01234567890":1}`, "longer than"},
		{`{"a":"\"\"\"\"\""}`, ""},
		{`{"a":"[[[[[[["}`, ""},
	}
	for _, tt := range tests {
		f := schema.CheckLimits([]byte(tt.args), l)
		switch {
		case tt.want == "" && f != nil:
			t.Errorf("%s: %s", tt.args, f.Text())
		case tt.want != "" && (f == nil || !strings.Contains(f.Text(), tt.want)):
			t.Errorf("%s: %v, want %q", tt.args, f, tt.want)
		}
	}
	if f := schema.CheckLimits([]byte(strings.Repeat("[", 40)+strings.Repeat("]", 40)), schema.Limits{}); f == nil {
		t.Error("the default depth let 40 levels through")
	}
}

// The cache compiles a key once and keeps at most its size.
func TestCacheBound(t *testing.T) {
	c := schema.NewCache(2)
	first, err := c.Compile("a", []byte(`{"type":"string"}`))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := c.Compile("a", []byte(`{"type":"integer"}`)) // same key: the kept one
	if again != first {
		t.Fatal("the same key compiled twice")
	}
	c.Compile("b", []byte(`{}`))
	c.Compile("c", []byte(`{}`))
	if third, _ := c.Compile("a", []byte(`{"type":"integer"}`)); third == first {
		t.Fatal("a cache of 2 kept 3 schemas")
	}
}

func TestFailureText(t *testing.T) {
	f := &schema.Failure{}
	for i := range 25 {
		f.Problems = append(f.Problems, schema.Problem{Path: fmt.Sprintf("/%d", i), Message: "bad"})
	}
	text := f.Text()
	if !strings.HasSuffix(text, "and 5 more") || strings.Contains(text, "/20:") {
		t.Errorf("text of 25 problems: %s", text)
	}
}

func FuzzValidate(f *testing.F) {
	s, err := schema.Compile([]byte(orderSchema))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{`{}`, `{"items":[{"sku":"a","qty":1}]}`, `[`, `null`, `{"items":[{"qty":1e400}]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, args []byte) {
		_ = schema.CheckLimits(args, schema.Limits{})
		if fail := s.Validate(args); fail != nil && len(fail.Problems) == 0 {
			t.Fatal("a failure without problems")
		}
	})
}

func FuzzCompile(f *testing.F) {
	for _, seed := range []string{transferSchema, searchSchema, `{"$ref":"#"}`, `{"$ref":"http://x"}`, `true`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := schema.Compile(raw)
		if err == nil {
			_ = s.Validate([]byte(`{"a":1}`))
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	s, err := schema.Compile([]byte(transferSchema))
	if err != nil {
		b.Fatal(err)
	}
	args := []byte(`{"from":"alice","to":"bob","amount":250,"currency":"EUR","memo":"rent","notify":"alice@example.com"}`)
	b.ReportAllocs()
	for b.Loop() {
		if f := s.Validate(args); f != nil {
			b.Fatal(f.Text())
		}
	}
}

// The cache holds at most its size of compiled schemas: compiling twenty
// times as many distinct schemas grows the heap no more than a full cache
// does.
func TestCacheMemoryBounded(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	compile := func(c *schema.Cache, n int) {
		for i := range n {
			raw := strings.Replace(transferSchema, `"memo"`, `"memo`+fmt.Sprint(i)+`"`, 1)
			if _, err := c.Compile(fmt.Sprint(i), []byte(raw)); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := heap()
	full := schema.NewCache(100)
	compile(full, 100)
	oneCache := heap() - base
	flooded := schema.NewCache(100)
	compile(flooded, 2000)
	both := heap() - base
	if grown := both - oneCache; grown > 2*oneCache+(1<<20) {
		t.Errorf("2000 schemas through a cache of 100 grew the heap by %d bytes; a full cache holds %d", grown, oneCache)
	}
	runtime.KeepAlive(full)
	runtime.KeepAlive(flooded)
}
