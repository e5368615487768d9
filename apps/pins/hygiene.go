package pins

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Limits bound a definition's size, in bytes; zero takes the default.
type Limits struct {
	MaxDescriptionBytes int // the description member (8 KiB)
	MaxSchemaBytes      int // inputSchema and outputSchema, each (64 KiB)
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

// Hygiene reports what makes a definition unfit to show a model: any
// string (member names included) holding characters a reviewer does not
// see or that steer how text is read — the Unicode tag block, zero-width
// characters, bidirectional controls, C0 controls other than tab and line
// feed, DEL and C1 controls — and sizes over the limits. A clean
// definition costs one pass and no allocation.
func Hygiene(kind Kind, raw []byte, limits Limits) []Problem {
	limits = limits.withDefaults()
	var problems []Problem
	if len(raw) > limits.MaxDefinitionBytes {
		problems = append(problems, Problem{Reason: fmt.Sprintf("the definition is %d bytes, more than %d", len(raw), limits.MaxDefinitionBytes)})
	}
	if member, n := memberSize(raw, "description"); n > limits.MaxDescriptionBytes {
		problems = append(problems, Problem{Path: "/" + member, Reason: fmt.Sprintf("%d bytes, more than %d", n, limits.MaxDescriptionBytes)})
	}
	if kind == KindTool {
		for _, m := range []string{"inputSchema", "outputSchema"} {
			if _, n := memberSize(raw, m); n > limits.MaxSchemaBytes {
				problems = append(problems, Problem{Path: "/" + m, Reason: fmt.Sprintf("%d bytes, more than %d", n, limits.MaxSchemaBytes)})
			}
		}
	}
	if suspicious(raw) {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return append(problems, Problem{Reason: "not JSON: " + err.Error()})
		}
		walk(v, "", &problems)
	}
	return problems
}

// memberSize is the size of a top-level member's value as written.
func memberSize(raw []byte, member string) (string, int) {
	value, _, _ := jsonrpc.Member(raw, member)
	return member, len(value)
}

// suspicious reports whether raw may hold a refused character: a control
// byte, a backslash escape (which may spell one), or non-ASCII text.
func suspicious(raw []byte) bool {
	for _, c := range raw {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == '\\' || c >= 0x7f {
			return true
		}
	}
	return false
}

// walk reports the refused characters of every string under v.
func walk(v any, path string, problems *[]Problem) {
	switch v := v.(type) {
	case string:
		check(v, path, problems)
	case []any:
		for i, e := range v {
			walk(e, path+"/"+strconv.Itoa(i), problems)
		}
	case map[string]any:
		for k, e := range v {
			p := path + "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
			check(k, p+" (member name)", problems)
			walk(e, p, problems)
		}
	}
}

// maxProblems bounds what one definition reports.
const maxProblems = 20

func check(s, path string, problems *[]Problem) {
	for i, r := range s {
		if len(*problems) >= maxProblems {
			return
		}
		if class := refused(r); class != "" {
			*problems = append(*problems, Problem{Path: path, Reason: fmt.Sprintf("U+%04X (%s) at byte %d", r, class, i)})
			return // one per string is enough to refuse it
		}
		if r == utf8.RuneError {
			*problems = append(*problems, Problem{Path: path, Reason: fmt.Sprintf("invalid UTF-8 at byte %d", i)})
			return
		}
	}
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
