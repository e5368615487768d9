package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// DigestPrefix starts every digest the trail writes.
const DigestPrefix = "sha256:"

// maxCanonicalDepth bounds the nesting Canonical follows, so hostile input
// cannot exhaust the stack; deeper documents digest as bytes.
const maxCanonicalDepth = 512

var errNotCanonicalizable = errors.New("audit: not canonicalizable JSON")

// Digest is "sha256:<hex>" of the canonical JSON of raw (RFC 8785 JCS:
// object members sorted by UTF-16 code units, no insignificant whitespace,
// numbers as ECMAScript's JSON.stringify writes them). Input that is not
// valid I-JSON (invalid syntax or UTF-8, duplicate member names, lone
// surrogates, numbers out of range, nesting deeper than 512) digests the
// bytes as they are.
func Digest(raw []byte) string {
	canonical, err := Canonical(raw)
	if err != nil {
		canonical = raw
	}
	sum := sha256.Sum256(canonical)
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// Canonical returns the RFC 8785 canonical form of a JSON text.
func Canonical(raw []byte) ([]byte, error) {
	p := canonicalizer{in: raw}
	p.skipSpace()
	out, err := p.value(nil, 0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return nil, errNotCanonicalizable
	}
	return out, nil
}

type canonicalizer struct {
	in  []byte
	pos int
}

func (p *canonicalizer) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *canonicalizer) value(out []byte, depth int) ([]byte, error) {
	if depth > maxCanonicalDepth || p.pos >= len(p.in) {
		return nil, errNotCanonicalizable
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		return p.object(out, depth)
	case c == '[':
		return p.array(out, depth)
	case c == '"':
		s, err := p.string()
		if err != nil {
			return nil, err
		}
		return appendCanonicalString(out, s), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(out)
	default:
		for _, literal := range []string{"true", "false", "null"} {
			if strings.HasPrefix(string(p.in[p.pos:min(len(p.in), p.pos+5)]), literal) {
				p.pos += len(literal)
				return append(out, literal...), nil
			}
		}
		return nil, errNotCanonicalizable
	}
}

type member struct {
	key   string
	utf16 []uint16
	value []byte
}

func (p *canonicalizer) object(out []byte, depth int) ([]byte, error) {
	p.pos++ // {
	var members []member
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		return append(out, "{}"...), nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return nil, errNotCanonicalizable
		}
		key, err := p.string()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return nil, errNotCanonicalizable
		}
		p.pos++
		p.skipSpace()
		value, err := p.value(nil, depth+1)
		if err != nil {
			return nil, err
		}
		members = append(members, member{key: key, utf16: utf16.Encode([]rune(key)), value: value})
		closed, err := p.separator('}')
		if err != nil {
			return nil, err
		}
		if closed {
			break
		}
	}
	slices.SortFunc(members, func(a, b member) int { return slices.Compare(a.utf16, b.utf16) })
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			if m.key == members[i-1].key {
				return nil, errNotCanonicalizable // I-JSON: member names are unique
			}
			out = append(out, ',')
		}
		out = appendCanonicalString(out, m.key)
		out = append(out, ':')
		out = append(out, m.value...)
	}
	return append(out, '}'), nil
}

func (p *canonicalizer) array(out []byte, depth int) ([]byte, error) {
	p.pos++ // [
	out = append(out, '[')
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		return append(out, ']'), nil
	}
	for first := true; ; first = false {
		if !first {
			out = append(out, ',')
		}
		p.skipSpace()
		var err error
		if out, err = p.value(out, depth+1); err != nil {
			return nil, err
		}
		closed, err := p.separator(']')
		if err != nil {
			return nil, err
		}
		if closed {
			return append(out, ']'), nil
		}
	}
}

// separator reads what follows a member or an element: a comma (more
// follow) or close (the object or array ends, closed is true).
func (p *canonicalizer) separator(close byte) (closed bool, err error) {
	p.skipSpace()
	if p.pos >= len(p.in) {
		return false, errNotCanonicalizable
	}
	switch p.in[p.pos] {
	case ',':
		p.pos++
		return false, nil
	case close:
		p.pos++
		return true, nil
	}
	return false, errNotCanonicalizable
}

// string decodes a JSON string at p.pos, requiring valid UTF-8 and no lone
// surrogates.
func (p *canonicalizer) string() (string, error) {
	p.pos++ // "
	var b strings.Builder
	for {
		if p.pos >= len(p.in) {
			return "", errNotCanonicalizable
		}
		c := p.in[p.pos]
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c < 0x20:
			return "", errNotCanonicalizable
		case c == '\\':
			r, err := p.escape()
			if err != nil {
				return "", err
			}
			b.WriteRune(r)
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.in[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", errNotCanonicalizable
			}
			b.WriteRune(r)
			p.pos += size
		}
	}
}

func (p *canonicalizer) escape() (rune, error) {
	if p.pos+1 >= len(p.in) {
		return 0, errNotCanonicalizable
	}
	c := p.in[p.pos+1]
	p.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, err := p.hex4()
		if err != nil {
			return 0, err
		}
		if !utf16.IsSurrogate(r) {
			return r, nil
		}
		if r >= 0xDC00 || p.pos+1 >= len(p.in) || p.in[p.pos] != '\\' || p.in[p.pos+1] != 'u' {
			return 0, errNotCanonicalizable
		}
		p.pos += 2
		low, err := p.hex4()
		if err != nil {
			return 0, err
		}
		combined := utf16.DecodeRune(r, low)
		if combined == utf8.RuneError {
			return 0, errNotCanonicalizable
		}
		return combined, nil
	default:
		return 0, errNotCanonicalizable
	}
}

func (p *canonicalizer) hex4() (rune, error) {
	if p.pos+4 > len(p.in) {
		return 0, errNotCanonicalizable
	}
	v, err := strconv.ParseUint(string(p.in[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, errNotCanonicalizable
	}
	p.pos += 4
	return rune(v), nil
}

// number checks the JSON number grammar and writes the number as
// ECMAScript's Number.prototype.toString does.
func (p *canonicalizer) number(out []byte) ([]byte, error) {
	start := p.pos
	digits := func() int {
		n := 0
		for p.pos < len(p.in) && p.in[p.pos] >= '0' && p.in[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.in[p.pos] == '-' {
		p.pos++
	}
	intStart := p.pos
	if n := digits(); n == 0 || (n > 1 && p.in[intStart] == '0') {
		return nil, errNotCanonicalizable
	}
	if p.pos < len(p.in) && p.in[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return nil, errNotCanonicalizable
		}
	}
	if p.pos < len(p.in) && (p.in[p.pos] == 'e' || p.in[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.in) && (p.in[p.pos] == '+' || p.in[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, errNotCanonicalizable
		}
	}
	f, err := strconv.ParseFloat(string(p.in[start:p.pos]), 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, errNotCanonicalizable
	}
	return appendECMAScriptNumber(out, f), nil
}

// appendECMAScriptNumber writes f as ECMAScript's Number.prototype.toString:
// the shortest round-tripping digits, plain notation for 1e-6 <= |f| < 1e21,
// otherwise exponent notation without a leading zero in the exponent; -0 is 0.
func appendECMAScriptNumber(out []byte, f float64) []byte {
	if f == 0 {
		return append(out, '0')
	}
	if f < 0 {
		out = append(out, '-')
		f = -f
	}
	format := byte('e')
	if f >= 1e-6 && f < 1e21 {
		format = 'f'
	}
	start := len(out)
	out = strconv.AppendFloat(out, f, format, -1, 64)
	if e := bytes.IndexByte(out[start:], 'e'); e > 0 {
		e += start
		if out[e+2] == '0' { // Go writes e-07, ECMAScript e-7
			out = append(out[:e+2], out[e+3:]...)
		}
	}
	return out
}

// appendCanonicalString writes s as RFC 8785 §3.2.2.2 does: only '"', '\\'
// and control characters are escaped, the short forms where they exist.
func appendCanonicalString(out []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c >= 0x20:
			out = append(out, c)
		case c == '\b':
			out = append(out, '\\', 'b')
		case c == '\t':
			out = append(out, '\\', 't')
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\f':
			out = append(out, '\\', 'f')
		case c == '\r':
			out = append(out, '\\', 'r')
		default:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
	}
	return append(out, '"')
}
