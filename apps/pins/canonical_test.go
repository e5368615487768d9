package pins_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mcpbroker/mcpbroker/apps/pins"
)

func TestCanonical(t *testing.T) {
	const base = `{"name":"get","description":"Return a balance.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}},"annotations":{"readOnlyHint":true}}`
	const want = `{"annotations":{"readOnlyHint":true},"description":"Return a balance.","inputSchema":{"properties":{"a":{"minimum":1,"type":"integer"}},"type":"object"},"name":"get"}`
	canonical, hash, err := pins.Canonical(pins.KindTool, []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if string(canonical) != want {
		t.Fatalf("canonical:\n%s\nwant\n%s", canonical, want)
	}
	tests := []struct {
		name, raw string
		same      bool
	}{
		{"member order and whitespace", "{\n  \"annotations\": {\"readOnlyHint\": true},\n  \"inputSchema\": {\"properties\": {\"a\": {\"minimum\": 1, \"type\": \"integer\"}}, \"type\": \"object\"},\n  \"description\": \"Return a balance.\", \"name\": \"get\"}", true},
		{"key order inside inputSchema", `{"name":"get","description":"Return a balance.","inputSchema":{"properties":{"a":{"minimum":1,"type":"integer"}},"type":"object"},"annotations":{"readOnlyHint":true}}`, true},
		{"unicode escapes", `{"name":"g\u0065t","description":"Return a \u0062alance\u002E","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}},"annotations":{"readOnlyHint":true}}`, true},
		{"1.0 and 1e0 are 1", `{"name":"get","description":"Return a balance.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1.0}}},"annotations":{"readOnlyHint":true}}`, true},
		{"1e0", `{"name":"get","description":"Return a balance.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1e0}}},"annotations":{"readOnlyHint":true}}`, true},
		{"icons and _meta are not pinned", `{"name":"get","description":"Return a balance.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}},"annotations":{"readOnlyHint":true},"_meta":{"x":1},"icons":[{"src":"https://example.net/i.png"}]}`, true},
		{"changed description", `{"name":"get","description":"Return a balance and mail it.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}},"annotations":{"readOnlyHint":true}}`, false},
		{"changed schema", `{"name":"get","description":"Return a balance.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":0}}},"annotations":{"readOnlyHint":true}}`, false},
		{"changed annotation", `{"name":"get","description":"Return a balance.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}},"annotations":{"readOnlyHint":false}}`, false},
		{"added title", `{"name":"get","title":"Balance","description":"Return a balance.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}},"annotations":{"readOnlyHint":true}}`, false},
		{"added outputSchema", `{"name":"get","description":"Return a balance.","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}},"outputSchema":{},"annotations":{"readOnlyHint":true}}`, false},
		{"hidden character", `{"name":"get","description":"Return a balance.\u200b","inputSchema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}},"annotations":{"readOnlyHint":true}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, h, err := pins.Canonical(pins.KindTool, []byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if (h == hash) != tt.same {
				t.Errorf("same hash: %v, want %v", h == hash, tt.same)
			}
		})
	}
}

func TestCanonicalForm(t *testing.T) {
	tests := []struct {
		name string
		kind pins.Kind
		raw  string
		want string // "" when an error is expected
	}{
		{"numbers as ECMAScript prints them", pins.KindTool,
			`{"name":"n","inputSchema":{"a":1e21,"b":1e-7,"c":0.000001,"d":-0,"e":123456789012,"f":1.5e300,"g":-2.50,"h":1E2}}`,
			`{"inputSchema":{"a":1e+21,"b":1e-7,"c":0.000001,"d":0,"e":123456789012,"f":1.5e+300,"g":-2.5,"h":100},"name":"n"}`},
		{"members sorted by UTF-16 code units", pins.KindTool,
			`{"name":"n","inputSchema":{"\ud83d\ude00":1,"\uff61":2,"a":3,"\u00e9":4}}`,
			`{"inputSchema":{"a":3,"é":4,"😀":1,"｡":2},"name":"n"}`},
		{"only required escapes", pins.KindTool,
			`{"name":"n","description":"\u0041 \"q\" \\ \/ \t\n \u0001 <&> \u2028"}`,
			`{"description":"A \"q\" \\ / \t\n \u0001 <&> ` + "\u2028" + `","name":"n"}`},
		{"prompt", pins.KindPrompt,
			`{"name":"p","description":"d","arguments":[{"name":"x","required":true}],"icons":[],"_meta":{}}`,
			`{"arguments":[{"name":"x","required":true}],"description":"d","name":"p"}`},
		{"resource template", pins.KindResourceTemplate,
			`{"uriTemplate":"file:///{path}","name":"files","mimeType":"text/plain","annotations":{"audience":["user"]}}`,
			`{"mimeType":"text/plain","name":"files","uriTemplate":"file:///{path}"}`},
		{"not an object", pins.KindTool, `[1]`, ""},
		{"member twice", pins.KindTool, `{"name":"n","description":"a","description":"b"}`, ""},
		{"member twice, nested", pins.KindTool, `{"name":"n","inputSchema":{"a":1,"a":1}}`, ""},
		{"data after the object", pins.KindTool, `{"name":"n"} {}`, ""},
		{"number out of range", pins.KindTool, `{"name":"n","inputSchema":{"a":1e999}}`, ""},
		{"unknown kind", pins.Kind("resource"), `{"name":"n"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := pins.Canonical(tt.kind, []byte(tt.raw))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("no error; canonical %s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func FuzzCanonical(f *testing.F) {
	for _, seed := range []string{v1, v2, `{"name":"x","inputSchema":{"a":[1,2.50,{"b":null}]}}`, `{}`, `[]`, `{"name":"\ud800"}`, `{"name":"a","description":"\u00e9\t"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		canonical, hash, err := pins.Canonical(pins.KindTool, raw)
		if err != nil {
			return
		}
		again, hash2, err := pins.Canonical(pins.KindTool, canonical)
		if err != nil || hash2 != hash || !bytes.Equal(again, canonical) {
			t.Fatalf("canonical of %q is %q, whose canonical is %q (%v)", raw, canonical, again, err)
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, raw, " ", "\t") == nil {
			if _, h, err := pins.Canonical(pins.KindTool, pretty.Bytes()); err != nil || h != hash {
				t.Fatalf("indenting %q changed its hash (%v)", raw, err)
			}
		}
		if !json.Valid(canonical) {
			t.Fatalf("canonical form %q is not JSON", canonical)
		}
	})
}
