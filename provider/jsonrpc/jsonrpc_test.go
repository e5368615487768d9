package jsonrpc_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// decodeCode returns the JSON-RPC code of a decode failure, or 0 on success.
func decodeCode(t *testing.T, err error) int64 {
	t.Helper()
	if err == nil {
		return 0
	}
	var de *jsonrpc.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	return de.Code
}

func TestDecodeIDs(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		wantRaw string // "" means rejected
	}{
		{"string", `"abc"`, `"abc"`},
		{"empty string", `""`, `""`},
		{"string with escapes", `"a\"b\\c\u0001"`, `"a\"b\\c\u0001"`},
		{"integer", `7`, `7`},
		{"zero", `0`, `0`},
		{"negative", `-42`, `-42`},
		{"max int64", `9223372036854775807`, `9223372036854775807`},
		{"min int64", `-9223372036854775808`, `-9223372036854775808`},
		{"null", `null`, ""},
		{"fraction", `1.5`, ""},
		{"integral float", `1.0`, ""},
		{"exponent", `1e3`, ""},
		{"beyond int64", `9223372036854775808`, ""},
		{"true", `true`, ""},
		{"false", `false`, ""},
		{"object", `{}`, ""},
		{"array", `[1]`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := jsonrpc.Decode([]byte(`{"jsonrpc":"2.0","id":` + tt.id + `,"method":"ping"}`))
			if tt.wantRaw == "" {
				if err == nil {
					t.Fatalf("id %s accepted as %q", tt.id, m.ID.Raw())
				}
				if code := decodeCode(t, err); code != jsonrpc.CodeInvalidRequest {
					t.Errorf("code = %d, want %d", code, jsonrpc.CodeInvalidRequest)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.ID.Raw() != tt.wantRaw {
				t.Errorf("id raw = %q, want %q", m.ID.Raw(), tt.wantRaw)
			}
			if m.Kind() != jsonrpc.KindRequest {
				t.Errorf("kind = %v, want request", m.Kind())
			}
		})
	}
}

func TestIDAccessors(t *testing.T) {
	if n, ok := jsonrpc.Int64ID(-3).Int64(); !ok || n != -3 {
		t.Errorf("Int64ID(-3).Int64() = %d, %v", n, ok)
	}
	if _, ok := jsonrpc.StringID("3").Int64(); ok {
		t.Error(`StringID("3").Int64() reports an integer`)
	}
	if jsonrpc.StringID("3").Raw() == jsonrpc.Int64ID(3).Raw() {
		t.Error("string id 3 and integer id 3 share a map key")
	}
	if (jsonrpc.ID{}).IsValid() {
		t.Error("zero ID is valid")
	}
	if got := jsonrpc.StringID(`a"b`).Raw(); got != `"a\"b"` {
		t.Errorf("StringID raw = %s", got)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantCode int64
		wantID   string // raw id the error must carry, "" for none
	}{
		{"invalid JSON", `{"jsonrpc":"2.0",`, jsonrpc.CodeParseError, ""},
		{"trailing garbage", `{"jsonrpc":"2.0","id":1,"method":"x"} x`, jsonrpc.CodeParseError, ""},
		{"two objects", `{"jsonrpc":"2.0","id":1,"method":"x"}{}`, jsonrpc.CodeParseError, ""},
		{"not an object", `"hello"`, jsonrpc.CodeInvalidRequest, ""},
		{"number", `12`, jsonrpc.CodeInvalidRequest, ""},
		{"null", `null`, jsonrpc.CodeInvalidRequest, ""},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":1,"method":"x"}`, jsonrpc.CodeInvalidRequest, "1"},
		{"jsonrpc missing", `{"id":1,"method":"x"}`, jsonrpc.CodeInvalidRequest, "1"},
		{"jsonrpc number", `{"jsonrpc":2.0,"id":1,"method":"x"}`, jsonrpc.CodeInvalidRequest, ""},
		{"jsonrpc with space", `{"jsonrpc":"2.0 ","id":1,"method":"x"}`, jsonrpc.CodeInvalidRequest, "1"},
		{"empty method", `{"jsonrpc":"2.0","id":1,"method":""}`, jsonrpc.CodeInvalidRequest, "1"},
		{"method number", `{"jsonrpc":"2.0","id":1,"method":5}`, jsonrpc.CodeInvalidRequest, ""},
		{"method object", `{"jsonrpc":"2.0","id":1,"method":{}}`, jsonrpc.CodeInvalidRequest, ""},
		{"request with result", `{"jsonrpc":"2.0","id":1,"method":"x","result":{}}`, jsonrpc.CodeInvalidRequest, "1"},
		{"request with error", `{"jsonrpc":"2.0","id":1,"method":"x","error":{"code":1,"message":"m"}}`, jsonrpc.CodeInvalidRequest, "1"},
		{"result and error", `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}`, jsonrpc.CodeInvalidRequest, "1"},
		{"params string", `{"jsonrpc":"2.0","id":1,"method":"x","params":"a"}`, jsonrpc.CodeInvalidRequest, "1"},
		{"params number", `{"jsonrpc":"2.0","id":1,"method":"x","params":3}`, jsonrpc.CodeInvalidRequest, "1"},
		{"params bool", `{"jsonrpc":"2.0","id":1,"method":"x","params":true}`, jsonrpc.CodeInvalidRequest, "1"},
		{"params null", `{"jsonrpc":"2.0","id":1,"method":"x","params":null}`, jsonrpc.CodeInvalidRequest, "1"},
		{"result without id", `{"jsonrpc":"2.0","result":{}}`, jsonrpc.CodeInvalidRequest, ""},
		{"result with null id", `{"jsonrpc":"2.0","id":null,"result":{}}`, jsonrpc.CodeInvalidRequest, ""},
		{"error not an object", `{"jsonrpc":"2.0","id":1,"error":"boom"}`, jsonrpc.CodeInvalidRequest, "1"},
		{"error code fraction", `{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}`, jsonrpc.CodeInvalidRequest, "1"},
		{"nothing", `{"jsonrpc":"2.0"}`, jsonrpc.CodeInvalidRequest, ""},
		{"only id", `{"jsonrpc":"2.0","id":1}`, jsonrpc.CodeInvalidRequest, "1"},
		{"null id request", `{"jsonrpc":"2.0","id":null,"method":"x"}`, jsonrpc.CodeInvalidRequest, ""},
		{"bool id notification-like", `{"jsonrpc":"2.0","id":false,"method":"x"}`, jsonrpc.CodeInvalidRequest, ""},
		{"string id too long", `{"jsonrpc":"2.0","id":"` + strings.Repeat("i", jsonrpc.MaxIDBytes) + `","method":"x"}`, jsonrpc.CodeInvalidRequest, ""},
		{"response id too long", `{"jsonrpc":"2.0","id":"` + strings.Repeat("i", 3<<20) + `","result":{}}`, jsonrpc.CodeInvalidRequest, ""},
		{"method too long", `{"jsonrpc":"2.0","id":1,"method":"` + strings.Repeat("m", jsonrpc.MaxMethodBytes+1) + `"}`, jsonrpc.CodeInvalidRequest, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := jsonrpc.Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("accepted as %s", m.Encode())
			}
			var de *jsonrpc.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			if de.Code != tt.wantCode {
				t.Errorf("code = %d, want %d (%s)", de.Code, tt.wantCode, de.Message)
			}
			if de.ID.Raw() != tt.wantID {
				t.Errorf("error id = %q, want %q", de.ID.Raw(), tt.wantID)
			}
			if de.Error() == "" {
				t.Error("empty error message")
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		kind jsonrpc.Kind
	}{
		{"request", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, jsonrpc.KindRequest},
		{"request params object", `{"jsonrpc":"2.0","id":"a","method":"x","params":{"a":[1,2]}}`, jsonrpc.KindRequest},
		{"request params array", `{"jsonrpc":"2.0","id":"a","method":"x","params":[1,2]}`, jsonrpc.KindRequest},
		{"whitespace everywhere", " \n{ \"jsonrpc\" : \"2.0\" ,\t\"id\" : 1 , \"method\" : \"x\" , \"params\" : { } }\n", jsonrpc.KindRequest},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, jsonrpc.KindNotification},
		{"notification with params", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`, jsonrpc.KindNotification},
		{"result", `{"jsonrpc":"2.0","id":1,"result":{"x":1}}`, jsonrpc.KindResponse},
		{"null result", `{"jsonrpc":"2.0","id":1,"result":null}`, jsonrpc.KindResponse},
		{"error", `{"jsonrpc":"2.0","id":"q","error":{"code":-32601,"message":"nope","data":{"a":1}}}`, jsonrpc.KindResponse},
		{"error with null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`, jsonrpc.KindResponse},
		{"error without id", `{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error"}}`, jsonrpc.KindResponse},
		{"unknown members ignored", `{"jsonrpc":"2.0","id":1,"method":"x","extra":true}`, jsonrpc.KindRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := jsonrpc.Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.Kind() != tt.kind {
				t.Errorf("kind = %v, want %v", m.Kind(), tt.kind)
			}
			if !json.Valid(m.Encode()) {
				t.Errorf("Encode produced invalid JSON: %s", m.Encode())
			}
		})
	}
}

// TestDecodeMemberNamesAreCaseSensitive: JSON-RPC 2.0 says member names are
// case-sensitive. Go's encoding/json matches struct tags case-insensitively
// (and folds U+017F to 's', U+212A to 'k'), so "Method" or "paramſ" would be
// read as "method" or "params" — the parser differential behind
// CVE-2026-27896 / GHSA-wvj2-96wp-fq3f in the MCP Go SDK. An edge proxy or
// policy layer that matches exact names sees a different message than the
// broker routes.
func TestDecodeMemberNamesAreCaseSensitive(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// check reports what is wrong with a successful decode, or "".
		check func(m *jsonrpc.Message) string
	}{
		{"Method", `{"jsonrpc":"2.0","id":1,"Method":"tools/call"}`, func(m *jsonrpc.Message) string {
			return "Method read as method " + m.Method
		}},
		{"METHOD overrides method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call"}`, func(m *jsonrpc.Message) string {
			if m.Method != "tools/list" {
				return "METHOD overrode method: routed as " + m.Method
			}
			return ""
		}},
		{"ID", `{"jsonrpc":"2.0","ID":7,"method":"x"}`, func(m *jsonrpc.Message) string {
			if m.ID.IsValid() {
				return "ID read as id " + m.ID.Raw()
			}
			return ""
		}},
		{"JSONRPC", `{"JSONRPC":"2.0","id":1,"method":"x"}`, func(m *jsonrpc.Message) string {
			return `"JSONRPC" accepted as "jsonrpc"`
		}},
		{"long s params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","paramſ":{"name":"secret"}}`, func(m *jsonrpc.Message) string {
			if len(m.Params) > 0 {
				return "paramſ read as params " + string(m.Params)
			}
			return ""
		}},
		{"Params overrides params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok"},"Params":{"name":"evil"}}`, func(m *jsonrpc.Message) string {
			if strings.Contains(string(m.Params), "evil") {
				return "Params overrode params: " + string(m.Params)
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := jsonrpc.Decode([]byte(tt.in))
			if err != nil {
				return // rejecting is fine
			}
			if problem := tt.check(m); problem != "" {
				t.Errorf("%s (decoded %s)", problem, m.Encode())
			}
		})
	}
}

// TestEncodeIsValidUTF8: RFC 8259 §8.1 requires UTF-8. Whatever Decode
// accepts must re-encode as valid UTF-8, or the broker forwards bytes that
// other parsers read differently (replace, reject, or pass through).
func TestEncodeIsValidUTF8(t *testing.T) {
	tests := []struct{ name, in string }{
		{"method", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\xffb\"}"},
		{"error message", "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"a\xc3\"}}"},
		{"string id", "{\"jsonrpc\":\"2.0\",\"id\":\"\xff\xfe\",\"method\":\"x\"}"},
		{"params", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"k\":\"\xed\xa0\x80\"}}"},
		{"result", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"k\":\"\xc0\xaf\"}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := jsonrpc.Decode([]byte(tt.in))
			if err != nil {
				return // rejecting invalid UTF-8 is fine
			}
			if out := m.Encode(); !utf8.Valid(out) {
				t.Errorf("accepted invalid UTF-8 and re-encoded it as is: %q", out)
			}
		})
	}
}

func TestDecodeBatch(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		msgs, errs, batch, err := jsonrpc.DecodeBatch([]byte(` {"jsonrpc":"2.0","id":1,"method":"x"} `), 0)
		if err != nil || batch || len(msgs) != 1 || len(errs) != 1 || errs[0] != nil || msgs[0].Method != "x" {
			t.Fatalf("got %v %v %v %v", msgs, errs, batch, err)
		}
	})
	t.Run("single invalid is a whole-body error", func(t *testing.T) {
		_, _, batch, err := jsonrpc.DecodeBatch([]byte(`{"jsonrpc":"1.0","id":1,"method":"x"}`), 0)
		if err == nil || batch {
			t.Fatalf("batch=%v err=%v", batch, err)
		}
		if code := decodeCode(t, err); code != jsonrpc.CodeInvalidRequest {
			t.Errorf("code = %d", code)
		}
	})
	for _, body := range []string{"", "   ", "\n\t"} {
		t.Run("empty body "+strings.TrimSpace(body), func(t *testing.T) {
			_, _, _, err := jsonrpc.DecodeBatch([]byte(body), 0)
			if code := decodeCode(t, err); code != jsonrpc.CodeParseError {
				t.Errorf("code = %d, want parse error", code)
			}
		})
	}
	t.Run("empty batch", func(t *testing.T) {
		_, _, batch, err := jsonrpc.DecodeBatch([]byte(` [ ] `), 0)
		if !batch {
			t.Error("not reported as a batch")
		}
		if code := decodeCode(t, err); code != jsonrpc.CodeInvalidRequest {
			t.Errorf("code = %d, want %d", code, jsonrpc.CodeInvalidRequest)
		}
	})
	t.Run("batch longer than the limit", func(t *testing.T) {
		elements := strings.TrimSuffix(strings.Repeat(`{"jsonrpc":"2.0","id":1,"method":"x"},`, 65), ",")
		msgs, _, batch, err := jsonrpc.DecodeBatch([]byte("["+elements+"]"), 64)
		if !batch || msgs != nil {
			t.Fatalf("batch=%v msgs=%d", batch, len(msgs))
		}
		if code := decodeCode(t, err); code != jsonrpc.CodeInvalidRequest {
			t.Errorf("code = %d, want %d", code, jsonrpc.CodeInvalidRequest)
		}
		if msgs, _, _, err := jsonrpc.DecodeBatch([]byte("["+elements+"]"), 65); err != nil || len(msgs) != 65 {
			t.Errorf("a batch at the limit: %d messages, err %v", len(msgs), err)
		}
	})
	t.Run("broken batch", func(t *testing.T) {
		_, _, _, err := jsonrpc.DecodeBatch([]byte(`[{"jsonrpc":"2.0","id":1,"method":"x"},`), 0)
		if code := decodeCode(t, err); code != jsonrpc.CodeParseError {
			t.Errorf("code = %d, want parse error", code)
		}
	})
	t.Run("mixed", func(t *testing.T) {
		body := `[
			{"jsonrpc":"2.0","id":1,"method":"a"},
			1,
			{"jsonrpc":"1.0","id":"x","method":"b"},
			{"jsonrpc":"2.0","method":"notifications/n"},
			null,
			[],
			{"jsonrpc":"2.0","id":2,"result":{}},
			{"jsonrpc":"2.0","id":3.5,"method":"c"}
		]`
		msgs, errs, batch, err := jsonrpc.DecodeBatch([]byte(body), 0)
		if err != nil || !batch {
			t.Fatalf("batch=%v err=%v", batch, err)
		}
		if len(msgs) != 8 || len(errs) != 8 {
			t.Fatalf("len(msgs)=%d len(errs)=%d, want 8", len(msgs), len(errs))
		}
		wantOK := []bool{true, false, false, true, false, false, true, false}
		for i, ok := range wantOK {
			if ok != (errs[i] == nil) {
				t.Errorf("entry %d: err = %v, want ok=%v", i, errs[i], ok)
			}
			if ok != (msgs[i] != nil) {
				t.Errorf("entry %d: msg = %v, want present=%v", i, msgs[i], ok)
			}
		}
		var de *jsonrpc.DecodeError
		if errors.As(errs[2], &de) && de.ID.Raw() != `"x"` {
			t.Errorf("entry 2 error id = %q, want \"x\"", de.ID.Raw())
		}
		for i, e := range errs {
			if e != nil {
				if code := decodeCode(t, e); code != jsonrpc.CodeInvalidRequest {
					t.Errorf("entry %d code = %d, want invalid request", i, code)
				}
			}
		}
	})
}

func TestRoundTrip(t *testing.T) {
	awkward := "quote\" backslash\\ slash/ nl\n cr\r tab\t nul\x00 bell\x07 del\x7f é 漢 😀 \u2028\u2029 <>&"
	mustRequest := func(id jsonrpc.ID, method string, params any) *jsonrpc.Message {
		m, err := jsonrpc.NewRequest(id, method, params)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	mustResult := func(id jsonrpc.ID, v any) *jsonrpc.Message {
		m, err := jsonrpc.NewResult(id, v)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	notification, err := jsonrpc.NewNotification("notifications/message", map[string]string{"data": awkward})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   *jsonrpc.Message
		// want is what decoding the encoding must give; nil means in.
		want *jsonrpc.Message
	}{
		{"request int id", mustRequest(jsonrpc.Int64ID(1), "tools/list", nil), nil},
		{"request negative id", mustRequest(jsonrpc.Int64ID(-9), "x", map[string]int{"a": 1}), nil},
		{"request string id", mustRequest(jsonrpc.StringID("abc"), "tools/call", map[string]any{"name": "t"}), nil},
		{"request awkward string id", mustRequest(jsonrpc.StringID(awkward), "x", []int{1, 2}), nil},
		{"request awkward method", mustRequest(jsonrpc.Int64ID(2), awkward, nil), nil},
		{"request invalid utf-8 method", mustRequest(jsonrpc.Int64ID(3), "a\xffb\xc3", nil),
			&jsonrpc.Message{ID: jsonrpc.Int64ID(3), Method: "a\ufffdb\ufffd"}},
		{"notification", notification, nil},
		{"result", mustResult(jsonrpc.StringID("r"), map[string]any{"content": []any{map[string]string{"type": "text", "text": awkward}}}), nil},
		{"null result", &jsonrpc.Message{ID: jsonrpc.Int64ID(4), Result: json.RawMessage(`null`)}, nil},
		{"empty result becomes {}", &jsonrpc.Message{ID: jsonrpc.Int64ID(5)},
			&jsonrpc.Message{ID: jsonrpc.Int64ID(5), Result: json.RawMessage(`{}`)}},
		{"error", jsonrpc.NewErrorResponse(jsonrpc.Int64ID(6), jsonrpc.NewError(jsonrpc.CodeMethodNotFound, awkward)), nil},
		{"error with data", &jsonrpc.Message{ID: jsonrpc.StringID("e"), Error: &jsonrpc.Error{Code: -32000, Message: "m", Data: json.RawMessage(`{"retry":true}`)}}, nil},
		{"error invalid utf-8 message", jsonrpc.NewErrorResponse(jsonrpc.Int64ID(7), jsonrpc.NewError(1, "bad\xfe")),
			jsonrpc.NewErrorResponse(jsonrpc.Int64ID(7), jsonrpc.NewError(1, "bad\ufffd"))},
		{"error without id", jsonrpc.NewErrorResponse(jsonrpc.ID{}, jsonrpc.Errorf(jsonrpc.CodeParseError, "parse %s", "error")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := tt.in.Encode()
			if !json.Valid(enc) {
				t.Fatalf("invalid JSON: %q", enc)
			}
			if !utf8.Valid(enc) {
				t.Fatalf("invalid UTF-8: %q", enc)
			}
			if appended := tt.in.Append([]byte("prefix")); string(appended) != "prefix"+string(enc) {
				t.Errorf("Append differs from Encode: %q", appended)
			}
			got, err := jsonrpc.Decode(enc)
			if err != nil {
				t.Fatalf("Decode(%s): %v", enc, err)
			}
			want := tt.want
			if want == nil {
				want = tt.in
			}
			if !messagesEqual(got, want) {
				t.Errorf("round trip:\n got  %#v\n want %#v\n wire %s", got, want, enc)
			}
			// Cross-check with encoding/json: the wire form means what we think.
			var generic map[string]any
			if err := json.Unmarshal(enc, &generic); err != nil {
				t.Fatal(err)
			}
			if generic["jsonrpc"] != "2.0" {
				t.Errorf("jsonrpc member = %v", generic["jsonrpc"])
			}
			if want.Method != "" {
				if generic["method"] != want.Method {
					t.Errorf("method member = %q, want %q", generic["method"], want.Method)
				}
			}
		})
	}
}

func TestErrorResponseWithoutIDEncodesNull(t *testing.T) {
	got := string(jsonrpc.NewErrorResponse(jsonrpc.ID{}, jsonrpc.NewError(jsonrpc.CodeParseError, "parse error")).Encode())
	want := `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// A notification must not gain an id.
	n, _ := jsonrpc.NewNotification("notifications/initialized", nil)
	if s := string(n.Encode()); strings.Contains(s, `"id"`) {
		t.Errorf("notification encodes an id: %s", s)
	}
}

func TestMarshalJSONNests(t *testing.T) {
	m, _ := jsonrpc.NewRequest(jsonrpc.Int64ID(1), "x", map[string]int{"a": 1})
	out, err := json.Marshal(map[string]any{"msg": m})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ Msg json.RawMessage }
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	got, err := jsonrpc.Decode(back.Msg)
	if err != nil || !messagesEqual(got, m) {
		t.Errorf("nested message = %v, %v", got, err)
	}
}

// messagesEqual compares messages, treating raw JSON by its compacted form.
func messagesEqual(a, b *jsonrpc.Message) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.ID.Raw() != b.ID.Raw() || a.Method != b.Method || !rawEqual(a.Params, b.Params) || !rawEqual(a.Result, b.Result) {
		return false
	}
	if (a.Error == nil) != (b.Error == nil) {
		return false
	}
	if a.Error != nil {
		return a.Error.Code == b.Error.Code && a.Error.Message == b.Error.Message && rawEqual(a.Error.Data, b.Error.Data)
	}
	return true
}

func rawEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return reflect.DeepEqual([]byte(a), []byte(b))
}
