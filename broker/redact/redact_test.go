package redact_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/redact"
)

func TestFind(t *testing.T) {
	tests := []struct {
		text string
		want []redact.Kind // in order; none: nothing to find
	}{
		{"key AKIAIOSFODNN7EXAMPLE in use", []redact.Kind{"aws-access-key"}},
		{"AKIAEXAMPLE is too short", nil},
		{"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOq6\n-----END PRIVATE KEY-----", []redact.Kind{"private-key"}},
		{"-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----", []redact.Kind{"private-key"}},
		{"-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----", nil},
		{"token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.5mhBHqs5_DTLdINd9p5m7ZJ6XD0Xc55kIaCRY5r6HRA", []redact.Kind{"jwt"}},
		{"eyJub3QiOiJqd3QifQ.eyJzdWIiOiJhbGljZSJ9.5mhBHqs5_DTLdINd9p5m7ZJ6", nil}, // header without alg
		{"ghp_" + strings.Repeat("a1", 18), []redact.Kind{"github-token"}},
		{"xoxb-1234567890-abcdef", []redact.Kind{"slack-token"}},
		{"sk_live_" + strings.Repeat("Ab1", 9), []redact.Kind{"stripe-key"}},
		{"sk_test_" + strings.Repeat("Ab1", 9), nil},
		{"AIza" + strings.Repeat("B", 35), []redact.Kind{"google-api-key"}},
		{"card 4111 1111 1111 1111 on file", []redact.Kind{"payment-card"}},
		{"card 4111-1111-1111-1111", []redact.Kind{"payment-card"}},
		{"amex 378282246310005", []redact.Kind{"payment-card"}},
		{"card 4111 1111 1111 1112 (expired)", nil}, // fails the Luhn check
		{"order 1234-5678-9012-3456", nil},          // no issuer, no Luhn
		{"version 41111111111111111111111", nil},    // too long
		{"IBAN DE89 3704 0044 0532 0130 00.", []redact.Kind{"iban"}},
		{"IBAN GB82WEST12345698765432", []redact.Kind{"iban"}},
		{"IBAN DE89 3704 0044 0532 0130 01", nil}, // check digits wrong
		{"write to alice.martin@example.com today", []redact.Kind{"email"}},
		{"user at example dot com", nil},
		{"call +49 30 1234567", []redact.Kind{"phone"}},
		{"version +1.2", nil},
		{"ssn 123-45-6789", []redact.Kind{"us-ssn"}},
		{"ssn 666-45-6789 and 123-00-6789", nil},
		{"a@b.co and 4111111111111111", []redact.Kind{"email", "payment-card"}},
		{"", nil},
	}
	all, err := redact.NewSet(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		found := all.Find(tt.text)
		var got []redact.Kind
		for _, f := range found {
			got = append(got, f.Kind)
			if f.Start < 0 || f.End > len(tt.text) || f.Start >= f.End {
				t.Errorf("%q: finding out of bounds %+v", tt.text, f)
			}
		}
		if strings.Join(kinds(got), ",") != strings.Join(kinds(tt.want), ",") {
			t.Errorf("%q: found %v, want %v", tt.text, got, tt.want)
		}
	}
}

func kinds(k []redact.Kind) []string {
	s := make([]string, len(k))
	for i, v := range k {
		s[i] = string(v)
	}
	return s
}

func TestMask(t *testing.T) {
	s, _ := redact.NewSet([]redact.Kind{"email", "payment-card"})
	masked, counts := s.Mask("mail a@example.com, card 4111 1111 1111 1111, AKIAIOSFODNN7EXAMPLE")
	if want := "mail [REDACTED:email], card [REDACTED:payment-card], AKIAIOSFODNN7EXAMPLE"; masked != want {
		t.Errorf("masked %q, want %q", masked, want)
	}
	if counts["email"] != 1 || counts["payment-card"] != 1 || len(counts) != 2 {
		t.Errorf("counts %v", counts)
	}
	clean := "nothing here"
	if out, counts := s.Mask(clean); out != clean || counts != nil {
		t.Errorf("clean text: %q %v", out, counts)
	}
	if _, err := redact.NewSet([]redact.Kind{"emial"}); err == nil || !strings.Contains(err.Error(), "known: aws-access-key") {
		t.Errorf("unknown detector: %v", err)
	}
}

func TestMaskJSON(t *testing.T) {
	s, _ := redact.NewSet(nil)
	doc := `{"email":"alice@example.com","nested":{"cards":["4111111111111111","4111111111111112"],"note":"key \u0041KIAIOSFODNN7EXAMPLE"},"n":4111111111111111,"alice@example.com":true}`
	out, counts, err := s.MaskJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("masked JSON %s: %v", out, err)
	}
	want := `{"email":"[REDACTED:email]","nested":{"cards":["[REDACTED:payment-card]","4111111111111112"],"note":"key [REDACTED:aws-access-key]"},"n":4111111111111111,"alice@example.com":true}`
	if string(out) != want {
		t.Errorf("masked:\n%s\nwant\n%s", out, want)
	}
	if counts["email"] != 1 || counts["payment-card"] != 1 || counts["aws-access-key"] != 1 {
		t.Errorf("counts %v", counts)
	}
	clean := []byte(`{"a":"b","c":[1,2]}`)
	if out, counts, _ := s.MaskJSON(clean); &out[0] != &clean[0] || counts != nil {
		t.Error("a clean document was rewritten")
	}
	if found, _ := s.FindJSON([]byte(doc)); found["email"] != 1 {
		t.Errorf("FindJSON: %v", found)
	}
	if _, _, err := s.MaskJSON([]byte(`{"a":`)); err == nil {
		t.Error("invalid JSON accepted")
	}
}

func FuzzMaskJSON(f *testing.F) {
	for _, seed := range []string{`{"a":"a@b.co"}`, `["4111111111111111",{"k":"AKIAIOSFODNN7EXAMPLE"}]`, `"x"`, `{"\"":"\u0000"}`} {
		f.Add([]byte(seed))
	}
	s, _ := redact.NewSet(nil)
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, _, err := s.MaskJSON(doc)
		if err == nil && !json.Valid(out) {
			t.Fatalf("MaskJSON(%q) = %q, not JSON", doc, out)
		}
	})
}

func FuzzFind(f *testing.F) {
	for _, seed := range []string{"a@b.co 4111 1111 1111 1111", "+49 30 1234567", "DE89 3704 0044 0532 0130 00", "123-45-6789"} {
		f.Add(seed)
	}
	s, _ := redact.NewSet(nil)
	f.Fuzz(func(t *testing.T, text string) {
		last := 0
		for _, fd := range s.Find(text) {
			if fd.Start < last || fd.End > len(text) || fd.Start >= fd.End {
				t.Fatalf("%q: finding %+v after %d", text, fd, last)
			}
			last = fd.End
		}
	})
}

// A 4 KiB result: log-like text with a few findings, and one with none.
var (
	mixed = strings.Repeat("2026-12-05 order 1234-5678 shipped to warehouse 7, status ok; ", 70)[:3900] +
		" contact alice@example.com card 4111 1111 1111 1111"
	clean = strings.Repeat("2026-12-05 order 1234-5678 shipped to warehouse 7, status ok; ", 70)[:4096]
)

func BenchmarkMask4KiB(b *testing.B) {
	s, _ := redact.NewSet(nil)
	b.SetBytes(int64(len(mixed)))
	b.ReportAllocs()
	for b.Loop() {
		s.Mask(mixed)
	}
}

func BenchmarkFind4KiBClean(b *testing.B) {
	s, _ := redact.NewSet(nil)
	b.SetBytes(int64(len(clean)))
	b.ReportAllocs()
	for b.Loop() {
		s.Find(clean)
	}
}

func BenchmarkMaskJSON4KiB(b *testing.B) {
	s, _ := redact.NewSet(nil)
	doc, _ := json.Marshal(map[string]any{"content": []map[string]string{{"type": "text", "text": mixed}}})
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.MaskJSON(doc); err != nil {
			b.Fatal(err)
		}
	}
}
