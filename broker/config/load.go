package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxProblems bounds the report for a file that is wrong everywhere; past a
// few hundred problems nobody reads on, and the list itself costs memory.
const maxProblems = 500

// Load reads the configuration file at path, then decodes it, applies
// defaults and validates it like Parse. An error reading the file is returned
// wrapped (errors.Is(err, fs.ErrNotExist) works); every problem with its
// contents is returned together as Problems.
func Load(path string) (*Config, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes a configuration strictly, applies defaults and validates it.
// name is the file the data came from: it labels problems, and relative
// "{{ file.PATH }}" secrets are read from its directory. Secrets are resolved
// from the environment and files now; nothing else is touched.
//
// On failure the error is Problems, listing every problem in file order, and
// the Config is nil.
func Parse(data []byte, name string) (*Config, error) {
	if len(data) > maxFileBytes {
		return nil, Problems{{File: name, Message: fmt.Sprintf("the file is larger than %d bytes (1 MiB)", maxFileBytes)}}
	}
	root, problem := parseDocument(data)
	if problem != nil {
		problem.File = name
		return nil, Problems{*problem}
	}
	decoder := newDecoder(name)
	decoder.loadSecretProviders(root)
	config := new(Config)
	decoder.decode(root, reflect.ValueOf(config).Elem(), "")
	if decoder.exhausted {
		// The config is partial; validating it would only add noise.
		return nil, decoder.report()
	}
	config.ApplyDefaults()
	var validation Problems
	if !errors.As(config.Validate(), &validation) {
		validation = nil
	}
	for _, problem := range validation {
		if decoder.hasFailedAncestor(problem.Path) {
			continue
		}
		at := decoder.locate(problem.Path)
		problem.File, problem.Line, problem.Column = name, at.line, at.column
		decoder.problems = append(decoder.problems, problem)
	}
	if len(decoder.problems) > 0 {
		return nil, decoder.report()
	}
	return config, nil
}

// report returns the problems in file order, truncated to maxProblems.
func (d *decoder) report() Problems {
	problems := d.problems
	problems.sortByPosition()
	if len(problems) > maxProblems {
		hidden := len(problems) - maxProblems
		problems = append(problems[:maxProblems:maxProblems], Problem{
			File:    d.file,
			Message: fmt.Sprintf("%d more problems not shown", hidden),
		})
	}
	return problems
}

// syntaxErrorLine pulls the line out of yaml.v3's "yaml: line 3: message".
var syntaxErrorLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDocument parses data into the node of its top-level mapping. A problem
// means there is nothing to decode.
func parseDocument(data []byte) (root *yaml.Node, problem *Problem) {
	// yaml.v3 panics on some malformed input instead of returning an error;
	// a config file must not be able to crash the process that loads it.
	defer func() {
		if recovered := recover(); recovered != nil {
			root, problem = nil, &Problem{Message: fmt.Sprintf("invalid YAML: %v", recovered)}
		}
	}()
	decoder := yaml.NewDecoder(bytes.NewReader(data))
	var document yaml.Node
	if err := decoder.Decode(&document); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Problem{Message: "the file is empty; want a mapping starting with \"version: 1\""}
		}
		return nil, syntaxProblem(err)
	}
	var next yaml.Node
	switch err := decoder.Decode(&next); {
	case err == nil:
		return nil, &Problem{Line: next.Line, Column: next.Column, Message: "more than one YAML document; want exactly one"}
	case !errors.Is(err, io.EOF):
		return nil, syntaxProblem(err)
	}
	if document.Kind != yaml.DocumentNode || len(document.Content) == 0 || isNull(document.Content[0]) {
		return nil, &Problem{Message: "the file is empty; want a mapping starting with \"version: 1\""}
	}
	root = document.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &Problem{Line: root.Line, Column: root.Column, Message: "want a mapping at the top level, got " + describe(root)}
	}
	return root, nil
}

func syntaxProblem(err error) *Problem {
	if match := syntaxErrorLine.FindStringSubmatch(err.Error()); match != nil {
		line, _ := strconv.Atoi(match[1])
		return &Problem{Line: line, Message: "invalid YAML: " + match[2]}
	}
	return &Problem{Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}
