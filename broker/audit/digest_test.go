package audit_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		// RFC 8785 §3.2.3's example.
		{`{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		// RFC 8785 §3.2.3: members sorted by UTF-16 code units.
		{`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{`-0`, `0`},
		{`[1e21, 1e20, 123456789012345680000, 5e-7, 0.000001, -1.5E+2, 9007199254740993]`, `[1e+21,100000000000000000000,123456789012345680000,5e-7,0.000001,-150,9007199254740992]`},
		{"\t{ \"b\" : [ ] , \"a\" : { } }\n", `{"a":{},"b":[]}`},
		{`"\u2028<>&"`, "\"\u2028<>&\""},
	}
	for _, tt := range tests {
		got, err := audit.Canonical([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("Canonical(%s) = %s, %v\nwant %s", tt.in, got, err, tt.want)
		}
	}
}

func TestCanonicalRefuses(t *testing.T) {
	for _, in := range []string{
		``, `{`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `+1`, `1e`, `"\x"`, "\"\x01\"", `"\ud800"`, `"\udc00\ud800"`,
		"\"\xff\"", `{"a":1,"a":2}`, `1e400`, `nul`, `true false`, `{"a" 1}`, `NaN`,
		strings.Repeat("[", 600) + strings.Repeat("]", 600),
	} {
		if got, err := audit.Canonical([]byte(in)); err == nil {
			t.Errorf("Canonical(%q) = %s, want an error", in, got)
		}
	}
}

func TestDigest(t *testing.T) {
	a := audit.Digest([]byte(`{"account":"42","amount":10.0,"tags":["x","y"]}`))
	same := []string{
		`{"tags":["x","y"],"amount":10,"account":"42"}`,
		"{\n  \"amount\": 1e1,\n  \"account\": \"\\u0034\\u0032\",\n  \"tags\": [\"x\", \"y\"]\n}",
	}
	for _, s := range same {
		if got := audit.Digest([]byte(s)); got != a {
			t.Errorf("Digest(%s) = %s, want %s", s, got, a)
		}
	}
	different := []string{
		`{"account":"43","amount":10,"tags":["x","y"]}`,
		`{"account":"42","amount":10.5,"tags":["x","y"]}`,
		`{"account":"42","amount":10,"tags":["y","x"]}`,
		`{"account":"42","amount":"10","tags":["x","y"]}`,
		`{"account":"42","amount":10,"tags":["x","y"],"extra":null}`,
	}
	for _, s := range different {
		if got := audit.Digest([]byte(s)); got == a {
			t.Errorf("Digest(%s) = %s, the digest of other arguments", s, got)
		}
	}
	if !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+64 {
		t.Errorf("digest %q is not sha256:<hex>", a)
	}
	// Not JSON: the bytes as they are.
	if audit.Digest([]byte("{not json")) == audit.Digest([]byte("{not  json")) {
		t.Error("two different invalid inputs have one digest")
	}
}

// FuzzCanonical: never panics; the canonical form is valid JSON with the
// same value, and canonical itself.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x"]}`, `1.5e300`, `"\ud83d\ude00"`, `[{"":{}}]`, `-0.0`, `1E-7`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := audit.Canonical(in)
		_ = audit.Digest(in)
		if err != nil {
			return
		}
		again, err := audit.Canonical(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("canonical %s is not canonical: %s, %v", out, again, err)
		}
		var before, after any
		if json.Unmarshal(in, &before) != nil {
			t.Fatalf("Canonical accepted %q, which encoding/json refuses", in)
		}
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("canonical %s is not JSON: %v", out, err)
		}
		if !reflect.DeepEqual(normalizeZero(before), normalizeZero(after)) {
			t.Fatalf("canonical %s is not the value of %s", out, in)
		}
	})
}

// normalizeZero makes -0 and 0 equal, as JCS does.
func normalizeZero(v any) any {
	switch v := v.(type) {
	case float64:
		if v == 0 {
			return 0.0
		}
	case []any:
		for i := range v {
			v[i] = normalizeZero(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = normalizeZero(v[k])
		}
	}
	return v
}
