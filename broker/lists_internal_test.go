package broker

import (
	"bytes"
	"encoding/json"
	"github.com/mcpbroker/mcpbroker/broker/redact"
	"strings"
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

// BenchmarkRedactToolResult is the redact stage's work on a 4 KiB text
// result with every detector: clean (the common case) and with an e-mail
// address and a card number to mask.
func BenchmarkRedactToolResult(b *testing.B) {
	set, err := redact.NewSet(nil)
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("2026-12-05T10:00:00Z order 1234-5678 shipped from warehouse 7 to Berlin, status ok; ", 50)[:4096]
	for _, tc := range []struct{ name, text string }{
		{"clean", text},
		{"findings", text[:4000] + " alice@example.com 4111 1111 1111 1111"},
	} {
		result, _ := json.Marshal(map[string]any{"content": []map[string]string{{"type": "text", "text": tc.text}}})
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(result)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := redactToolResult(result, set, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
