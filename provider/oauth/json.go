package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting in untrusted JSON (token headers and claims,
// introspection responses).
const maxJSONDepth = 32

var (
	errNotObject     = errors.New("not a json object")
	errDuplicateKey  = errors.New("duplicate member name")
	errInvalidUTF8   = errors.New("invalid utf-8")
	errTooDeep       = errors.New("json nested too deeply")
	errTrailingBytes = errors.New("data after the json object")
)

// DecodeObject decodes a JSON object strictly: valid UTF-8, no duplicate
// member names at any depth (RFC 7515 §4 and RFC 7519 §4 let a parser
// reject them, and two parsers that disagree about which copy wins is how
// signature checks get bypassed), no trailing data. Numbers become float64,
// as encoding/json does for any.
func DecodeObject(data []byte) (map[string]any, error) {
	if !utf8.Valid(data) {
		return nil, errInvalidUTF8
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	token, err := decoder.Token()
	if err != nil {
		return nil, err
	}
	if token != json.Delim('{') {
		return nil, errNotObject
	}
	object, err := decodeMembers(decoder, 1)
	if err != nil {
		return nil, err
	}
	if _, err := decoder.Token(); err != io.EOF {
		return nil, errTrailingBytes
	}
	return object, nil
}

func decodeMembers(decoder *json.Decoder, depth int) (map[string]any, error) {
	if depth > maxJSONDepth {
		return nil, errTooDeep
	}
	object := make(map[string]any)
	for decoder.More() {
		token, err := decoder.Token()
		if err != nil {
			return nil, err
		}
		name, ok := token.(string)
		if !ok {
			return nil, errNotObject
		}
		if _, seen := object[name]; seen {
			return nil, errDuplicateKey
		}
		value, err := decodeValue(decoder, depth)
		if err != nil {
			return nil, err
		}
		object[name] = value
	}
	if _, err := decoder.Token(); err != nil { // the closing brace
		return nil, err
	}
	return object, nil
}

func decodeValue(decoder *json.Decoder, depth int) (any, error) {
	token, err := decoder.Token()
	if err != nil {
		return nil, err
	}
	switch token {
	case json.Delim('{'):
		return decodeMembers(decoder, depth+1)
	case json.Delim('['):
		if depth+1 > maxJSONDepth {
			return nil, errTooDeep
		}
		array := []any{}
		for decoder.More() {
			value, err := decodeValue(decoder, depth+1)
			if err != nil {
				return nil, err
			}
			array = append(array, value)
		}
		if _, err := decoder.Token(); err != nil { // the closing bracket
			return nil, err
		}
		return array, nil
	}
	return token, nil // string, float64, bool or nil
}
