package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return checkValue(dec, 0)
}

func checkValue(dec *json.Decoder, depth int) error {
	if depth > maxDepth {
		return errTooDeep
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil
		}
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		seen := make(map[string]struct{})
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := keyTok.(string)
			folded := foldKey(key)
			if _, dup := seen[folded]; dup {
				return ErrAmbiguousMembers
			}
			seen[folded] = struct{}{}
			if err := checkValue(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case '[':
		for dec.More() {
			if err := checkValue(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
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
