package pins

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits bound a definition's size, in bytes as the upstream wrote it;
// zero takes the default. The defaults leave room for the longest
// definitions of real servers (a description of a few paragraphs, a schema
// of a few hundred properties) and stop one from filling a model's context.
type Limits struct {
	MaxDescriptionBytes int // the description member (8 KiB)
	MaxSchemaBytes      int // a tool's inputSchema and outputSchema, each (64 KiB)
	MaxDefinitionBytes  int // the whole definition as listed (128 KiB)
}

// DefaultLimits are the limits of a zero Limits.
func DefaultLimits() Limits {
	return Limits{MaxDescriptionBytes: 8 << 10, MaxSchemaBytes: 64 << 10, MaxDefinitionBytes: 128 << 10}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxDescriptionBytes <= 0 {
		l.MaxDescriptionBytes = d.MaxDescriptionBytes
	}
	if l.MaxSchemaBytes <= 0 {
		l.MaxSchemaBytes = d.MaxSchemaBytes
	}
	if l.MaxDefinitionBytes <= 0 {
		l.MaxDefinitionBytes = d.MaxDefinitionBytes
	}
	return l
}

// Problem is one reason a definition is not clean.
type Problem struct {
	Path   string // JSON pointer into the definition; "" for all of it
	Reason string
}

// maxProblems bounds what one definition reports.
const maxProblems = 20

// maxDepth bounds how deeply a definition may nest; no schema a model can
// use comes near it.
const maxDepth = 512

// Hygiene reports what makes a definition unfit to show a model: any
// string, member names included and wherever it is (descriptions, titles,
// schema properties, enum values, _meta), holding characters a reviewer
// does not see or that change how the text around them reads — the
// Unicode tag block, zero-width characters, bidirectional controls, C0
// controls other than tab and line feed, DEL and C1 controls — as well as
// invalid UTF-8, lone surrogates, malformed JSON and sizes over the
// limits. Escapes count as what they spell: "\u200b" is a zero-width
// space.
//
// A zero-width joiner between two emoji (👩‍💻) is part of the emoji
// and allowed. Elsewhere it is refused, as is the zero-width non-joiner:
// scripts that need them to shape text (Persian, several Indic scripts)
// have their definitions refused in enforce mode; warn mode serves them.
//
// Carriage return is refused too: descriptions are shown in terminals
// and logs, where a bare CR returns to the start of the line and the text
// after it hides the text before it. Line feed alone ends lines.
//
// At most one problem is reported per string and maxProblems per
// definition, in the order they occur. A clean definition costs one pass
// over its bytes and no allocation: Hygiene runs on every listed item.
func Hygiene(kind Kind, raw []byte, limits Limits) []Problem {
	limits = limits.withDefaults()
	s := scanner{data: raw, kind: kind, limits: limits}
	s.scan()
	var problems []Problem
	if len(raw) > limits.MaxDefinitionBytes {
		problems = append(problems, Problem{Reason: fmt.Sprintf("the definition is %d bytes, more than %d", len(raw), limits.MaxDefinitionBytes)})
	}
	for _, m := range s.oversized[:s.numOversized] {
		problems = append(problems, Problem{Path: "/" + m.member, Reason: fmt.Sprintf("%d bytes, more than %d", m.size, m.limit)})
	}
	if s.dirty {
		// Again, now building the paths of what is found.
		again := scanner{data: raw, kind: kind, limits: limits, track: true, problems: problems}
		again.scan()
		problems = again.problems
	}
	if s.syntax != "" {
		problems = append(problems, Problem{Reason: s.syntax})
	}
	return problems
}

// refused names the class of a character a definition may not hold; ""
// for any other.
func refused(r rune) string {
	switch {
	case r >= 0xE0000 && r <= 0xE007F:
		return "Unicode tag"
	case r >= 0x200B && r <= 0x200D, r == 0x2060, r == 0xFEFF, r == 0x180E:
		return "zero-width"
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069, r == 0x200E, r == 0x200F, r == 0x061C:
		return "bidirectional control"
	case r < 0x20 && r != '\t' && r != '\n':
		return "control character"
	case r == 0x7F, r >= 0x80 && r <= 0x9F:
		return "control character"
	}
	return ""
}

// emoji reports whether r is an emoji, or a character that ends one
// (a skin tone, the emoji presentation selector), that a zero-width joiner
// may follow or precede in an emoji sequence.
func emoji(r rune) bool {
	switch {
	case r >= 0x1F000 && r <= 0x1FAFF, // pictographs, emoticons, symbols, skin tones
		r >= 0x2600 && r <= 0x27BF, // miscellaneous symbols, dingbats
		r >= 0x2300 && r <= 0x23FF, r >= 0x2B00 && r <= 0x2BFF,
		r == 0xFE0F, r == 0x20E3:
		return true
	}
	return false
}

type oversized struct {
	member      string
	size, limit int
}

// scanner walks a definition's JSON once, decoding every string (escapes
// included) and checking each character. Without track it only notes
// that something is wrong (dirty), allocating nothing; with track it
// records each problem with its JSON pointer.
type scanner struct {
	data   []byte
	pos    int
	kind   Kind
	limits Limits

	dirty        bool
	syntax       string // why data is not JSON; "" when it is
	oversized    [3]oversized
	numOversized int

	track    bool
	path     []string // JSON pointer segments, escaped; with track only
	problems []Problem
}

func (s *scanner) scan() {
	s.space()
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		s.fail("the definition is not a JSON object")
		return
	}
	if !s.value(0) {
		return
	}
	s.space()
	if s.pos < len(s.data) {
		s.fail(fmt.Sprintf("not JSON: data after the object at byte %d", s.pos))
	}
}

func (s *scanner) fail(reason string) {
	if s.syntax == "" {
		s.syntax = reason
	}
}

func (s *scanner) failAt(what string) bool {
	s.fail(fmt.Sprintf("not JSON: %s at byte %d", what, s.pos))
	return false
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value reads one JSON value; false when data is not JSON.
func (s *scanner) value(depth int) bool {
	if depth > maxDepth {
		s.fail(fmt.Sprintf("nested more than %d deep", maxDepth))
		return false
	}
	s.space()
	if s.pos >= len(s.data) {
		return s.failAt("unexpected end")
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, ok := s.str(false, nil)
		return ok
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return s.failAt("unexpected character")
}

func (s *scanner) literal(word string) bool {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.failAt("unexpected character")
	}
	s.pos += len(word)
	return true
}

func (s *scanner) number() bool {
	start := s.pos
	if s.data[s.pos] == '-' {
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	first := s.pos
	if n := digits(); n == 0 || n > 1 && s.data[first] == '0' {
		s.pos = start
		return s.failAt("malformed number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return s.failAt("malformed number")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.failAt("malformed number")
		}
	}
	return true
}

func (s *scanner) array(depth int) bool {
	s.pos++ // [
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return true
	}
	for i := 0; ; i++ {
		if s.track {
			s.path = append(s.path, strconv.Itoa(i))
		}
		ok := s.value(depth + 1)
		if s.track {
			s.path = s.path[:len(s.path)-1]
		}
		if !ok {
			return false
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.failAt("unexpected end")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return true
		default:
			return s.failAt("expected , or ]")
		}
	}
}

// limitOf is the size limit of a top-level member; 0 for none.
func (s *scanner) limitOf(name []byte) int {
	switch string(name) { // compiled without a conversion
	case "description":
		return s.limits.MaxDescriptionBytes
	case "inputSchema", "outputSchema":
		if s.kind == KindTool {
			return s.limits.MaxSchemaBytes
		}
	}
	return 0
}

func (s *scanner) object(depth int) bool {
	s.pos++ // {
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return true
	}
	// The decoded name of a top-level member, for its size limit: the
	// bounded members' names are short, so a small array holds them.
	var nameBuf [16]byte
	for {
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.failAt("expected a member name")
		}
		var name []byte
		if depth == 0 {
			name = nameBuf[:0]
		}
		name, ok := s.str(true, name)
		if !ok {
			return false
		}
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.failAt("expected :")
		}
		s.pos++
		s.space()
		start := s.pos
		ok = s.value(depth + 1)
		if s.track {
			s.path = s.path[:len(s.path)-1]
		}
		if !ok {
			return false
		}
		if depth == 0 && !s.track {
			if limit := s.limitOf(name); limit > 0 && s.pos-start > limit && s.numOversized < len(s.oversized) {
				s.oversized[s.numOversized] = oversized{string(name), s.pos - start, limit}
				s.numOversized++
			}
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.failAt("unexpected end")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return true
		default:
			return s.failAt("expected , or }")
		}
	}
}

// str reads a string at s.pos, checking every character it spells. For
// a member name (member), the name is pushed on the path when tracking;
// its decoded bytes are appended to name while they fit its capacity (a
// nil name collects nothing). The caller pops the path.
func (s *scanner) str(member bool, name []byte) ([]byte, bool) {
	s.pos++ // the opening quote
	// With track, the member name decoded, for its path.
	var decoded []byte
	offset := 0 // in the decoded string
	reported := false
	keep := func(r rune) {
		if name != nil && len(name)+utf8.RuneLen(r) <= cap(name) {
			name = utf8.AppendRune(name, r)
		} else if name != nil {
			name = name[:cap(name)] // too long to be a bounded member: no match
			name[0] = 0
		}
		if s.track && member {
			decoded = utf8.AppendRune(decoded, r)
		}
	}
	type found struct {
		r      rune
		class  string
		offset int
	}
	var bad found
	var prev rune
	joiner := -1 // the offset of a zero-width joiner after an emoji
	see := func(r rune, class string) {
		if joiner >= 0 {
			// A joiner is allowed between two emoji, as in 👩‍💻.
			if !reported && !emoji(r) {
				reported, bad = true, found{0x200D, "zero-width", joiner}
			}
			joiner = -1
		}
		switch {
		case r == 0x200D && emoji(prev):
			joiner = offset
		case !reported && class != "":
			reported, bad = true, found{r, class, offset}
		}
		prev = r
	}
	for {
		if s.pos >= len(s.data) {
			return name, s.failAt("unterminated string")
		}
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			see(0, "") // a joiner ending the string joins nothing
			if member && s.track {
				s.path = append(s.path, pointerSegment(string(decoded)))
			}
			if reported {
				s.report(member, bad.r, bad.class, bad.offset)
			}
			return name, true
		case c == '\\':
			r, ok := s.escape()
			if !ok {
				return name, false
			}
			if r < 0 { // a lone surrogate
				see(-r, "lone surrogate")
				r = utf8.RuneError
			} else {
				see(r, refused(r))
			}
			keep(r)
			offset += utf8.RuneLen(r)
		case c < 0x20:
			return name, s.failAt("control character in a string")
		case c < utf8.RuneSelf:
			s.pos++
			if c == 0x7F {
				see(0x7F, "control character")
			}
			keep(rune(c))
			offset++
		default:
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size == 1 {
				see(rune(c), "invalid UTF-8")
			} else {
				see(r, refused(r))
			}
			s.pos += size
			keep(r)
			offset += size
		}
	}
}

// escape reads one escape at s.pos; a lone surrogate comes back negated.
func (s *scanner) escape() (rune, bool) {
	if s.pos+1 >= len(s.data) {
		return 0, s.failAt("unterminated string")
	}
	c := s.data[s.pos+1]
	s.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	case 'u':
	default:
		s.pos -= 2
		return 0, s.failAt("malformed escape")
	}
	r, ok := s.hex4()
	if !ok {
		return 0, false
	}
	if !utf16.IsSurrogate(r) {
		return r, true
	}
	if r < 0xDC00 && s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
		save := s.pos
		s.pos += 2
		low, ok := s.hex4()
		if !ok {
			return 0, false
		}
		if pair := utf16.DecodeRune(r, low); pair != utf8.RuneError {
			return pair, true
		}
		s.pos = save
	}
	return -r, true
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, s.failAt("malformed escape")
	}
	var r rune
	for _, c := range s.data[s.pos : s.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, s.failAt("malformed escape")
		}
	}
	s.pos += 4
	return r, true
}

// report records a refused character; without track it only marks the
// definition dirty.
func (s *scanner) report(member bool, r rune, class string, offset int) {
	s.dirty = true
	if !s.track || len(s.problems) >= maxProblems {
		return
	}
	reason := fmt.Sprintf("U+%04X (%s) at byte %d", r, class, offset)
	if class == "invalid UTF-8" {
		reason = fmt.Sprintf("invalid UTF-8 (byte %#02x) at byte %d", r, offset)
	}
	if member {
		reason = "member name: " + reason
	}
	path := ""
	if len(s.path) > 0 {
		path = "/" + strings.Join(s.path, "/")
	}
	s.problems = append(s.problems, Problem{Path: path, Reason: reason})
}

// pointerSegment escapes a member name for a JSON pointer (RFC 6901).
func pointerSegment(name string) string {
	return strings.ReplaceAll(strings.ReplaceAll(name, "~", "~0"), "/", "~1")
}
