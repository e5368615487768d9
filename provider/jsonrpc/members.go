package jsonrpc

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrAmbiguousMembers means an object holds two member names that some
// JSON decoder would take for the same field.
var ErrAmbiguousMembers = errors.New("an object has member names that differ only in case or repeat")

// CheckMembers rejects a value in which any object holds two member names
// that are equal, or equal under Unicode case folding ("name" and "Name",
// "s" and "ſ", "k" and the Kelvin sign). Decoders disagree on such input:
// Go's encoding/json matches names case-insensitively and the last match
// wins, others match exactly. A gateway that reads one member while an
// upstream reads the other lets a request say one thing to the policy and
// another to the tool, so such requests are refused outright.
func CheckMembers(data []byte) error {
	i := skipSpace(data, 0)
	if i == len(data) {
		return nil
	}
	_, err := checkMembers(data, i, 0)
	return err
}

// checkMembers checks the value that starts at b[i] and returns the index
// after it. It reads the bytes in place: no token is allocated, and an
// object's names are compared as they are written unless one of them is
// not plain ASCII.
func checkMembers(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errTooDeep
	}
	if i >= len(b) {
		return 0, ErrMalformedObject
	}
	switch b[i] {
	case '{':
		var names memberNames
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return 0, ErrMalformedObject
			}
			end, err := skipString(b, i)
			if err != nil {
				return 0, err
			}
			if err := names.add(b[i+1 : end-1]); err != nil {
				return 0, err
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return 0, ErrMalformedObject
			}
			if i, err = checkMembers(b, skipSpace(b, i+1), depth+1); err != nil {
				return 0, err
			}
			i = skipSpace(b, i)
			switch {
			case i < len(b) && b[i] == ',':
				i = skipSpace(b, i+1)
			case i < len(b) && b[i] == '}':
				return i + 1, nil
			default:
				return 0, ErrMalformedObject
			}
		}
	case '[':
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = checkMembers(b, i, depth+1); err != nil {
				return 0, err
			}
			i = skipSpace(b, i)
			switch {
			case i < len(b) && b[i] == ',':
				i = skipSpace(b, i+1)
			case i < len(b) && b[i] == ']':
				return i + 1, nil
			default:
				return 0, ErrMalformedObject
			}
		}
	}
	return skipValue(b, i)
}

// memberNames are the names of one object seen so far: written names
// while there are few, compared ASCII case-insensitively when both are
// plain ASCII (the fold of an ASCII letter is its upper case); folded
// names in a set past that, or for names with escapes or other runes.
type memberNames struct {
	small  [16][]byte
	n      int
	folded map[string]struct{}
}

func (m *memberNames) add(raw []byte) error {
	if m.folded == nil && m.n < len(m.small) && plainASCII(raw) {
		for _, seen := range m.small[:m.n] {
			if len(seen) == len(raw) && equalFoldASCII(seen, raw) {
				return ErrAmbiguousMembers
			}
		}
		m.small[m.n] = raw
		m.n++
		return nil
	}
	if m.folded == nil {
		m.folded = make(map[string]struct{}, 2*len(m.small))
		for _, seen := range m.small[:m.n] {
			m.folded[strings.ToUpper(string(seen))] = struct{}{}
		}
	}
	var name string
	if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &name); err != nil {
		return ErrMalformedObject
	}
	key := foldKey(name)
	if _, dup := m.folded[key]; dup {
		return ErrAmbiguousMembers
	}
	m.folded[key] = struct{}{}
	return nil
}

// plainASCII reports a written name of ASCII characters without escapes.
func plainASCII(raw []byte) bool {
	for _, c := range raw {
		if c >= utf8.RuneSelf || c == '\\' {
			return false
		}
	}
	return true
}

func equalFoldASCII(a, b []byte) bool {
	for i := range a {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// foldKey maps every rune to the smallest rune of its case-folding orbit,
// so names equal under simple folding map to the same key.
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// The smallest rune of an ASCII letter's orbit is its upper case.
		return strings.ToUpper(s)
	}
	out := make([]rune, 0, len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < least {
				least = f
			}
		}
		out = append(out, least)
	}
	return string(out)
}
