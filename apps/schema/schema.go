package schema

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// MaxSchemaBytes bounds a schema the cache compiles.
const MaxSchemaBytes = 256 << 10

// maxProblems bounds the problems a Failure's text lists.
const maxProblems = 20

// schemaURL is where a compiled schema says it lives; nothing is loaded
// from it.
const schemaURL = "https://schema.mcpbroker.invalid/tool.json"

var printer = message.NewPrinter(language.English)

// ErrRemoteRef is the error of a schema that refers to another document.
var ErrRemoteRef = errors.New("the schema refers to another document, which is never fetched")

// Compiled is a compiled schema, safe for concurrent use.
type Compiled struct {
	schema *jsonschema.Schema
}

// Cache compiles each schema once per key and keeps the most recently
// used.
type Cache struct {
	compiled *lru.Cache[string, *Compiled]
	mu       sync.Mutex // one compilation at a time: they are rare and costly
}

// NewCache keeps up to size compiled schemas.
func NewCache(size int) *Cache {
	c, _ := lru.New[string, *Compiled](max(size, 1))
	return &Cache{compiled: c}
}

// Compile returns the compiled schema of key, compiling raw the first time.
// The caller's key must change whenever raw does (a definition's hash).
func (c *Cache) Compile(key string, raw []byte) (*Compiled, error) {
	if s, ok := c.compiled.Get(key); ok {
		return s, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.compiled.Get(key); ok {
		return s, nil
	}
	s, err := Compile(raw)
	if err != nil {
		return nil, err
	}
	c.compiled.Add(key, s)
	return s, nil
}

// refusingLoader refuses every URL: schemas are self-contained.
type refusingLoader struct{}

func (refusingLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%w (%s)", ErrRemoteRef, url)
}

// Compile compiles one schema.
func Compile(raw []byte) (*Compiled, error) {
	if len(raw) > MaxSchemaBytes {
		return nil, fmt.Errorf("schema: %d bytes, more than %d", len(raw), MaxSchemaBytes)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema: not JSON: %w", err)
	}
	if _, ok := doc.(map[string]any); !ok {
		if _, isBool := doc.(bool); !isBool {
			return nil, errors.New("schema: not an object")
		}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refusingLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("schema: %s", firstLine(err.Error()))
	}
	return &Compiled{schema: s}, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.ReplaceAll(line, schemaURL, "schema")
}

// Validate validates a JSON document; nil when it is valid.
func (v *Compiled) Validate(instance []byte) *Failure {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(instance))
	if err != nil {
		return &Failure{Problems: []Problem{{Message: "not valid JSON"}}}
	}
	err = v.schema.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &Failure{Problems: []Problem{{Message: err.Error()}}}
	}
	f := &Failure{}
	collect(ve, f)
	if len(f.Problems) == 0 {
		f.Problems = append(f.Problems, Problem{Message: ve.ErrorKind.LocalizedString(printer)})
	}
	return f
}

// collect adds the leaves of a validation error: the failures themselves,
// not the keywords (allOf, properties, $ref) they were found under.
func collect(e *jsonschema.ValidationError, f *Failure) {
	if len(e.Causes) == 0 {
		message := e.ErrorKind.LocalizedString(printer)
		if message == "false schema" {
			// A property or item the schema leaves no room for
			// (unevaluatedProperties, items: false).
			message = "not allowed here"
		}
		p := Problem{Path: pointer(e.InstanceLocation), Message: message}
		if !slices.Contains(f.Problems, p) {
			f.Problems = append(f.Problems, p)
		}
		return
	}
	for _, c := range e.Causes {
		collect(c, f)
	}
}

// pointer is a JSON pointer of instance path segments.
func pointer(segments []string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		s = strings.ReplaceAll(s, "~", "~0")
		b.WriteString(strings.ReplaceAll(s, "/", "~1"))
	}
	return b.String()
}

// Failure is why a document does not fit.
type Failure struct {
	Problems []Problem
}

// Problem is one failing place in the document.
type Problem struct {
	// Path is a JSON pointer into the document ("" is the document).
	Path    string
	Message string
}

// Text lists the problems for a model to read: each path and what is
// wrong there.
func (f *Failure) Text() string {
	var b strings.Builder
	for i, p := range f.Problems {
		if i == maxProblems {
			fmt.Fprintf(&b, "; and %d more", len(f.Problems)-maxProblems)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		path := p.Path
		if path == "" {
			path = "(arguments)"
		}
		b.WriteString(path + ": " + p.Message)
	}
	return b.String()
}
