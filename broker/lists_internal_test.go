package broker

import (
	"bytes"
	"encoding/json"
	"testing"
)

// compactJSON agrees with encoding/json's Compact on valid JSON, and hands
// back JSON without whitespace as it is.
func FuzzCompactJSON(f *testing.F) {
	for _, seed := range []string{`{"a": 1, "b" : [ true , null ]}`, `{"s":"  \" \\ \n "}`, "{\n\t\"x\":\r\n\"y\"\n}", `[]`, `"x"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, data); err != nil {
			t.Fatal(err)
		}
		got := compactJSON(data)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("compactJSON(%q) = %q, want %q", data, got, want.Bytes())
		}
		if bytes.Equal(data, want.Bytes()) && &got[0] != &data[0] {
			t.Error("compact JSON was copied")
		}
	})
}
