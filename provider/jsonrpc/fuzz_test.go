package jsonrpc_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

var fuzzSeeds = []string{
	`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`,
	`{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi\n\"there\""}}}`,
	`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":0.5}}`,
	`{"jsonrpc":"2.0","id":-7,"result":{"tools":[]}}`,
	`{"jsonrpc":"2.0","id":1,"result":null}`,
	`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`,
	`{"jsonrpc":"2.0","error":{"code":-32600,"message":"x","data":null}}`,
	`{"jsonrpc":"2.0","id":"e","error":{"code":1,"message":"m","data":[1,{"a":"b"}]}}`,
	`{"jsonrpc":"2.0","id":1,"method":"x","params":[1,2,3]}`,
	`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"result":{}}]`,
	`[]`,
	`[1,null,"x",[],{}]`,
	`{"jsonrpc":"2.0","id":1.5,"method":"x"}`,
	`{"jsonrpc":"2.0","id":true,"method":"x"}`,
	`{"jsonrpc":"2.0","id":{},"method":"x"}`,
	`{"jsonrpc":"1.0","id":1,"method":"x"}`,
	`{"jsonrpc":"2.0","id":1,"method":""}`,
	`{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}`,
	`{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}`,
	`{"jsonrpc":"2.0","ID":1,"Method":"x","paramſ":{}}`,
	"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"\xfe\"}",
	`{"jsonrpc":"2.0","id":"\ud800","method":"\u0000"}`,
	`{"jsonrpc":"2.0","id":9223372036854775807,"method":"x"}`,
	`{"jsonrpc":"2.0","id":-0,"method":"x"}`,
	`{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"a":2}}`,
	`{"jsonrpc":"2.0",`,
	``,
	`null`,
}

// FuzzDecode: Decode and DecodeBatch never panic, every failure is a
// *DecodeError, and whatever decodes survives Encode then Decode unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := jsonrpc.Decode(data)
		if err != nil {
			var de *jsonrpc.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode error %v is %T, not *DecodeError", err, err)
			}
			if de.Code != jsonrpc.CodeParseError && de.Code != jsonrpc.CodeInvalidRequest {
				t.Fatalf("unexpected code %d", de.Code)
			}
		} else {
			checkRoundTrip(t, m)
		}

		msgs, errs, _, err := jsonrpc.DecodeBatch(data, 0)
		if err != nil {
			var de *jsonrpc.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeBatch error %v is %T, not *DecodeError", err, err)
			}
			return
		}
		if len(msgs) == 0 || len(msgs) != len(errs) {
			t.Fatalf("DecodeBatch: %d messages, %d errors", len(msgs), len(errs))
		}
		for i := range msgs {
			if (msgs[i] == nil) == (errs[i] == nil) {
				t.Fatalf("entry %d: message %v and error %v", i, msgs[i], errs[i])
			}
			if msgs[i] != nil {
				checkRoundTrip(t, msgs[i])
			}
		}
	})
}

func checkRoundTrip(t *testing.T, m *jsonrpc.Message) {
	t.Helper()
	if m.Kind() == jsonrpc.KindInvalid {
		t.Fatalf("Decode returned an invalid message %#v", m)
	}
	enc := m.Encode()
	if !json.Valid(enc) {
		t.Fatalf("Encode produced invalid JSON %q from %#v", enc, m)
	}
	back, err := jsonrpc.Decode(enc)
	if err != nil {
		t.Fatalf("re-decoding %q: %v", enc, err)
	}
	if !messagesEqual(m, back) {
		t.Fatalf("round trip changed the message:\n first  %#v\n second %#v\n wire %q", m, back, enc)
	}
	if back.Kind() != m.Kind() {
		t.Fatalf("kind changed: %v → %v", m.Kind(), back.Kind())
	}
	if again := back.Encode(); string(again) != string(enc) {
		t.Fatalf("encoding not stable:\n %q\n %q", enc, again)
	}
}
