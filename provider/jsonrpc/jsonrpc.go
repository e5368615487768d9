// Package jsonrpc is the JSON-RPC 2.0 message model of MCP: decoding that
// checks only what routing needs, and encoding that appends to a buffer.
package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Standard and MCP error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeResourceNotFound is MCP's code for an unknown resource URI.
	CodeResourceNotFound = -32002
	// CodeServerError is used for upstream failures (unreachable, timed out).
	CodeServerError = -32000
)

// Limits on what a message may carry in its envelope. Ids and method names
// are echoed into answers and kept in maps while a request is in flight, so
// they must not be a way to make the broker hold or send large values.
const (
	MaxIDBytes     = 256
	MaxMethodBytes = 256
)

// Kind says what a message is.
type Kind uint8

const (
	KindInvalid Kind = iota
	KindRequest
	KindNotification
	KindResponse
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResponse:
		return "response"
	}
	return "invalid"
}

// Message is one JSON-RPC 2.0 message. Params, Result and ID are kept as raw
// JSON so the broker forwards exactly what it received.
type Message struct {
	ID     ID
	Method string
	Params json.RawMessage
	Result json.RawMessage
	Error  *Error
}

// Kind classifies the message.
func (m *Message) Kind() Kind {
	switch {
	case m.Method != "" && m.ID.IsValid():
		return KindRequest
	case m.Method != "":
		return KindNotification
	case m.ID.IsValid() || m.Error != nil:
		return KindResponse
	}
	return KindInvalid
}

// Error is a JSON-RPC error object.
type Error struct {
	Code    int64           `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("jsonrpc error %d: %s", e.Code, e.Message)
}

// NewError builds an error object.
func NewError(code int64, message string) *Error {
	return &Error{Code: code, Message: message}
}

// Errorf builds an error object with a formatted message.
func Errorf(code int64, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ID is a request id: a JSON string or integer, kept as its raw encoding.
// The zero ID is absent.
type ID struct{ raw string }

// Int64ID returns an integer id.
func Int64ID(n int64) ID { return ID{raw: strconv.FormatInt(n, 10)} }

// StringID returns a string id.
func StringID(s string) ID {
	b, _ := json.Marshal(s)
	return ID{raw: string(b)}
}

// IsValid reports whether the id is present.
func (id ID) IsValid() bool { return id.raw != "" }

// Raw is the id's JSON encoding; it is also a stable map key.
func (id ID) Raw() string { return id.raw }

// Int64 returns the id as an integer when it is one.
func (id ID) Int64() (int64, bool) {
	if id.raw == "" || id.raw[0] == '"' {
		return 0, false
	}
	n, err := strconv.ParseInt(id.raw, 10, 64)
	return n, err == nil
}

func (id ID) String() string { return id.raw }

// parseID checks that raw is a string or an integer; null, fractions,
// booleans, objects and arrays are not ids.
func parseID(raw json.RawMessage) (ID, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ID{}, nil
	}
	if len(raw) > MaxIDBytes {
		return ID{}, fmt.Errorf("id: longer than %d bytes", MaxIDBytes)
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return ID{}, errors.New("id: invalid string")
		}
		return ID{raw: string(raw)}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return ID{}, errors.New("id: must be a string or an integer")
		}
		return Int64ID(n), nil
	case c == 'n':
		return ID{}, errors.New("id: must not be null")
	}
	return ID{}, errors.New("id: must be a string or an integer")
}

// wire is the decoding shape; presence of fields matters, so they stay raw.
type wire struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// DecodeError describes a message that is not valid JSON-RPC. ID is set
// when the id could be read, so the error response can carry it.
type DecodeError struct {
	Code    int64
	Message string
	ID      ID
}

func (e *DecodeError) Error() string { return e.Message }

// Decode parses one message.
func Decode(data []byte) (*Message, error) {
	if !utf8.Valid(data) {
		// Forwarded bytes must be valid JSON text for every receiver.
		return nil, &DecodeError{Code: CodeParseError, Message: "parse error: invalid UTF-8"}
	}
	var w wire
	if err := Unmarshal(data, &w); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || !json.Valid(data) {
			return nil, &DecodeError{Code: CodeParseError, Message: "parse error: invalid JSON"}
		}
		return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid request: " + typeMessage(err)}
	}
	return fromWire(&w)
}

func typeMessage(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field != "" {
			return typeErr.Field + " has the wrong type"
		}
		return "not a JSON object"
	}
	return "malformed message"
}

func fromWire(w *wire) (*Message, error) {
	id, idErr := parseID(w.ID)
	if idErr != nil && w.Method == nil && w.Result == nil && w.Error != nil && bytes.Equal(bytes.TrimSpace(w.ID), []byte("null")) {
		// An error response to a message whose id could not be read.
		idErr = nil
	}
	if w.JSONRPC != "2.0" {
		return nil, &DecodeError{Code: CodeInvalidRequest, Message: `invalid request: jsonrpc must be "2.0"`, ID: id}
	}
	if idErr != nil {
		return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid request: " + idErr.Error()}
	}
	m := &Message{ID: id}
	if w.Method != nil {
		if *w.Method == "" {
			return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid request: method must not be empty", ID: id}
		}
		if len(*w.Method) > MaxMethodBytes {
			return nil, &DecodeError{Code: CodeInvalidRequest, Message: fmt.Sprintf("invalid request: method longer than %d bytes", MaxMethodBytes), ID: id}
		}
		if w.Result != nil || w.Error != nil {
			return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid request: a request has no result or error", ID: id}
		}
		m.Method = *w.Method
		if p := bytes.TrimSpace(w.Params); len(p) > 0 {
			if p[0] != '{' && p[0] != '[' {
				return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid request: params must be an object or an array", ID: id}
			}
			m.Params = w.Params
		}
		return m, nil
	}
	switch {
	case w.Result != nil && w.Error != nil:
		return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid response: both result and error", ID: id}
	case w.Result != nil:
		if !id.IsValid() {
			return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid response: missing id"}
		}
		m.Result = w.Result
	case w.Error != nil:
		var e Error
		if err := Unmarshal(w.Error, &e); err != nil {
			return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid response: malformed error object", ID: id}
		}
		m.Error = &e
	default:
		return nil, &DecodeError{Code: CodeInvalidRequest, Message: "invalid request: missing method", ID: id}
	}
	return m, nil
}

// DecodeBatch parses a request body: one message, or an array of messages
// (batch reports which). An element that fails to decode is returned as nil
// in msgs with its error at the same index of errs. A batch of more than
// max messages is refused whole (max <= 0: no limit), before any element
// is decoded.
func DecodeBatch(data []byte, max int) (msgs []*Message, errs []error, batch bool, err error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil, false, &DecodeError{Code: CodeParseError, Message: "parse error: empty body"}
	}
	if data[0] != '[' {
		m, err := Decode(data)
		if err != nil {
			return nil, nil, false, err
		}
		return []*Message{m}, []error{nil}, false, nil
	}
	var raws []json.RawMessage
	if err := Unmarshal(data, &raws); err != nil {
		return nil, nil, true, &DecodeError{Code: CodeParseError, Message: "parse error: invalid JSON"}
	}
	if len(raws) == 0 {
		return nil, nil, true, &DecodeError{Code: CodeInvalidRequest, Message: "invalid request: empty batch"}
	}
	if max > 0 && len(raws) > max {
		return nil, nil, true, &DecodeError{Code: CodeInvalidRequest, Message: fmt.Sprintf("invalid request: a batch may hold at most %d messages", max)}
	}
	msgs = make([]*Message, len(raws))
	errs = make([]error, len(raws))
	for i, raw := range raws {
		msgs[i], errs[i] = Decode(raw)
	}
	return msgs, errs, true, nil
}

// Append appends the message's JSON encoding to buf. Raw fields are written
// as they are: they came from a decoder or from json.Marshal.
func (m *Message) Append(buf []byte) []byte {
	buf = append(buf, `{"jsonrpc":"2.0"`...)
	if m.ID.IsValid() {
		buf = append(buf, `,"id":`...)
		buf = append(buf, m.ID.raw...)
	} else if m.Method == "" {
		// Responses always carry an id; null when it could not be read.
		buf = append(buf, `,"id":null`...)
	}
	if m.Method != "" {
		buf = append(buf, `,"method":`...)
		buf = appendString(buf, m.Method)
		if len(m.Params) > 0 {
			buf = append(buf, `,"params":`...)
			buf = append(buf, m.Params...)
		}
	} else if m.Error != nil {
		buf = append(buf, `,"error":{"code":`...)
		buf = strconv.AppendInt(buf, m.Error.Code, 10)
		buf = append(buf, `,"message":`...)
		buf = appendString(buf, m.Error.Message)
		if len(m.Error.Data) > 0 {
			buf = append(buf, `,"data":`...)
			buf = append(buf, m.Error.Data...)
		}
		buf = append(buf, '}')
	} else {
		buf = append(buf, `,"result":`...)
		if len(m.Result) == 0 {
			buf = append(buf, "{}"...)
		} else {
			buf = append(buf, m.Result...)
		}
	}
	return append(buf, '}')
}

// Encode returns the message's JSON encoding.
func (m *Message) Encode() []byte { return m.Append(make([]byte, 0, 64+len(m.Params)+len(m.Result))) }

// MarshalJSON lets messages nest in other encodings.
func (m *Message) MarshalJSON() ([]byte, error) { return m.Encode(), nil }

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// NewRequest builds a request with params marshaled from v.
func NewRequest(id ID, method string, params any) (*Message, error) {
	m := &Message{ID: id, Method: method}
	if params != nil {
		raw, err := Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("jsonrpc: marshal params of %s: %w", method, err)
		}
		m.Params = raw
	}
	return m, nil
}

// NewNotification builds a notification with params marshaled from v.
func NewNotification(method string, params any) (*Message, error) {
	return NewRequest(ID{}, method, params)
}

// NewResult builds a success response with result marshaled from v.
func NewResult(id ID, result any) (*Message, error) {
	raw, err := Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("jsonrpc: marshal result: %w", err)
	}
	return &Message{ID: id, Result: raw}, nil
}

// NewErrorResponse builds an error response.
func NewErrorResponse(id ID, err *Error) *Message {
	return &Message{ID: id, Error: err}
}
