package pins

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// maxDiffCells bounds the table of a line diff (old lines times new lines
// after their common beginning and end): a definition near its size limit
// rewritten throughout would otherwise take hundreds of megabytes to diff.
// Past it, every old line is shown removed and every new one added.
const maxDiffCells = 1 << 22

// Diff shows two canonical definitions pretty-printed (indent 2), line by
// line: "- " for a line only the old has, "+ " for one only the new has,
// "  " for one both have. Characters Hygiene refuses (which a reviewer
// would not see) are written as \u{XXXX}.
func Diff(oldCanonical, newCanonical []byte) string {
	a, b := lines(oldCanonical), lines(newCanonical)
	var out strings.Builder
	write := func(mark string, line string) {
		out.WriteString(mark)
		out.WriteString(line)
		out.WriteByte('\n')
	}
	prefix := 0
	for prefix < len(a) && prefix < len(b) && a[prefix] == b[prefix] {
		prefix++
	}
	suffix := 0
	for suffix < len(a)-prefix && suffix < len(b)-prefix && a[len(a)-1-suffix] == b[len(b)-1-suffix] {
		suffix++
	}
	for _, line := range a[:prefix] {
		write("  ", line)
	}
	diffLines(a[prefix:len(a)-suffix], b[prefix:len(b)-suffix], write)
	for _, line := range a[len(a)-suffix:] {
		write("  ", line)
	}
	return out.String()
}

// diffLines writes a's and b's lines along their longest common
// subsequence.
func diffLines(a, b []string, write func(mark, line string)) {
	n, m := len(a), len(b)
	if n*m > maxDiffCells {
		for _, line := range a {
			write("- ", line)
		}
		for _, line := range b {
			write("+ ", line)
		}
		return
	}
	// lcs[i*(m+1)+j] is the length of the longest common subsequence of
	// a[i:] and b[j:].
	lcs := make([]int32, (n+1)*(m+1))
	at := func(i, j int) int32 { return lcs[i*(m+1)+j] }
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i*(m+1)+j] = at(i+1, j+1) + 1
			} else {
				lcs[i*(m+1)+j] = max(at(i+1, j), at(i, j+1))
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			write("  ", a[i])
			i, j = i+1, j+1
		case i < n && (j == m || at(i+1, j) >= at(i, j+1)):
			write("- ", a[i])
			i++
		default:
			write("+ ", b[j])
			j++
		}
	}
}

// lines pretty-prints a definition and splits it into lines; an empty
// definition (none pinned yet) has none.
func lines(def []byte) []string {
	if len(bytes.TrimSpace(def)) == 0 {
		return nil
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, def, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(def)
	}
	return strings.Split(visible(pretty.String()), "\n")
}

// visible writes the characters Hygiene refuses as \u{XXXX}; line feeds,
// which only pretty-printing put there, are kept.
func visible(s string) string {
	var b strings.Builder
	for _, r := range s {
		if refused(r) != "" && r != '\n' {
			fmt.Fprintf(&b, `\u{%X}`, r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
