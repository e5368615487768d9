// Package bridge turns a REST API described by an OpenAPI 3.0 or 3.1
// document into MCP tools: one tool per operation, whose inputSchema is
// made of the operation's path, query, header and cookie parameters and
// its JSON request body, and whose call is the HTTP request those
// arguments fill in, against a base URL the operator fixes.
//
// The document is read with github.com/getkin/kin-openapi: it reads both
// 3.0 and 3.1, resolves $refs (external ones only where allowed) and
// validates the document, and it has no dependency the broker does not
// already carry beyond its YAML reader.
package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Options describe one bridged API.
type Options struct {
	// BaseURL is where the API is served; every request goes to it, under
	// its path, whatever the arguments say. Required.
	BaseURL string
	// Document is the OpenAPI document, JSON or YAML; Location names it
	// in errors.
	Document []byte
	Location string
	// Include, when not empty, keeps only the operations one of its
	// selectors matches; Exclude drops those one of its selectors
	// matches. A selector is an operationId, "tag:<tag>", or
	// "<METHOD> <path>" as the document writes the path.
	Include, Exclude []string
	// Overrides change what a tool says of itself, by operationId.
	Overrides map[string]Override
}

// Override is what the operator says of a tool instead of the document.
type Override struct {
	Name        string
	Description string
	// Annotations replace the hints defaulted from the HTTP method.
	Annotations map[string]any
}

// API is a loaded document: its tools, and how to call them.
type API struct {
	base  *url.URL
	tools []*Tool
	byKey map[string]*Tool
}

// Tool is one operation as an MCP tool.
type Tool struct {
	Name        string
	Description string
	Method      string
	// Path is the operation's path template, as the document writes it.
	Path         string
	OperationID  string
	params       []param
	body         *body
	InputSchema  json.RawMessage
	OutputSchema json.RawMessage
	Annotations  map[string]any
	// wrapped: the response is not a JSON object, so the structured
	// result carries it under "result".
	wrapped bool
	// api is the API the tool was joined from (Join); nil: the one
	// serving it.
	api *API
}

// param is one parameter: where it goes, under which argument.
type param struct {
	arg      string // the argument's name in inputSchema
	name     string // the parameter's name in the request
	in       string // path, query, header, cookie
	required bool
	style    string
	explode  bool
}

// body is a JSON request body, under the argument "body".
type body struct {
	required bool
}

// Load reads a document and makes its tools.
func Load(ctx context.Context, opts Options) (*API, error) {
	base, err := parseBase(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(opts.Document)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Location, err)
	}
	if err := doc.Validate(ctx, openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Location, err)
	}
	api := &API{base: base, byKey: map[string]*Tool{}}
	if doc.Paths == nil {
		return api, nil
	}
	seenIDs := map[string]string{}
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		methods := make([]string, 0, len(item.Operations()))
		for m := range item.Operations() {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		for _, method := range methods {
			op := item.Operations()[method]
			where := fmt.Sprintf("%s: paths[%q].%s", opts.Location, path, strings.ToLower(method))
			if op.OperationID != "" {
				if first, dup := seenIDs[op.OperationID]; dup {
					return nil, fmt.Errorf("%s: operationId %q is also %s", where, op.OperationID, first)
				}
				seenIDs[op.OperationID] = fmt.Sprintf("paths[%q].%s", path, strings.ToLower(method))
			}
			if !selected(opts, op, method, path) {
				continue
			}
			tool, err := newTool(doc, method, path, item, op)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			if o, ok := opts.Overrides[op.OperationID]; ok {
				if o.Name != "" {
					tool.Name = o.Name
				}
				if o.Description != "" {
					tool.Description = o.Description
				}
				if o.Annotations != nil {
					tool.Annotations = o.Annotations
				}
			}
			if !ValidToolName(tool.Name) {
				return nil, fmt.Errorf("%s: tool name %q: want 1 to 128 of A-Z a-z 0-9 _ - .", where, tool.Name)
			}
			if _, dup := api.byKey[tool.Name]; dup {
				return nil, fmt.Errorf("%s: tool name %q is given to two operations", where, tool.Name)
			}
			api.byKey[tool.Name] = tool
			api.tools = append(api.tools, tool)
		}
	}
	for id := range opts.Overrides {
		if _, ok := seenIDs[id]; !ok {
			return nil, fmt.Errorf("%s: an override names operationId %q, which the document does not have", opts.Location, id)
		}
	}
	return api, nil
}

// parseBase checks the operator's base URL: absolute http or https, a
// host, no query or fragment.
func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("bridge: baseURL %q: want an absolute http or https URL with a host, and no query, fragment or credentials", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Join adds another API's tools (made from another document, or from
// tools declared by hand) to a's; a name both have is an error. Each
// tool goes on being called at its own API's base URL.
func (a *API) Join(other *API) error {
	for _, t := range other.tools {
		if _, dup := a.byKey[t.Name]; dup {
			return fmt.Errorf("bridge: tool name %q is given twice", t.Name)
		}
	}
	for _, t := range other.tools {
		t.api = other
		a.byKey[t.Name] = t
		a.tools = append(a.tools, t)
	}
	return nil
}

// Tools lists the API's tools in the document's order.
func (a *API) Tools() []*Tool { return a.tools }

// Tool finds a tool by name.
func (a *API) Tool(name string) *Tool { return a.byKey[name] }

func selected(opts Options, op *openapi3.Operation, method, path string) bool {
	matches := func(sel string) bool {
		switch {
		case strings.HasPrefix(sel, "tag:"):
			return slices.Contains(op.Tags, strings.TrimPrefix(sel, "tag:"))
		case strings.Contains(sel, " "):
			m, p, _ := strings.Cut(sel, " ")
			return strings.EqualFold(m, method) && p == path
		}
		return sel == op.OperationID
	}
	if len(opts.Include) > 0 && !slices.ContainsFunc(opts.Include, matches) {
		return false
	}
	return !slices.ContainsFunc(opts.Exclude, matches)
}

var toolNameChars = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// ValidToolName reports whether name is one a tool may have: 1 to 128 of
// A-Z a-z 0-9 _ - . (what clients are known to accept).
func ValidToolName(name string) bool { return toolNameChars.MatchString(name) }

// nameFor is a tool's name when its operation has no operationId: the
// method and path, with what a tool name cannot hold made "_".
func nameFor(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, r := range path {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			if !strings.HasSuffix(b.String(), "_") {
				b.WriteByte('_')
			}
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

// newTool makes an operation's tool.
func newTool(doc *openapi3.T, method, path string, item *openapi3.PathItem, op *openapi3.Operation) (*Tool, error) {
	t := &Tool{Name: op.OperationID, Method: method, Path: path, OperationID: op.OperationID}
	if t.Name == "" {
		t.Name = nameFor(method, path)
	}
	t.Description = strings.TrimSpace(op.Summary)
	if d := strings.TrimSpace(op.Description); d != "" {
		if t.Description != "" {
			t.Description += "\n\n"
		}
		t.Description += d
	}
	t.Annotations = defaultAnnotations(method)

	in := newSchemas(doc)
	properties := map[string]any{}
	var required []string
	// The operation's parameters override the path item's of the same
	// name and location.
	params := map[string]*openapi3.Parameter{}
	var order []string
	for _, list := range []openapi3.Parameters{item.Parameters, op.Parameters} {
		for _, ref := range list {
			p := ref.Value
			if p == nil {
				continue
			}
			key := p.In + "\x00" + p.Name
			if _, ok := params[key]; !ok {
				order = append(order, key)
			}
			params[key] = p
		}
	}
	for _, key := range order {
		p := params[key]
		if p.Schema == nil || p.Schema.Value == nil {
			return nil, fmt.Errorf("parameter %q in %s: only parameters with a schema are supported (not content)", p.Name, p.In)
		}
		sm, err := p.SerializationMethod()
		if err != nil {
			return nil, fmt.Errorf("parameter %q in %s: %w", p.Name, p.In, err)
		}
		if !supportedStyle(p.In, sm.Style) {
			return nil, fmt.Errorf("parameter %q in %s: style %q is not supported", p.Name, p.In, sm.Style)
		}
		arg := p.Name
		if _, taken := properties[arg]; taken || arg == "body" {
			arg = p.In + "_" + p.Name
			if _, taken := properties[arg]; taken {
				return nil, fmt.Errorf("parameter %q in %s: its argument name %q is taken", p.Name, p.In, arg)
			}
		}
		schema, err := in.convert(p.Schema)
		if err != nil {
			return nil, fmt.Errorf("parameter %q in %s: %w", p.Name, p.In, err)
		}
		if m, ok := schema.(map[string]any); ok && p.Description != "" {
			if _, has := m["description"]; !has {
				m["description"] = p.Description
			}
		}
		properties[arg] = schema
		req := p.Required || p.In == "path"
		if req {
			required = append(required, arg)
		}
		t.params = append(t.params, param{arg: arg, name: p.Name, in: p.In, required: req, style: sm.Style, explode: sm.Explode})
	}
	if rb := op.RequestBody; rb != nil && rb.Value != nil {
		media := rb.Value.Content.Get("application/json")
		if media == nil {
			var types []string
			for ct := range rb.Value.Content {
				types = append(types, ct)
			}
			sort.Strings(types)
			return nil, fmt.Errorf("request body: content types %q are not supported (application/json is)", types)
		}
		var schema any = map[string]any{}
		if media.Schema != nil && media.Schema.Value != nil {
			var err error
			if schema, err = in.convert(media.Schema); err != nil {
				return nil, fmt.Errorf("request body: %w", err)
			}
		}
		properties["body"] = schema
		t.body = &body{required: rb.Value.Required}
		if rb.Value.Required {
			required = append(required, "body")
		}
	}
	input := map[string]any{"type": "object", "properties": properties, "additionalProperties": false}
	if len(required) > 0 {
		input["required"] = required
	}
	var err error
	if t.InputSchema, err = in.root(input); err != nil {
		return nil, err
	}
	if t.OutputSchema, t.wrapped, err = outputSchema(doc, op); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	return t, nil
}

// defaultAnnotations are the hints an HTTP method gives.
func defaultAnnotations(method string) map[string]any {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return map[string]any{"readOnlyHint": true}
	case http.MethodDelete:
		return map[string]any{"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true}
	case http.MethodPut:
		return map[string]any{"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true}
	}
	return map[string]any{"readOnlyHint": false, "destructiveHint": false}
}

func supportedStyle(in, style string) bool {
	switch in {
	case "path":
		return style == "simple"
	case "query":
		return style == "form" || style == "spaceDelimited" || style == "pipeDelimited" || style == "deepObject"
	case "header":
		return style == "simple"
	case "cookie":
		return style == "form"
	}
	return false
}

// outputSchema is the schema of the first 2xx JSON response, made an
// object schema: a response that is not an object is carried under
// "result" (wrapped). None when no 2xx response declares a JSON schema.
func outputSchema(doc *openapi3.T, op *openapi3.Operation) (json.RawMessage, bool, error) {
	if op.Responses == nil {
		return nil, false, nil
	}
	codes := make([]string, 0)
	for code := range op.Responses.Map() {
		if strings.HasPrefix(code, "2") {
			codes = append(codes, code)
		}
	}
	sort.Strings(codes)
	for _, code := range codes {
		resp := op.Responses.Value(code)
		if resp == nil || resp.Value == nil {
			continue
		}
		media := resp.Value.Content.Get("application/json")
		if media == nil || media.Schema == nil || media.Schema.Value == nil {
			continue
		}
		out := newSchemas(doc)
		schema, err := out.convert(media.Schema)
		if err != nil {
			return nil, false, err
		}
		if t := media.Schema.Value.Type; t != nil && t.Is("object") {
			root, _ := schema.(map[string]any)
			if root == nil {
				return nil, false, errSchema
			}
			root["type"] = "object"
			raw, err := out.root(root)
			return raw, false, err
		}
		raw, err := out.root(map[string]any{"type": "object", "properties": map[string]any{"result": schema}, "required": []string{"result"}})
		return raw, true, err
	}
	return nil, false, nil
}

// errSchema: a schema that cannot be written as JSON Schema.
var errSchema = errors.New("schema cannot be written as JSON Schema")

// componentRef starts a reference to one of the document's schemas.
const componentRef = "#/components/schemas/"

// schemas writes a document's schemas as JSON Schema (2020-12) for one
// tool schema: a schema the document shares among others by $ref goes
// into the tool schema's $defs, once, with the references rewritten to
// it, so every tool schema stands on its own, recursive ones included.
type schemas struct {
	components openapi3.Schemas
	defs       map[string]any
}

func newSchemas(doc *openapi3.T) *schemas {
	s := &schemas{defs: map[string]any{}}
	if doc.Components != nil {
		s.components = doc.Components.Schemas
	}
	return s
}

// convert writes one schema (its own $ref, if any, kept as a reference).
func (c *schemas) convert(ref *openapi3.SchemaRef) (any, error) {
	var raw []byte
	var err error
	if ref.Ref != "" {
		raw, err = json.Marshal(map[string]string{"$ref": ref.Ref})
	} else {
		raw, err = json.Marshal(ref.Value)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errSchema, err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", errSchema, err)
	}
	v = toJSONSchema(v, 0)
	if v == nil {
		return nil, errSchema
	}
	if err := c.collect(v, 0); err != nil {
		return nil, err
	}
	return v, nil
}

// collect rewrites the component references in v to $defs and adds what
// they name to c.defs.
func (c *schemas) collect(v any, depth int) error {
	if depth > 128 {
		return errSchema
	}
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			name, isComponent := strings.CutPrefix(ref, componentRef)
			if !isComponent {
				return fmt.Errorf("%w: $ref %q is not to the document's schemas", errSchema, ref)
			}
			x["$ref"] = "#/$defs/" + name
			if _, done := c.defs[name]; !done {
				target := c.components[name]
				if target == nil || target.Value == nil {
					return fmt.Errorf("%w: $ref %q names no schema", errSchema, ref)
				}
				c.defs[name] = nil // being written: a recursive reference stops here
				raw, err := json.Marshal(target.Value)
				if err != nil {
					return fmt.Errorf("%w: %v", errSchema, err)
				}
				var def any
				if err := json.Unmarshal(raw, &def); err != nil {
					return fmt.Errorf("%w: %v", errSchema, err)
				}
				def = toJSONSchema(def, 0)
				if err := c.collect(def, depth+1); err != nil {
					return err
				}
				c.defs[name] = def
			}
		}
		for k, val := range x {
			if k == "$ref" {
				continue
			}
			if err := c.collect(val, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, val := range x {
			if err := c.collect(val, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// root finishes a tool schema: an object schema with the definitions its
// parts referred to.
func (c *schemas) root(schema map[string]any) (json.RawMessage, error) {
	if len(c.defs) > 0 {
		schema["$defs"] = c.defs
	}
	return json.Marshal(schema)
}

func toJSONSchema(v any, depth int) any {
	if depth > 64 {
		return nil
	}
	switch s := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(s))
		for k, val := range s {
			switch k {
			case "nullable", "example", "discriminator", "xml", "externalDocs":
				continue
			}
			if strings.HasPrefix(k, "x-") {
				continue
			}
			out[k] = toJSONSchema(val, depth+1)
		}
		if nullable, _ := s["nullable"].(bool); nullable {
			switch t := out["type"].(type) {
			case string:
				out["type"] = []any{t, "null"}
			case []any:
				if !slices.Contains(t, any("null")) {
					out["type"] = append(t, "null")
				}
			}
		}
		if ex, ok := s["example"]; ok {
			if _, has := out["examples"]; !has {
				out["examples"] = []any{ex}
			}
		}
		return out
	case []any:
		out := make([]any, len(s))
		for i, val := range s {
			out[i] = toJSONSchema(val, depth+1)
		}
		return out
	}
	return v
}
