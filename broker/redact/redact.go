package redact

import (
	"fmt"
	"slices"
	"strings"
)

// Kind names what a detector finds.
type Kind string

// Counts are findings by kind: what was redacted, never the values.
type Counts map[Kind]int

// Finding is one match: text[Start:End].
type Finding struct {
	Kind       Kind
	Start, End int
}

// detector finds one kind of data.
type detector struct {
	kind Kind
	// find appends the findings of kind in text to dst.
	find func(kind Kind, text string, dst []Finding) []Finding
}

// Set is a selection of detectors, safe for concurrent use.
type Set struct {
	detectors []detector
}

// Kinds are every detector's kind, in a stable order.
func Kinds() []Kind {
	kinds := make([]Kind, len(all))
	for i, d := range all {
		kinds[i] = d.kind
	}
	return kinds
}

// NewSet selects the detectors of kinds; none selects every one.
func NewSet(kinds []Kind) (*Set, error) {
	if len(kinds) == 0 {
		return &Set{detectors: all}, nil
	}
	s := &Set{}
	for _, k := range kinds {
		i := slices.IndexFunc(all, func(d detector) bool { return d.kind == k })
		if i < 0 {
			known := make([]string, len(all))
			for j, d := range all {
				known[j] = string(d.kind)
			}
			return nil, fmt.Errorf("redact: unknown detector %q; known: %s", k, strings.Join(known, ", "))
		}
		if !slices.ContainsFunc(s.detectors, func(d detector) bool { return d.kind == k }) {
			s.detectors = append(s.detectors, all[i])
		}
	}
	return s, nil
}

// Find returns the findings in text, sorted and without overlaps (of two
// that overlap, the one that starts first, or the longer, is kept).
func (s *Set) Find(text string) []Finding {
	var found []Finding
	for _, d := range s.detectors {
		found = d.find(d.kind, text, found)
	}
	if len(found) < 2 {
		return found
	}
	slices.SortFunc(found, func(a, b Finding) int {
		if a.Start != b.Start {
			return a.Start - b.Start
		}
		return b.End - a.End
	})
	kept := found[:1]
	for _, f := range found[1:] {
		if f.Start >= kept[len(kept)-1].End {
			kept = append(kept, f)
		}
	}
	return kept
}

// Mask replaces each finding in text with [REDACTED:<kind>]; text comes
// back as it was when there is none.
func (s *Set) Mask(text string) (string, Counts) {
	return maskFound(text, s.Find(text))
}

// MaskFindings replaces findings of text, as Find returned them.
func MaskFindings(text string, found []Finding) (string, Counts) { return maskFound(text, found) }

// maskFound replaces the findings in text.
func maskFound(text string, found []Finding) (string, Counts) {
	if len(found) == 0 {
		return text, nil
	}
	counts := Counts{}
	var b strings.Builder
	b.Grow(len(text))
	last := 0
	for _, f := range found {
		b.WriteString(text[last:f.Start])
		b.WriteString("[REDACTED:" + string(f.Kind) + "]")
		last = f.End
		counts[f.Kind]++
	}
	b.WriteString(text[last:])
	return b.String(), counts
}
