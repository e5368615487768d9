package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
)

// Forwarded messages keep the sender's bytes. Decoding into a map and
// encoding it again would sort members, drop whitespace and write <, >
// and & as six-byte escapes: a request under one server's size cap could
// reach the next one six times larger, and the receiver would not see what
// the sender wrote. So the few members the broker rewrites are replaced in
// place, and every other byte passes through.

// ErrMalformedObject means a value given to Member or SetMember is not a
// JSON object, or holds the member asked for twice.
var ErrMalformedObject = errors.New("jsonrpc: not a JSON object with unique members")

// Member returns the value of the member name of the JSON object obj, as
// it is written there; ok is false when obj has no such member. Member
// names are compared after unescaping, as decoders do.
func Member(obj []byte, name string) (value []byte, ok bool, err error) {
	span, err := findMember(obj, name)
	if err != nil || span.start < 0 {
		return nil, false, err
	}
	return obj[span.start:span.end], true, nil
}

// SetMember returns a copy of the JSON object obj with the value of the
// member name replaced by value, which must be valid JSON, or with the
// member added at the end when obj has none. Every other byte of obj is
// kept.
func SetMember(obj []byte, name string, value []byte) ([]byte, error) {
	span, err := findMember(obj, name)
	if err != nil {
		return nil, err
	}
	if span.start >= 0 {
		out := make([]byte, 0, len(obj)-(span.end-span.start)+len(value))
		out = append(out, obj[:span.start]...)
		out = append(out, value...)
		return append(out, obj[span.end:]...), nil
	}
	out := make([]byte, 0, len(obj)+len(name)+len(value)+8)
	out = append(out, obj[:span.close]...)
	if span.members {
		out = append(out, ',')
	}
	out = appendString(out, name)
	out = append(out, ':')
	out = append(out, value...)
	return append(out, obj[span.close:]...), nil
}

// memberSpan locates a member's value in an object: start and end bound
// the value (start < 0: absent), close is the index of the object's
// closing brace, members whether the object has any.
type memberSpan struct {
	start, end, close int
	members           bool
}

// findMember scans obj, which came through a JSON decoder and so is valid
// JSON text; the scan still fails on anything that is not an object.
func findMember(obj []byte, name string) (memberSpan, error) {
	span := memberSpan{start: -1}
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return span, ErrMalformedObject
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		span.close = i
		return span, checkEnd(obj, i+1)
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return span, ErrMalformedObject
		}
		keyEnd, err := skipString(obj, i)
		if err != nil {
			return span, err
		}
		match := keyEquals(obj[i:keyEnd], name)
		i = skipSpace(obj, keyEnd)
		if i >= len(obj) || obj[i] != ':' {
			return span, ErrMalformedObject
		}
		i = skipSpace(obj, i+1)
		valueEnd, err := skipValue(obj, i)
		if err != nil {
			return span, err
		}
		if match {
			if span.start >= 0 {
				return span, ErrMalformedObject
			}
			span.start, span.end = i, valueEnd
		}
		span.members = true
		i = skipSpace(obj, valueEnd)
		if i >= len(obj) {
			return span, ErrMalformedObject
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			span.close = i
			return span, checkEnd(obj, i+1)
		default:
			return span, ErrMalformedObject
		}
	}
}

// Elements calls fn with each element of the JSON array arr, as it is
// written there, in order; null is an empty array. arr came through a
// JSON decoder, as for Member; anything else than an array or null fails
// with ErrMalformedArray, as does an error of fn, which ends the scan.
func Elements(arr []byte, fn func(element []byte) error) error {
	i := skipSpace(arr, 0)
	if bytes.HasPrefix(arr[i:], []byte("null")) {
		if checkEnd(arr, i+len("null")) != nil {
			return ErrMalformedArray
		}
		return nil
	}
	if i >= len(arr) || arr[i] != '[' {
		return ErrMalformedArray
	}
	i = skipSpace(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		if checkEnd(arr, i+1) != nil {
			return ErrMalformedArray
		}
		return nil
	}
	for {
		end, err := skipValue(arr, i)
		if err != nil {
			return ErrMalformedArray
		}
		if err := fn(arr[i:end]); err != nil {
			return err
		}
		i = skipSpace(arr, end)
		if i >= len(arr) {
			return ErrMalformedArray
		}
		switch arr[i] {
		case ',':
			i = skipSpace(arr, i+1)
		case ']':
			if checkEnd(arr, i+1) != nil {
				return ErrMalformedArray
			}
			return nil
		default:
			return ErrMalformedArray
		}
	}
}

// ErrMalformedArray means a value given to Elements is not a JSON array.
var ErrMalformedArray = errors.New("jsonrpc: not a JSON array")

// keyEquals compares a quoted member name with name; only a name written
// with escapes is decoded.
func keyEquals(quoted []byte, name string) bool {
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	var key string
	return json.Unmarshal(quoted, &key) == nil && key == name
}

func checkEnd(obj []byte, i int) error {
	if skipSpace(obj, i) != len(obj) {
		return ErrMalformedObject
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i].
func skipString(b []byte, i int) (int, error) {
	if end := StringEnd(b, i); end >= 0 {
		return end, nil
	}
	return 0, ErrMalformedObject
}

// StringEnd returns the index after the JSON string that starts with the
// quote at b[i], or -1 if it does not end. It looks for quotes many bytes
// at a time and counts the backslashes before each: an odd number escapes
// it.
func StringEnd(b []byte, i int) int {
	// Most strings, member names among them, are short: their first bytes
	// are looked at one by one, before a search's set-up pays.
	for j := i + 1; j < len(b) && j <= i+16; j++ {
		switch b[j] {
		case '\\':
			return stringEndFrom(b, i, i+1)
		case '"':
			return j + 1
		}
	}
	return stringEndFrom(b, i, min(i+17, len(b)))
}

// stringEndFrom is StringEnd, the search starting at b[j].
func stringEndFrom(b []byte, i, j int) int {
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		q := j + k
		escapes := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			escapes++
		}
		if escapes%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
}

// skipValue returns the index after the value that starts at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, ErrMalformedObject
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, ErrMalformedObject
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return 0, ErrMalformedObject
	}
	return j, nil
}

// Marshal encodes v as encoding/json does, except that <, > and & are
// written as they are: messages are not HTML, and escaping them would grow
// what is forwarded.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// TakeInputKey returns the MetaInputKey a request's params carry and the
// params without it ("" and params unchanged when there is none). A _meta
// left empty is removed.
func TakeInputKey(params []byte) (string, []byte) {
	meta, ok, err := Member(params, "_meta")
	if err != nil || !ok {
		return "", params
	}
	raw, ok, err := Member(meta, MetaInputKey)
	if err != nil || !ok {
		return "", params
	}
	var key string
	if json.Unmarshal(raw, &key) != nil {
		return "", params
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(meta, &members) != nil {
		return "", params
	}
	delete(members, MetaInputKey)
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return "", params
	}
	if len(members) == 0 {
		delete(p, "_meta")
	} else if p["_meta"], err = Marshal(members); err != nil {
		return "", params
	}
	out, err := Marshal(p)
	if err != nil {
		return "", params
	}
	return key, out
}

// SetMetaMember returns params with one member of its _meta set, making
// params (from none or null) and _meta when missing. Every other byte is
// kept.
func SetMetaMember(params []byte, name string, value []byte) ([]byte, error) {
	if len(params) == 0 || string(params) == "null" {
		params = []byte("{}")
	}
	meta, ok, err := Member(params, "_meta")
	if err != nil {
		return nil, err
	}
	if !ok || string(meta) == "null" {
		meta = []byte("{}")
	}
	if meta, err = SetMember(meta, name, value); err != nil {
		return nil, err
	}
	return SetMember(params, "_meta", meta)
}
