package opa

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// referenceValue is the slow path jsonValue replaces: encoding/json with
// exact numbers, then OPA's own conversion.
func referenceValue(data []byte) (ast.Value, error) {
	if !json.Valid(data) {
		return nil, &json.SyntaxError{}
	}
	var x any
	if err := util.NewJSONDecoder(bytes.NewReader(data)).Decode(&x); err != nil {
		return nil, err
	}
	return ast.InterfaceToValue(x)
}

var jsonCases = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1`, `-12`, `3.25`, `1e3`, `1E-3`, `-1.5e+10`,
	`12345678901234567890123`, `0.1000000000000000055511151231257827`,
	`""`, `"plain"`, `"café"`, `"\u00e9\n\t\"\\\/"`, `"\ud83d\ude00"`, `"\ud800"`, "\"\xff\xfe\"",
	` { "a" : [ 1 , { "b" : null } ] , "c" : "d" } `,
	`{"a":1,"a":2}`, `{"a":{"x":1},"b":[true,false,null]}`,
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k3":33,"k16":1616}`,
	// Invalid.
	``, ` `, `{`, `}`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `01`, `1.`, `.5`, `-`, `1e`, `+1`, `tru`, `nul`,
	`"unterminated`, "\"tab\there\"", `"\x"`, `"\u12"`, `{} {}`, `[] x`, `1 2`, `NaN`, `1e99999999999`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

func TestJSONValue(t *testing.T) {
	for _, c := range jsonCases {
		t.Run(c[:min(len(c), 40)], func(t *testing.T) { checkJSONValue(t, []byte(c)) })
	}
}

func FuzzJSONValue(f *testing.F) {
	for _, c := range jsonCases {
		f.Add([]byte(c))
	}
	f.Fuzz(checkJSONValue)
}

func checkJSONValue(t *testing.T, data []byte) {
	want, wantErr := referenceValue(data)
	got, err := jsonValue(data)
	switch {
	case (err != nil) != (wantErr != nil):
		t.Fatalf("jsonValue(%q) error %v, reference error %v", data, err, wantErr)
	case err != nil:
		return
	case got.Compare(want) != 0:
		t.Fatalf("jsonValue(%q) = %v, want %v", data, got, want)
	}
}

var benchArguments = []byte(`{"order_id":"A-1042","amount":120,"currency":"EUR","reason":"damaged in transit"}`)

// BenchmarkJSONValue and BenchmarkJSONReference compare the direct decoder
// with encoding/json followed by ast.InterfaceToValue.
func BenchmarkJSONValue(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jsonValue(benchArguments); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONReference(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := referenceValue(benchArguments); err != nil {
			b.Fatal(err)
		}
	}
}
