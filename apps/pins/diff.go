package pins

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Diff shows two canonical definitions pretty-printed, line by line: "-"
// for a line only the old has, "+" for one only the new has. Characters a
// reviewer would not see are written as \u{XXXX}.
func Diff(old, new []byte) string {
	a, b := lines(old), lines(new)
	// Longest common subsequence of lines: definitions are small.
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			out.WriteString("  " + a[i] + "\n")
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out.WriteString("+ " + b[j] + "\n")
			j++
		default:
			out.WriteString("- " + a[i] + "\n")
			i++
		}
	}
	return out.String()
}

func lines(def []byte) []string {
	var pretty bytes.Buffer
	if json.Indent(&pretty, def, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(def)
	}
	return strings.Split(visible(pretty.String()), "\n")
}

// visible writes the characters Hygiene refuses as \u{XXXX}.
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
