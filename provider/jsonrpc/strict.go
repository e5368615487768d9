package jsonrpc

import (
	"bytes"
	"errors"

	sjson "github.com/segmentio/encoding/json"
)

// maxDepth bounds the nesting of a message; real MCP messages nest a few
// levels.
const maxDepth = 512

var (
	errTooDeep      = errors.New("json: nested too deep")
	errTrailingData = errors.New("json: trailing data after the value")
)

// Unmarshal decodes like encoding/json but matches member names exactly.
// encoding/json would also accept "Method" or "NAME" for a field, so the
// broker could read one member while an upstream, which matches exactly,
// reads another: a parser differential that lets a request say one thing
// to the policy and another to the tool. Duplicate members: the last wins,
// as in the SDKs.
func Unmarshal(data []byte, v any) error {
	if err := checkDepth(data); err != nil {
		return err
	}
	rest, err := sjson.Parse(data, v, sjson.DontMatchCaseInsensitiveStructFields)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return errTrailingData
	}
	return nil
}

// checkDepth rejects input nested deeper than maxDepth, in one pass that
// skips the contents of strings.
func checkDepth(data []byte) error {
	depth, inString, escaped := 0, false, false
	for _, b := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
			if depth > maxDepth {
				return errTooDeep
			}
		case b == '}' || b == ']':
			depth--
		}
	}
	return nil
}
