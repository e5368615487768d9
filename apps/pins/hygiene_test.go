package pins_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/apps/pins"
)

func TestHygieneCharacters(t *testing.T) {
	tests := []struct {
		name, text string
		want       string // the reason's beginning; "" when clean
	}{
		{"plain, tab and line feed", "Plain text, with tabs\tand\nnew lines.", ""},
		{"emoji, CJK, accents", "Emoji 🚀👩‍💻 and 日本語 and café; Ω ≠ ∞", ""},
		{"replacement character itself", "a \ufffd b", ""},
		{"joiners within emoji", "❤️‍🔥 🏳️‍🌈 👨🏽‍💻", ""},
		{"joiner after an emoji, before text", "🔥\u200dx", "U+200D (zero-width) at byte 4"},
		{"joiner ending the string", "🔥\u200d", "U+200D (zero-width) at byte 4"},
		{"Unicode tag", "Ignore previous\U000E0001\U000E0069", "U+E0001 (Unicode tag) at byte 15"},
		{"last Unicode tag", "x\U000E007F", "U+E007F (Unicode tag)"},
		{"zero-width space", "send\u200bsecrets", "U+200B (zero-width) at byte 4"},
		{"zero-width joiner", "a\u200db", "U+200D (zero-width) at byte 1"},
		{"zero-width non-joiner", "a\u200cb", "U+200C (zero-width) at byte 1"},
		{"word joiner", "a\u2060b", "U+2060 (zero-width)"},
		{"byte order mark", "bom\ufeff", "U+FEFF (zero-width)"},
		{"Mongolian vowel separator", "a\u180eb", "U+180E (zero-width)"},
		{"right-to-left override", "\u202ereversed", "U+202E (bidirectional control) at byte 0"},
		{"isolate", "\u2066x\u2069", "U+2066 (bidirectional control)"},
		{"left-to-right mark", "a\u200eb", "U+200E (bidirectional control)"},
		{"right-to-left mark", "a\u200fb", "U+200F (bidirectional control)"},
		{"Arabic letter mark", "a\u061cb", "U+061C (bidirectional control)"},
		{"bell", "bell\u0007", "U+0007 (control character)"},
		{"NUL", "a\u0000", "U+0000 (control character)"},
		{"carriage return", "cr\rlf", "U+000D (control character)"},
		{"DEL", "del\u007f", "U+007F (control character)"},
		{"C1", "c1\u0085", "U+0085 (control character)"},
	}
	for _, tt := range tests {
		for _, escaped := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/escaped=%v", tt.name, escaped), func(t *testing.T) {
				def := []byte(`{"name":"t","description":` + jsonString(tt.text, escaped) + `}`)
				problems := pins.Hygiene(pins.KindTool, def, pins.Limits{})
				if tt.want == "" {
					if len(problems) > 0 {
						t.Fatalf("clean text refused: %v", problems)
					}
					return
				}
				if len(problems) != 1 || problems[0].Path != "/description" || !strings.HasPrefix(problems[0].Reason, tt.want) {
					t.Fatalf("%v, want /description %s", problems, tt.want)
				}
			})
		}
	}
}

// jsonString writes s as a JSON string: with escaped, every non-ASCII or
// control character as \uXXXX (surrogate pairs beyond the BMP); else only
// what JSON requires.
func jsonString(s string, escaped bool) string {
	if !escaped {
		b, _ := json.Marshal(s) // escapes controls; U+2028/9 and <>& do not matter here
		return string(b)
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case r < 0x20 || r >= 0x7f && r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r >= 0x10000:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func TestHygieneDefinitions(t *testing.T) {
	tests := []struct {
		name   string
		kind   pins.Kind
		raw    string
		limits pins.Limits
		want   []pins.Problem
	}{
		{"clean tool", pins.KindTool, v1, pins.Limits{}, nil},
		{"property name and enum value", pins.KindTool,
			`{"name":"t","inputSchema":{"properties":{"a\u200b/b":{"enum":["x","y` + "\u2060" + `"]}}}}`, pins.Limits{},
			[]pins.Problem{
				{Path: "/inputSchema/properties/a\u200b~1b", Reason: "member name: U+200B (zero-width) at byte 1"},
				{Path: "/inputSchema/properties/a\u200b~1b/enum/1", Reason: "U+2060 (zero-width) at byte 1"},
			}},
		{"name, title, prompt argument", pins.KindPrompt,
			`{"name":"p\u202e","title":"T\u00ad","arguments":[{"name":"a","description":"d\u0007"}]}`, pins.Limits{},
			[]pins.Problem{
				{Path: "/name", Reason: "U+202E (bidirectional control) at byte 1"},
				{Path: "/arguments/0/description", Reason: "U+0007 (control character) at byte 1"},
			}},
		{"_meta too", pins.KindResourceTemplate,
			`{"uriTemplate":"x://{a}","_meta":{"k":"\udb40\udc41"}}`, pins.Limits{},
			[]pins.Problem{{Path: "/_meta/k", Reason: "U+E0041 (Unicode tag) at byte 0"}}},
		{"one problem per string", pins.KindTool,
			`{"name":"t","description":"\u200b\u200c\u200d"}`, pins.Limits{},
			[]pins.Problem{{Path: "/description", Reason: "U+200B (zero-width) at byte 0"}}},
		{"lone surrogate", pins.KindTool,
			`{"name":"t","description":"a\ud800b"}`, pins.Limits{},
			[]pins.Problem{{Path: "/description", Reason: "U+D800 (lone surrogate) at byte 1"}}},
		{"invalid UTF-8", pins.KindTool,
			"{\"name\":\"t\",\"description\":\"ab\xff\"}", pins.Limits{},
			[]pins.Problem{{Path: "/description", Reason: "invalid UTF-8 (byte 0xff) at byte 2"}}},
		{"sizes", pins.KindTool,
			`{"name":"t","description":"` + strings.Repeat("x", 100) + `","inputSchema":{"d":"` + strings.Repeat("y", 300) + `"},"outputSchema":{}}`,
			pins.Limits{MaxDescriptionBytes: 50, MaxSchemaBytes: 200, MaxDefinitionBytes: 400},
			[]pins.Problem{
				{Reason: "the definition is 470 bytes, more than 400"},
				{Path: "/description", Reason: "102 bytes, more than 50"},
				{Path: "/inputSchema", Reason: "308 bytes, more than 200"},
			}},
		{"an escaped member name is still the description", pins.KindTool,
			`{"name":"t","\u0064escription":"` + strings.Repeat("x", 100) + `"}`,
			pins.Limits{MaxDescriptionBytes: 50},
			[]pins.Problem{{Path: "/description", Reason: "102 bytes, more than 50"}}},
		{"a prompt has no schema limit", pins.KindPrompt,
			`{"name":"p","inputSchema":"` + strings.Repeat("x", 100) + `"}`,
			pins.Limits{MaxSchemaBytes: 50},
			nil},
		{"not an object", pins.KindTool, `["x"]`, pins.Limits{}, []pins.Problem{{Reason: "the definition is not a JSON object"}}},
		{"malformed", pins.KindTool, `{"name":"t",}`, pins.Limits{}, []pins.Problem{{Reason: "not JSON: expected a member name at byte 12"}}},
		{"unescaped control", pins.KindTool, "{\"name\":\"a\x01\"}", pins.Limits{}, []pins.Problem{{Reason: "not JSON: control character in a string at byte 10"}}},
		{"trailing data", pins.KindTool, `{"name":"t"}x`, pins.Limits{}, []pins.Problem{{Reason: "not JSON: data after the object at byte 12"}}},
		{"too deep", pins.KindTool, `{"a":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, pins.Limits{}, []pins.Problem{{Reason: "nested more than 512 deep"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pins.Hygiene(tt.kind, []byte(tt.raw), tt.limits)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	// U+00AD (soft hyphen) above is allowed: it is visible where it breaks
	// a line, and common in hyphenated text.
}

// Hygiene runs on every listed item: a clean definition, escapes and all,
// allocates nothing.
func TestHygieneAllocatesNothingWhenClean(t *testing.T) {
	def := []byte(`{"name":"search","title":"Search \"docs\"","description":"Find pages.\nUse it for 日本語 and émoji 🚀 too.\u00e9\ud83d\ude80",` +
		`"inputSchema":{"type":"object","properties":{"query":{"type":"string","description":"What to find","enum":["a","b"]},"limit":{"type":"integer","minimum":1,"maximum":1e3}},"required":["query"]},` +
		`"annotations":{"readOnlyHint":true,"openWorldHint":false},"_meta":{"x":null}}`)
	if problems := pins.Hygiene(pins.KindTool, def, pins.Limits{}); problems != nil {
		t.Fatal(problems)
	}
	if n := testing.AllocsPerRun(100, func() { pins.Hygiene(pins.KindTool, def, pins.Limits{}) }); n != 0 {
		t.Errorf("%v allocations per clean definition", n)
	}
}

func BenchmarkHygiene(b *testing.B) {
	def := []byte(`{"name":"search","description":"` + strings.Repeat(`Find pages.\n 日本語 `, 100) + `","inputSchema":{"type":"object","properties":{"query":{"type":"string"}}}}`)
	b.SetBytes(int64(len(def)))
	b.ReportAllocs()
	for b.Loop() {
		pins.Hygiene(pins.KindTool, def, pins.Limits{})
	}
}

func FuzzHygiene(f *testing.F) {
	for _, seed := range []string{v1, v2, `{"a":"\u200b"}`, `{"a":["\ud800",1.5e3,true,null]}`, `{"\u0064escription":"x"}`, "{\"a\":\"\xff\"}", `[]`, `{`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		problems := pins.Hygiene(pins.KindTool, raw, pins.Limits{})
		syntax := false
		for _, p := range problems {
			syntax = syntax || p.Path == "" && (strings.HasPrefix(p.Reason, "not JSON") || strings.HasPrefix(p.Reason, "the definition is not") || strings.HasPrefix(p.Reason, "nested"))
		}
		var object map[string]json.RawMessage
		isObject := json.Unmarshal(raw, &object) == nil && object != nil
		// encoding/json takes invalid UTF-8 and deep nesting that
		// Hygiene refuses otherwise; past them the two agree on syntax.
		deep := strings.Count(string(raw), "[")+strings.Count(string(raw), "{") > 512
		if !deep && json.Valid(raw) && isObject == syntax {
			t.Fatalf("%q: object %v, syntax problem %v: %v", raw, isObject, syntax, problems)
		}
		if !json.Valid(raw) && !syntax {
			t.Fatalf("%q is not JSON, yet no syntax problem: %v", raw, problems)
		}
		if len(problems) > 24 {
			t.Fatalf("%d problems", len(problems))
		}
	})
}
