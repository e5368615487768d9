package schema

import "fmt"

// Limits bound a tools/call's arguments before any schema sees them. A
// zero field takes its default.
type Limits struct {
	// MaxArgumentBytes bounds the arguments' JSON text (64 KiB).
	MaxArgumentBytes int
	// MaxDepth bounds the nesting of objects and arrays (32).
	MaxDepth int
	// MaxStringBytes bounds any string, member names included, as written
	// in the JSON text, escapes counted as written (16 KiB).
	MaxStringBytes int
}

// DefaultLimits are the limits of a zero Limits.
func DefaultLimits() Limits {
	return Limits{MaxArgumentBytes: 64 << 10, MaxDepth: 32, MaxStringBytes: 16 << 10}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxArgumentBytes <= 0 {
		l.MaxArgumentBytes = d.MaxArgumentBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxStringBytes <= 0 {
		l.MaxStringBytes = d.MaxStringBytes
	}
	return l
}

// CheckLimits checks arguments, valid JSON, against l in one pass; nil
// when they are within it.
func CheckLimits(args []byte, l Limits) *Failure {
	l = l.withDefaults()
	if len(args) > l.MaxArgumentBytes {
		return &Failure{Problems: []Problem{{Message: fmt.Sprintf("the arguments are %d bytes, more than the %d allowed", len(args), l.MaxArgumentBytes)}}}
	}
	depth := 0
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case '{', '[':
			depth++
			if depth > l.MaxDepth {
				return &Failure{Problems: []Problem{{Message: fmt.Sprintf("the arguments nest deeper than the %d levels allowed", l.MaxDepth)}}}
			}
		case '}', ']':
			depth--
		case '"':
			start := i
			for i++; i < len(args) && args[i] != '"'; i++ {
				if args[i] == '\\' {
					i++
				}
			}
			if n := i - start - 1; n > l.MaxStringBytes {
				return &Failure{Problems: []Problem{{Message: fmt.Sprintf("a string of %d bytes is longer than the %d allowed", n, l.MaxStringBytes)}}}
			}
		}
	}
	return nil
}
