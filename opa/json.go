package opa

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// jsonValue converts one JSON document straight to an AST value, without
// the map[string]any that encoding/json followed by ast.InterfaceToValue
// would build and throw away per call. It accepts exactly what json.Unmarshal
// accepts (FuzzJSONValue checks), decodes strings the same way, keeps
// numbers exact as OPA does, and lets a repeated key's last value win.
func jsonValue(data []byte) (ast.Value, error) {
	var b builder
	t, err := b.json(data)
	if err != nil {
		return nil, err
	}
	return t.Value, nil
}

// json is jsonValue with the builder's slabs.
func (b *builder) json(data []byte) (*ast.Term, error) {
	// One copy of the document; strings and numbers are slices of it.
	d := jsonDecoder{builder: b, data: data, text: string(data)}
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("data after the value")
	}
	return b.term(v), nil
}

// maxJSONDepth matches encoding/json's nesting limit.
const maxJSONDepth = 10000

type jsonDecoder struct {
	*builder
	data []byte
	text string // data as a string, to slice without copying
	pos  int
}

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (ast.Value, error) {
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		if depth >= maxJSONDepth {
			return nil, d.errorf("nested too deeply")
		}
		return d.object(depth + 1)
	case c == '[':
		if depth >= maxJSONDepth {
			return nil, d.errorf("nested too deeply")
		}
		return d.array(depth + 1)
	case c == '"':
		s, err := d.string()
		if err != nil {
			return nil, err
		}
		return ast.String(s), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return d.literal("true", ast.Boolean(true))
	case c == 'f':
		return d.literal("false", ast.Boolean(false))
	case c == 'n':
		return d.literal("null", ast.NullValue)
	default:
		return nil, d.errorf("unexpected %q", c)
	}
}

func (d *jsonDecoder) literal(word string, v ast.Value) (ast.Value, error) {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return nil, d.errorf("expected %s", word)
	}
	d.pos += len(word)
	return v, nil
}

func (d *jsonDecoder) object(depth int) (ast.Value, error) {
	d.pos++                   // {
	var small [8][2]*ast.Term // most arguments objects are small
	members := objectItems{items: small[:0]}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return ast.NewObject(), nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("expected a key")
		}
		key, err := d.string()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("expected ':'")
		}
		d.pos++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		members.set(d.builder, key, d.term(v))
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end in object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return ast.NewObject(members.items...), nil
		default:
			return nil, d.errorf("expected ',' or '}'")
		}
	}
}

// objectItems collects an object's members; a repeated key replaces the
// earlier value as in json.Unmarshal (ast.NewObject would keep both).
type objectItems struct {
	items [][2]*ast.Term
	index map[string]int // once the object is too big to scan
}

const scanLimit = 16

func (o *objectItems) set(b *builder, key string, value *ast.Term) {
	if o.index == nil {
		for i := range o.items {
			if string(o.items[i][0].Value.(ast.String)) == key {
				o.items[i][1] = value
				return
			}
		}
		o.items = append(o.items, item(b.str(key), value))
		if len(o.items) == scanLimit {
			o.index = make(map[string]int, 2*scanLimit)
			for i, kv := range o.items {
				o.index[string(kv[0].Value.(ast.String))] = i
			}
		}
		return
	}
	if i, ok := o.index[key]; ok {
		o.items[i][1] = value
		return
	}
	o.index[key] = len(o.items)
	o.items = append(o.items, item(b.str(key), value))
}

func (d *jsonDecoder) array(depth int) (ast.Value, error) {
	d.pos++ // [
	var elems []*ast.Term
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return ast.NewArray(), nil
	}
	for {
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		elems = append(elems, d.term(v))
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end in array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return ast.NewArray(elems...), nil
		default:
			return nil, d.errorf("expected ',' or ']'")
		}
	}
}

// string reads a quoted string. Valid UTF-8 without escapes is sliced as
// is; anything else goes through encoding/json, so escapes, invalid UTF-8
// and lone surrogates decode exactly as json.Unmarshal decodes them.
func (d *jsonDecoder) string() (string, error) {
	start := d.pos
	d.pos++ // "
	escaped, high := false, false
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			raw := d.data[start+1 : d.pos-1]
			if !escaped && (!high || utf8.Valid(raw)) {
				return d.text[start+1 : d.pos-1], nil
			}
			var s string
			if err := json.Unmarshal(d.data[start:d.pos], &s); err != nil {
				return "", d.errorf("%v", err)
			}
			return s, nil
		case c == '\\':
			escaped = true
			d.pos += 2 // the escaped byte cannot end the string
		case c < 0x20:
			return "", d.errorf("control character in string")
		default:
			high = high || c >= 0x80
			d.pos++
		}
	}
	d.pos = len(d.data)
	return "", d.errorf("unterminated string")
}

// number reads a JSON number and keeps its text, as OPA does for
// json.Number, so large integers and decimals stay exact.
func (d *jsonDecoder) number() (ast.Value, error) {
	start := d.pos
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case digits() == 0:
		return nil, d.errorf("expected a digit")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			return nil, d.errorf("expected a digit after '.'")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return nil, d.errorf("expected a digit in the exponent")
		}
	}
	v, err := ast.InterfaceToValue(json.Number(d.text[start:d.pos]))
	if err != nil {
		return nil, errors.Join(d.errorf("number"), err)
	}
	return v, nil
}
