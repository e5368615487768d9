package jsonrpc

import (
	"errors"
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
