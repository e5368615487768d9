package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// File is the name the configuration was loaded from; empty for a
	// Config built in code.
	File string
	// Line and Column locate the problem in the file (1-based); 0 when
	// unknown, e.g. for a Config built in code.
	Line   int
	Column int
	// Path names the offending value, e.g. "apps[1].upstream.stream.url";
	// empty for problems with the file as a whole.
	Path    string
	Message string
}

// String renders the problem as "file:line: path: message", leaving out the
// parts that are unknown.
func (p Problem) String() string {
	var text strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		text.WriteString(p.File + ":" + strconv.Itoa(p.Line) + ": ")
	case p.File != "":
		text.WriteString(p.File + ": ")
	case p.Line > 0:
		text.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Path != "" {
		text.WriteString(p.Path + ": ")
	}
	text.WriteString(p.Message)
	return text.String()
}

// Problems is every problem found in a configuration. Load, Parse and
// Validate return it as their error so that a user fixes everything in one
// round instead of one problem per run.
type Problems []Problem

// Error lists the problems one per line.
func (problems Problems) Error() string {
	lines := make([]string, len(problems))
	for i, problem := range problems {
		lines[i] = problem.String()
	}
	return strings.Join(lines, "\n")
}

// sortByPosition orders problems as they appear in the file. Problems without
// a position (about the file as a whole) come first; ties keep the order in
// which they were found, which follows the structure of the Config.
func (problems Problems) sortByPosition() {
	slices.SortStableFunc(problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// problemList collects problems with their paths.
type problemList struct {
	problems Problems
}

func (list *problemList) add(path, message string) {
	list.problems = append(list.problems, Problem{Path: path, Message: message})
}

// err returns nil rather than an empty Problems, so that callers can compare
// the result with nil.
func (list *problemList) err() error {
	if len(list.problems) == 0 {
		return nil
	}
	return list.problems
}

// field and index build paths: field("apps[1]", "name") is "apps[1].name".
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// parentPath drops the last element of a path: "apps[1].name" becomes
// "apps[1]", "apps[1]" becomes "apps", "apps" becomes "".
func parentPath(path string) string {
	cut := strings.LastIndexAny(path, ".[")
	if cut < 0 {
		return ""
	}
	return path[:cut]
}

// isBeneath reports whether path is ancestor itself or lies inside it.
func isBeneath(path, ancestor string) bool {
	if !strings.HasPrefix(path, ancestor) {
		return false
	}
	rest := path[len(ancestor):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}
