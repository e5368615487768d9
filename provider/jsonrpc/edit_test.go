package jsonrpc_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

func TestSetMember(t *testing.T) {
	tests := []struct {
		name, obj, member, value, want string
	}{
		{"replace keeps the rest", `{"a":"<&>", "name" : "x_y" ,"b":[1e400]}`, "name", `"y"`, `{"a":"<&>", "name" : "y" ,"b":[1e400]}`},
		{"escaped member name", `{"n\u0061me":"x","z":{"name":1}}`, "name", `"y"`, `{"n\u0061me":"y","z":{"name":1}}`},
		{"nested name is not the member", `{"z":{"name":1},"q":"name"}`, "name", `2`, `{"z":{"name":1},"q":"name","name":2}`},
		{"added to an empty object", ` { } `, "p", `7`, ` { "p":7} `},
		{"added at the end", "{\"a\":1\n}", "p", `{"x":"<"}`, "{\"a\":1\n,\"p\":{\"x\":\"<\"}}"},
		{"string with brackets and quotes", `{"s":"}]\"{[","name":"a"}`, "name", `"b"`, `{"s":"}]\"{[","name":"b"}`},
		{"value is an object", `{"_meta":{"progressToken":"t","k":"<"},"name":"a"}`, "_meta", `{"progressToken":5,"k":"<"}`, `{"_meta":{"progressToken":5,"k":"<"},"name":"a"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := jsonrpc.SetMember([]byte(tt.obj), tt.member, []byte(tt.value))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("result is not JSON: %s", got)
			}
		})
	}
}

func TestMemberRefusesWhatIsNotAnObject(t *testing.T) {
	for _, obj := range []string{``, `[]`, `"s"`, `{"a":1}x`, `{"a" 1}`, `{"a":1,}`, `{"name":1,"name":2}`, `{"a":"unterminated}`, `{"a":[1}`} {
		if _, _, err := jsonrpc.Member([]byte(obj), "name"); !errors.Is(err, jsonrpc.ErrMalformedObject) {
			t.Errorf("Member(%q): %v, want ErrMalformedObject", obj, err)
		}
	}
	value, ok, err := jsonrpc.Member([]byte(`{"a":{"name":1}, "name" :  [ 1 , 2 ] }`), "name")
	if err != nil || !ok || string(value) != `[ 1 , 2 ]` {
		t.Errorf("Member: %q %v %v", value, ok, err)
	}
	if _, ok, err := jsonrpc.Member([]byte(`{"a":{"name":1}}`), "name"); err != nil || ok {
		t.Errorf("Member of a nested name: ok=%v err=%v", ok, err)
	}
}

func TestMarshalDoesNotEscapeHTML(t *testing.T) {
	got, err := jsonrpc.Marshal(map[string]any{"a": "<&>", "b": json.RawMessage(`"<>"`)})
	if err != nil || string(got) != `{"a":"<&>","b":"<>"}` {
		t.Errorf("got %s, %v", got, err)
	}
}

// FuzzSetMember: on any JSON object SetMember agrees with a decoder, and
// on anything else it fails rather than write something invalid.
func FuzzSetMember(f *testing.F) {
	for _, seed := range []string{`{}`, `{"name":"a"}`, `{"a":{"name":[1,"}"]},"name":null}`, `{"n\u0061me":1}`, `[1]`, `{"a":1,"a":2}`, `{"name":"\\"}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, obj string) {
		got, err := jsonrpc.SetMember([]byte(obj), "name", []byte(`"new"`))
		var before map[string]json.RawMessage
		decodable := json.Unmarshal([]byte(obj), &before) == nil && json.Valid([]byte(obj))
		if err != nil {
			return
		}
		if !decodable {
			// Only input a decoder accepted reaches SetMember in the broker;
			// on other input it may succeed, but must not panic.
			return
		}
		var after map[string]json.RawMessage
		if err := json.Unmarshal(got, &after); err != nil {
			t.Fatalf("SetMember(%q) = %q: %v", obj, got, err)
		}
		before["name"] = json.RawMessage(`"new"`)
		if len(before) != len(after) {
			t.Fatalf("SetMember(%q) = %q: members %d, want %d", obj, got, len(after), len(before))
		}
		for k, v := range before {
			var a, b any
			_ = json.Unmarshal(v, &a)
			_ = json.Unmarshal(after[k], &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("SetMember(%q) = %q: member %q is %s, want %s", obj, got, k, after[k], v)
			}
		}
	})
}

func TestElements(t *testing.T) {
	tests := []struct {
		arr  string
		want []string
		err  bool
	}{
		{`[]`, nil, false},
		{` null `, nil, false},
		{`[1, "a,]" ,{"b":[2,3]},null]`, []string{`1`, `"a,]"`, `{"b":[2,3]}`, `null`}, false},
		{"[\n {\"name\":\"x\"}\n]\n", []string{`{"name":"x"}`}, false},
		{`{"a":1}`, nil, true},
		{`[1,]`, nil, true},
		{`[1 2]`, nil, true},
		{`[1]x`, nil, true},
		{`nullx`, nil, true},
		{``, nil, true},
	}
	for _, tt := range tests {
		var got []string
		err := jsonrpc.Elements([]byte(tt.arr), func(e []byte) error {
			got = append(got, string(e))
			return nil
		})
		if (err != nil) != tt.err || (!tt.err && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("Elements(%q) = %q, %v; want %q, error %v", tt.arr, got, err, tt.want, tt.err)
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := jsonrpc.Elements([]byte(`[1,2,3]`), func([]byte) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("an error of fn: %v after %d calls, want it after 1", err, calls)
	}
}

// FuzzElements holds Elements to a decoder's reading of valid JSON.
func FuzzElements(f *testing.F) {
	for _, seed := range []string{`[]`, `null`, `[1,"]",{"a":[]}]`, ` [ true , false ] `, `{}`, `[1,]`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, arr string) {
		var got []json.RawMessage
		err := jsonrpc.Elements([]byte(arr), func(e []byte) error {
			got = append(got, e)
			return nil
		})
		var want []json.RawMessage
		if !json.Valid([]byte(arr)) || json.Unmarshal([]byte(arr), &want) != nil {
			return // only decoded input reaches Elements; elsewhere it must not panic
		}
		if err != nil {
			t.Fatalf("Elements(%q): %v; a decoder reads %d elements", arr, err, len(want))
		}
		if len(got) != len(want) {
			t.Fatalf("Elements(%q): %d elements, want %d", arr, len(got), len(want))
		}
		for i := range want {
			var a, b any
			_ = json.Unmarshal(want[i], &a)
			if err := json.Unmarshal(got[i], &b); err != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("Elements(%q): element %d is %q, want %q", arr, i, got[i], want[i])
			}
		}
	})
}

func TestStringEnd(t *testing.T) {
	long := strings.Repeat("x", 40)
	tests := []struct {
		b    string
		want int
	}{
		{`"" `, 2},
		{`"abc",`, 5},
		{`"a\"b"`, 6},
		{`"a\\"b"`, 5},
		{`"` + long + `"x`, 42},
		{`"` + long + `\"` + long + `"`, 84},
		{`"` + long + `\\\\"`, 46},
		{`"` + long, -1},
		{`"abc\"`, -1},
		{`"`, -1},
	}
	for _, tt := range tests {
		if got := jsonrpc.StringEnd([]byte(tt.b), 0); got != tt.want {
			t.Errorf("StringEnd(%q) = %d, want %d", tt.b, got, tt.want)
		}
	}
}

func TestMetaMembers(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, `{"_meta":{"k":1}}`},
		{`null`, `{"_meta":{"k":1}}`},
		{`{"a":2}`, `{"a":2,"_meta":{"k":1}}`},
		{`{"_meta":null}`, `{"_meta":{"k":1}}`},
		{`{"_meta":{"k":0,"p":"x"}}`, `{"_meta":{"k":1,"p":"x"}}`},
	} {
		got, err := jsonrpc.SetMetaMember([]byte(tc.in), "k", []byte("1"))
		if err != nil || string(got) != tc.want {
			t.Errorf("jsonrpc.SetMetaMember(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := jsonrpc.SetMetaMember([]byte(`{"_meta":[]}`), "k", []byte("1")); err == nil {
		t.Error("a _meta that is not an object was edited")
	}
	key, rest := jsonrpc.TakeInputKey([]byte(`{"message":"m","_meta":{"` + jsonrpc.MetaInputKey + `":"confirm","progressToken":1}}`))
	if key != "confirm" || string(rest) != `{"_meta":{"progressToken":1},"message":"m"}` {
		t.Errorf("jsonrpc.TakeInputKey: %q %s", key, rest)
	}
	key, rest = jsonrpc.TakeInputKey([]byte(`{"_meta":{"` + jsonrpc.MetaInputKey + `":"k"}}`))
	if key != "k" || string(rest) != `{}` {
		t.Errorf("jsonrpc.TakeInputKey of the only member: %q %s", key, rest)
	}
	if key, rest := jsonrpc.TakeInputKey([]byte(`{"a":1}`)); key != "" || string(rest) != `{"a":1}` {
		t.Errorf("jsonrpc.TakeInputKey without one: %q %s", key, rest)
	}
}
