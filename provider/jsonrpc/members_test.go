package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheckMembers(t *testing.T) {
	cases := []struct {
		json string
		ok   bool
	}{
		{`{"name":"a","arguments":{"amount":1}}`, true},
		{`{"name":"a","other":[{"x":1},{"x":2}]}`, true}, // same names in different objects
		{`{"name":"a","Name":"b"}`, false},
		{`{"name":"a","name":"b"}`, false},
		{`{"arguments":{"amount":1,"AMOUNT":2}}`, false},
		{`{"arguments":{"x":1},"argumentſ":{"x":2}}`, false}, // long s folds to s
		{`{"k":1,"\u212a":2}`, false},                        // Kelvin sign folds to k
		{`{"list":[{"a":1,"A":2}]}`, false},
		{`{"na\u006de":1,"name":2}`, false}, // escapes are decoded first
		{`[1,2,{"b":true}]`, true},
		{`{"ünï":1,"ÜNÏ":2}`, false},
	}
	for _, tc := range cases {
		err := CheckMembers([]byte(tc.json))
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.json, err)
		}
		if !tc.ok && !errors.Is(err, ErrAmbiguousMembers) {
			t.Errorf("%s: want ErrAmbiguousMembers, got %v", tc.json, err)
		}
	}
}

// More than the names compared in place, mixed with escaped ones.
func TestCheckMembersManyNames(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 40 {
		fmt.Fprintf(&b, `"m%d":%d,`, i, i)
	}
	ok := b.String() + `"\u006dx":1}`
	if err := CheckMembers([]byte(ok)); err != nil {
		t.Errorf("40 distinct names and an escaped one: %v", err)
	}
	for _, dup := range []string{`"M39":1}`, `"\u006d3":1}`, `"m0":1}`} {
		if err := CheckMembers([]byte(b.String() + dup)); !errors.Is(err, ErrAmbiguousMembers) {
			t.Errorf("40 names and %s: %v, want ErrAmbiguousMembers", dup, err)
		}
	}
	for _, bad := range []string{`{"a":1,}`, `{"a" 1}`, `{"a":1`, `[1,2`, `{"a":[1,}`, `{1:2}`, `{"a":"x}`} {
		if err := CheckMembers([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// FuzzCheckMembers holds the in-place checker to what a decoder that
// reads every name says of valid JSON: ambiguous exactly when it is.
func FuzzCheckMembers(f *testing.F) {
	for _, seed := range []string{`{"name":"a","Name":"b"}`, `{"k":1,"\u212a":2}`, `[{"a":{"b":[1,{"B":2,"b":3}]}}]`, `{"x":1,"y":{"x":2}}`, `"s"`, `12`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			_ = CheckMembers(data) // must not panic
			return
		}
		got := errors.Is(CheckMembers(data), ErrAmbiguousMembers)
		want := ambiguousByDecoder(t, data)
		if got != want {
			t.Fatalf("%q: ambiguous %v, a decoder says %v", data, got, want)
		}
	})
}

// ambiguousByDecoder reads every member name with encoding/json's token
// reader and folds it: the reference CheckMembers is held to.
func ambiguousByDecoder(t *testing.T, data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("valid JSON: %v", err)
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				key, _ := dec.Token()
				folded := foldKey(key.(string))
				if seen[folded] {
					return true
				}
				seen[folded] = true
				if walk() {
					return true
				}
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for dec.More() {
				if walk() {
					return true
				}
			}
			_, _ = dec.Token()
		}
		return false
	}
	return walk()
}
