package pins

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// pinnedMembers are the members of a definition a pin covers, by kind.
var pinnedMembers = map[Kind][]string{
	KindTool:             {"name", "title", "description", "inputSchema", "outputSchema", "annotations"},
	KindPrompt:           {"name", "title", "description", "arguments"},
	KindResourceTemplate: {"uriTemplate", "name", "title", "description", "mimeType"},
}

// nameMember is the member that names a definition of each kind.
func nameMember(kind Kind) string {
	if kind == KindResourceTemplate {
		return "uriTemplate"
	}
	return "name"
}

// Canonical returns a definition's canonical form and the hex SHA-256 of
// that form: the members a pin covers (the others, such as icons and
// _meta, are left out: they are presentation and extension data, not what
// a model reads or a call is checked against), written as RFC 8785 (JSON
// Canonicalization Scheme) asks — members sorted by their UTF-16 code
// units, no whitespace, strings with only the escapes JSON requires,
// numbers as ECMAScript prints them.
//
// Limitations: numbers are IEEE 754 doubles, as RFC 8785 has them, so
// integers beyond 2^53 that differ only past a double's precision hash
// alike; invalid UTF-8 and lone surrogates are written as U+FFFD (Hygiene
// refuses such definitions before anything is pinned). A definition that
// names a member twice has no canonical form: readers disagree on which
// of the two counts.
func Canonical(kind Kind, raw []byte) (canonical []byte, hash string, err error) {
	_, canonical, hash, err = canonicalize(kind, raw)
	return canonical, hash, err
}

// canonicalize is Canonical that also returns the definition's name (a
// template's URI template).
func canonicalize(kind Kind, raw []byte) (name string, canonical []byte, hash string, err error) {
	members, ok := pinnedMembers[kind]
	if !ok {
		return "", nil, "", fmt.Errorf("pins: unknown kind %q", kind)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			err = nil
		} else if err == nil {
			err = errors.New("data after the object")
		}
	}
	if err != nil {
		return "", nil, "", fmt.Errorf("pins: definition is not JSON: %w", err)
	}
	def, ok := v.(map[string]any)
	if !ok {
		return "", nil, "", errors.New("pins: definition is not a JSON object")
	}
	name, _ = def[nameMember(kind)].(string)
	kept := make(map[string]any, len(members))
	for _, m := range members {
		if v, ok := def[m]; ok {
			kept[m] = v
		}
	}
	var b bytes.Buffer
	if err := writeCanonical(&b, kept); err != nil {
		return name, nil, "", err
	}
	sum := sha256.Sum256(b.Bytes())
	return name, b.Bytes(), hex.EncodeToString(sum[:]), nil
}

// decodeValue decodes one JSON value as encoding/json would into an any
// (numbers as json.Number), refusing objects that name a member twice.
func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested more than %d deep", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := make(map[string]any)
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key := t.(string) // the decoder allows nothing else here
			if _, dup := obj[key]; dup {
				return nil, fmt.Errorf("member %q appears twice", key)
			}
			if obj[key], err = decodeValue(dec, depth+1); err != nil {
				return nil, err
			}
		}
		_, err := dec.Token() // }
		return obj, err
	case json.Delim('['):
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := dec.Token() // ]
		return arr, err
	}
	return tok, nil
}

func writeCanonical(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case string:
		writeString(b, v)
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("pins: number %s out of range", v)
		}
		b.WriteString(formatNumber(f))
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonical(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			if err := writeCanonical(b, v[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return errors.New("pins: unexpected JSON value")
	}
	return nil
}

// compareUTF16 orders member names by their UTF-16 code units, as RFC 8785
// asks.
func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

// writeString escapes only what JSON requires, with lowercase hex.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// formatNumber prints f as ECMAScript's Number.prototype.toString does:
// plain decimals from 1e-6 up to 1e21 without an exponent, others in
// shortest exponent form ("1e+21", "1e-7").
func formatNumber(f float64) string {
	if f == 0 {
		return "0" // -0 too
	}
	abs := math.Abs(f)
	if abs >= 1e-6 && abs < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // 1e+21, 1.5e-07
	mantissa, exp, _ := strings.Cut(s, "e")
	sign := exp[0]
	exp = strings.TrimLeft(exp[1:], "0")
	return mantissa + "e" + string(sign) + exp
}
