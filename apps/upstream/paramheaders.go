package upstream

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// A tool's inputSchema may mark a primitive property, at any depth, with
// "x-mcp-header": "<Name>"; in protocol version 2026-07-28 a tools/call's
// value of that argument then travels in the header Mcp-Param-<Name> too,
// so that what sits between client and server can route on it without
// reading the body. The value is the string, the integer in decimal, or
// true/false; a string that is not plain printable ASCII, has surrounding
// blanks or looks encoded already is sent as =?base64?<base64>?=.

// ParamHeaderPrefix starts the name of every argument header.
const ParamHeaderPrefix = "Mcp-Param-"

const (
	base64Open  = "=?base64?"
	base64Close = "?="
	// maxSafeInteger is the largest integer a JSON number holds exactly
	// in every implementation.
	maxSafeInteger = 1<<53 - 1
	// maxParamHeaders bounds the annotations read from one tool.
	maxParamHeaders = 64
)

// ParamHeader is one annotated argument: the header's name after the
// prefix, and the property path to the argument.
type ParamHeader struct {
	Name string
	Path []string
}

// ParamHeaders reads a listed tool's x-mcp-header annotations; nil when
// it has none, or they are not what the specification allows (the
// client then sends no such headers, and none are checked).
func ParamHeaders(tool json.RawMessage) []ParamHeader {
	var t struct {
		InputSchema json.RawMessage `json:"inputSchema"`
	}
	if json.Unmarshal(tool, &t) != nil {
		return nil
	}
	var out []ParamHeader
	seen := map[string]bool{}
	if !collectParamHeaders(t.InputSchema, nil, seen, &out, 0) {
		return nil
	}
	return out
}

type schemaProperty struct {
	Type       json.RawMessage            `json:"type"`
	Header     json.RawMessage            `json:"x-mcp-header"`
	Properties map[string]json.RawMessage `json:"properties"`
}

func collectParamHeaders(schema json.RawMessage, prefix []string, seen map[string]bool, out *[]ParamHeader, depth int) bool {
	if depth > 16 {
		return false
	}
	var s schemaProperty
	if json.Unmarshal(schema, &s) != nil {
		return len(prefix) > 0 // a schema that is not an object has no annotations
	}
	for name, raw := range s.Properties {
		var p schemaProperty
		if json.Unmarshal(raw, &p) != nil {
			continue
		}
		path := append(append([]string(nil), prefix...), name)
		if p.Header != nil {
			var header, typ string
			_ = json.Unmarshal(p.Type, &typ)
			if json.Unmarshal(p.Header, &header) != nil || !validHeaderToken(header) || seen[strings.ToLower(header)] ||
				(typ != "string" && typ != "integer" && typ != "boolean") || len(*out) >= maxParamHeaders {
				return false
			}
			seen[strings.ToLower(header)] = true
			*out = append(*out, ParamHeader{Name: header, Path: path})
		}
		if len(p.Properties) > 0 && !collectParamHeaders(raw, path, seen, out, depth+1) {
			return false
		}
	}
	return true
}

// validHeaderToken: a name HTTP allows in a header name.
func validHeaderToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// argument finds an argument by its property path in a tools/call's
// params.
func argument(params json.RawMessage, path []string) (json.RawMessage, bool) {
	var p struct {
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(params, &p) != nil {
		return nil, false
	}
	cur := p.Arguments
	for _, part := range path {
		var obj map[string]json.RawMessage
		if json.Unmarshal(cur, &obj) != nil {
			return nil, false
		}
		var ok bool
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, string(cur) != "null"
}

// paramValue is the header form of a primitive argument; false for
// anything else.
func paramValue(raw json.RawMessage) (string, bool) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		if needsBase64(v) {
			return base64Open + base64.StdEncoding.EncodeToString([]byte(v)) + base64Close, true
		}
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > maxSafeInteger {
			return "", false
		}
		return strconv.FormatInt(int64(v), 10), true
	}
	return "", false
}

func needsBase64(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t' {
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return true
		}
	}
	return strings.HasPrefix(s, base64Open) && strings.HasSuffix(s, base64Close)
}

// decodeHeaderValue undoes the base64 form.
func decodeHeaderValue(v string) (string, bool) {
	inner, ok := strings.CutPrefix(v, base64Open)
	if !ok {
		return v, true
	}
	if inner, ok = strings.CutSuffix(inner, base64Close); !ok {
		return v, true
	}
	b, err := base64.StdEncoding.DecodeString(inner)
	return string(b), err == nil
}

// SetParamHeaders sets the argument headers of a tools/call's params on
// h, made from the arguments themselves.
func SetParamHeaders(h http.Header, annotations []ParamHeader, params json.RawMessage) {
	for _, a := range annotations {
		raw, ok := argument(params, a.Path)
		if !ok {
			continue
		}
		if v, ok := paramValue(raw); ok {
			h.Set(ParamHeaderPrefix+a.Name, v)
		}
	}
}

// CheckParamHeaders checks a client's argument headers against the
// arguments they repeat: each present exactly when its argument is, and
// equal to it.
func CheckParamHeaders(h http.Header, annotations []ParamHeader, params json.RawMessage) error {
	for _, a := range annotations {
		name := ParamHeaderPrefix + a.Name
		values := h.Values(name)
		raw, present := argument(params, a.Path)
		switch {
		case !present && len(values) > 0:
			return fmt.Errorf("header mismatch: %s sent for absent parameter %q", name, strings.Join(a.Path, "."))
		case !present:
			continue
		case len(values) == 0:
			return fmt.Errorf("header mismatch: missing %s header for parameter %q", name, strings.Join(a.Path, "."))
		case len(values) > 1:
			return fmt.Errorf("header mismatch: %s sent more than once", name)
		}
		got, ok := decodeHeaderValue(strings.TrimSpace(values[0]))
		if !ok {
			return fmt.Errorf("header mismatch: %s is not valid base64", name)
		}
		want, ok := paramValue(raw)
		if !ok {
			return fmt.Errorf("header mismatch: %s names parameter %q, which is not a string, integer or boolean", name, strings.Join(a.Path, "."))
		}
		if wantDecoded, _ := decodeHeaderValue(want); !sameValue(got, wantDecoded, raw) {
			return fmt.Errorf("header mismatch: %s does not match parameter %q", name, strings.Join(a.Path, "."))
		}
	}
	return nil
}

// sameValue compares a header's decoded value with the argument's; an
// integer matches any spelling of the same number.
func sameValue(got, want string, raw json.RawMessage) bool {
	if got == want {
		return true
	}
	var n float64
	if json.Unmarshal(raw, &n) != nil {
		return false
	}
	f, err := strconv.ParseFloat(got, 64)
	return err == nil && f == n && f == math.Trunc(f)
}
