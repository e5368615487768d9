package opa

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Input is what the broker knows about one request, or one list item, when
// it asks the policy. Empty fields are absent from the policy's input.
type Input struct {
	Method      string          // input.request.mcp.method
	ToolName    string          // input.request.mcp.tool.params.name, namespace already stripped
	Arguments   json.RawMessage // input.request.mcp.tool.params.arguments, or the prompt's arguments when PromptName is set
	ResourceURI string          // input.request.mcp.resource.params.uri
	PromptName  string          // input.request.mcp.prompt.params.name
	HTTPMethod  string          // input.request.http.method
	Path        string          // input.request.http.path
	Headers     http.Header     // input.request.http.headers: canonical name -> values joined by ", "
	SourceIP    string          // input.source.ip
	App         string          // input.app.name
	Purpose     string          // input.purpose: PurposeCall or PurposeList
	// Limit is the rate limit that counted the call and what is left of
	// its budget (input.limit.name, input.limit.remaining); nil when no
	// limit counts it, and for list items.
	Limit *Limit
	// Tool is the tool a tools/call names, as the broker holds its
	// definition: input.tool.definition, input.tool.hash and
	// input.tool.pin. nil when the broker holds none (pinning and
	// validation off, or another method). Like Identity, it is converted
	// once per pointer: pass the same pointer for the same definition and
	// do not modify it after use.
	Tool *Tool
	// Labels are the data labels the configuration gives the call's app
	// and tool (input.labels); nil for none.
	Labels []string
	// Session is what the caller did before in its session (input.session);
	// nil when session history is off, and for list items.
	Session *Session
	// Identity is the verified caller; nil for anonymous calls, which have
	// no input.token, input.subject or input.actor. The policy converts each
	// Identity once and keeps the result by pointer, so pass the same
	// pointer for the same principal and do not modify it after use.
	Identity *Identity
}

// Tool is a tool's definition as the policy sees it.
type Tool struct {
	// Definition is the definition the broker holds (the pinned one
	// when the tool is pinned): name, title, description, inputSchema,
	// outputSchema, annotations.
	Definition json.RawMessage
	// Hash is the hex SHA-256 of its canonical form.
	Hash string
	// Pin is the definition's standing: "approved" (it matches its pin),
	// "changed" (it differs from its pin; served only in warn mode),
	// "held" (new, waiting for approval), "unclean" (refused by the
	// definition checks) or "unpinned" (pinning off).
	Pin string
}

// Session is a session's history as the policy sees it: input.session.calls
// (oldest first) and input.session.labels, the labels of the calls that were
// allowed, each once.
type Session struct {
	Calls  []SessionCall
	Labels []string
}

// SessionCall is one earlier call of the session: input.session.calls[i].
type SessionCall struct {
	Method   string   // "tools/call", "prompts/get", "resources/read"
	App      string   // the app it was routed to
	Name     string   // the tool's or prompt's name (namespace stripped), or the resource's URI
	Decision string   // "allowed", "denied", "approval_required" or "failed"
	Time     int64    // when, in seconds since the epoch
	Labels   []string // the app's, the tool's and the policy's labels
}

// Limit is a call's rate limit as the policy sees it.
type Limit struct {
	Name      string
	Remaining int
}

// Purposes of a decision.
const (
	PurposeCall = "call" // a request about to be forwarded
	PurposeList = "list" // whether a list shows an item; cached
)

// Identity is the verified caller as the policy sees it.
type Identity struct {
	Claims   map[string]any // input.token.claims: every validated claim
	Subject  string         // input.subject.sub
	Issuer   string         // input.subject.iss
	Groups   []string       // input.subject.groups
	Scopes   []string       // input.subject.scopes
	ClientID string         // input.actor.client_id
	// ActorChain names the act claim's actors (sub, or client_id for a link
	// without sub), outermost (the current actor)
	// first: input.actor.chain. input.actor.sub is its first element, or
	// ClientID when there is no act claim.
	ActorChain []string
}

// field is a set of input leaves, to build only what the policy reads.
type field uint32

const (
	fieldMethod field = 1 << iota
	fieldToolName
	fieldToolArguments
	fieldResourceURI
	fieldPromptName
	fieldPromptArguments
	fieldHTTPMethod
	fieldPath
	fieldHeaders
	fieldSourceIP
	fieldApp
	fieldPurpose
	fieldToken
	fieldTool
	fieldSubject
	fieldActor
	fieldLimit
	fieldLabels
	fieldSessionCalls
	fieldSessionLabels

	fieldAll field = 1<<iota - 1
)

// schemaNode is one object of the input's shape.
type schemaNode struct {
	fields   field // the leaves at or under this node
	children map[string]*schemaNode
}

func leaf(f field) *schemaNode { return &schemaNode{fields: f} }

func object(children map[string]*schemaNode) *schemaNode {
	n := &schemaNode{children: children}
	for _, c := range children {
		n.fields |= c.fields
	}
	return n
}

func params(children map[string]*schemaNode) *schemaNode {
	return object(map[string]*schemaNode{"params": object(children)})
}

// inputSchema is the shape doc.go documents; token, subject and actor are
// leaves because they are converted once per identity anyway.
var inputSchema = object(map[string]*schemaNode{
	"request": object(map[string]*schemaNode{
		"mcp": object(map[string]*schemaNode{
			"method":   leaf(fieldMethod),
			"tool":     params(map[string]*schemaNode{"name": leaf(fieldToolName), "arguments": leaf(fieldToolArguments)}),
			"resource": params(map[string]*schemaNode{"uri": leaf(fieldResourceURI)}),
			"prompt":   params(map[string]*schemaNode{"name": leaf(fieldPromptName), "arguments": leaf(fieldPromptArguments)}),
		}),
		"http": object(map[string]*schemaNode{
			"method":  leaf(fieldHTTPMethod),
			"path":    leaf(fieldPath),
			"headers": leaf(fieldHeaders),
		}),
	}),
	"source":  object(map[string]*schemaNode{"ip": leaf(fieldSourceIP)}),
	"app":     object(map[string]*schemaNode{"name": leaf(fieldApp)}),
	"purpose": leaf(fieldPurpose),
	"token":   leaf(fieldToken),
	"subject": leaf(fieldSubject),
	"actor":   leaf(fieldActor),
	"limit":   object(map[string]*schemaNode{"name": leaf(fieldLimit), "remaining": leaf(fieldLimit)}),
	"tool":    leaf(fieldTool),
	"labels":  leaf(fieldLabels),
	"session": object(map[string]*schemaNode{"calls": leaf(fieldSessionCalls), "labels": leaf(fieldSessionLabels)}),
})

// inputReads over-approximates the input leaves a compiled module can read:
// every reference into input selects the leaves under its constant prefix
// (input.request.mcp[x] selects all of mcp), and input used as a value
// (walk(input), x := input) selects everything.
func inputReads(m *ast.Module) field {
	var reads field
	var visitor *ast.GenericVisitor
	visitor = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case ast.Ref:
			if !x.HasPrefix(ast.InputRootRef) {
				return false
			}
			reads |= readsOf(x)
			for _, t := range x[1:] { // input.a[input.b]
				visitor.Walk(t)
			}
			return true
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				reads = fieldAll
			}
		}
		return false
	})
	visitor.Walk(m)
	return reads
}

// readsOf is the leaves a reference into input can reach.
func readsOf(ref ast.Ref) field {
	node := inputSchema
	for _, t := range ref[1:] {
		if node.children == nil {
			return node.fields // into a leaf: input.token.claims.sub
		}
		key, ok := t.Value.(ast.String)
		if !ok {
			return node.fields // a variable or computed key
		}
		if node = node.children[string(key)]; node == nil {
			return 0 // a path the broker never provides
		}
	}
	return node.fields
}

// Keys and common values, made once: the input is rebuilt per call.
var (
	termRequest    = ast.StringTerm("request")
	termMCP        = ast.StringTerm("mcp")
	termMethod     = ast.StringTerm("method")
	termTool       = ast.StringTerm("tool")
	termResource   = ast.StringTerm("resource")
	termPrompt     = ast.StringTerm("prompt")
	termParams     = ast.StringTerm("params")
	termName       = ast.StringTerm("name")
	termArguments  = ast.StringTerm("arguments")
	termURI        = ast.StringTerm("uri")
	termHTTP       = ast.StringTerm("http")
	termPath       = ast.StringTerm("path")
	termHeaders    = ast.StringTerm("headers")
	termSource     = ast.StringTerm("source")
	termIP         = ast.StringTerm("ip")
	termApp        = ast.StringTerm("app")
	termPurpose    = ast.StringTerm("purpose")
	termToken      = ast.StringTerm("token")
	termClaims     = ast.StringTerm("claims")
	termSubject    = ast.StringTerm("subject")
	termSub        = ast.StringTerm("sub")
	termIss        = ast.StringTerm("iss")
	termGroups     = ast.StringTerm("groups")
	termScopes     = ast.StringTerm("scopes")
	termActor      = ast.StringTerm("actor")
	termClientID   = ast.StringTerm("client_id")
	termChain      = ast.StringTerm("chain")
	termLimit      = ast.StringTerm("limit")
	termRemaining  = ast.StringTerm("remaining")
	termHash       = ast.StringTerm("hash")
	termPin        = ast.StringTerm("pin")
	termDefinition = ast.StringTerm("definition")
	termLabels     = ast.StringTerm("labels")
	termSession    = ast.StringTerm("session")
	termCalls      = ast.StringTerm("calls")
	termDecision   = ast.StringTerm("decision")
	termTime       = ast.StringTerm("time")
	commonStrings  = internTerms(
		PurposeCall, PurposeList,
		"tools/call", "tools/list", "resources/read", "resources/list", "resources/templates/list",
		"resources/subscribe", "resources/unsubscribe", "prompts/get", "prompts/list", "completion/complete",
		"initialize", "ping", "logging/setLevel",
		http.MethodGet, http.MethodPost, http.MethodDelete, "/mcp",
		"Accept", "Accept-Encoding", "Authorization", "Connection", "Content-Length", "Content-Type",
		"Cookie", "Forwarded", "Host", "Last-Event-Id", "Mcp-Protocol-Version", "Mcp-Session-Id", "Origin",
		"Traceparent", "Tracestate", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Request-Id", "application/json", "text/event-stream", "application/json, text/event-stream",
	)
)

func internTerms(values ...string) map[string]*ast.Term {
	m := make(map[string]*ast.Term, len(values))
	for _, v := range values {
		m[v] = ast.StringTerm(v)
	}
	return m
}

func item(k, v *ast.Term) [2]*ast.Term { return [2]*ast.Term{k, v} }

// builder makes the terms of one input, taking them from slabs rather than
// allocating each: an input is built per call and dropped whole.
type builder struct {
	slab []ast.Term
}

const slabSize = 32

func (b *builder) term(v ast.Value) *ast.Term {
	if len(b.slab) == 0 {
		b.slab = make([]ast.Term, slabSize)
	}
	t := &b.slab[0]
	t.Value = v
	b.slab = b.slab[1:]
	return t
}

// str is s as a term, shared when s is common.
func (b *builder) str(s string) *ast.Term {
	if t, ok := commonStrings[s]; ok {
		return t
	}
	return b.term(ast.String(s))
}

func (b *builder) object(items ...[2]*ast.Term) *ast.Term {
	return b.term(ast.NewObject(items...))
}

// input builds the policy input for in, with only the leaves in reads.
func (p *Policy) input(reads field, in *Input) (ast.Value, error) {
	var b builder
	var top [11][2]*ast.Term
	n := 0
	if reads&inputSchema.children["request"].fields != 0 {
		request, err := b.request(reads, in)
		if err != nil {
			return nil, err
		}
		if request != nil {
			top[n] = item(termRequest, request)
			n++
		}
	}
	if reads&fieldSourceIP != 0 && in.SourceIP != "" {
		top[n] = item(termSource, b.object(item(termIP, b.str(in.SourceIP))))
		n++
	}
	if reads&fieldApp != 0 && in.App != "" {
		top[n] = item(termApp, b.object(item(termName, b.str(in.App))))
		n++
	}
	if reads&fieldPurpose != 0 && in.Purpose != "" {
		top[n] = item(termPurpose, b.str(in.Purpose))
		n++
	}
	if reads&fieldLimit != 0 && in.Limit != nil && in.Purpose != PurposeList {
		top[n] = item(termLimit, b.object(item(termName, b.str(in.Limit.Name)), item(termRemaining, ast.IntNumberTerm(in.Limit.Remaining))))
		n++
	}
	if reads&fieldTool != 0 && in.Tool != nil {
		t, err := p.tool(in.Tool)
		if err != nil {
			return nil, err
		}
		top[n] = item(termTool, t)
		n++
	}
	if reads&fieldLabels != 0 && len(in.Labels) > 0 {
		top[n] = item(termLabels, stringsTerm(in.Labels))
		n++
	}
	if reads&(fieldSessionCalls|fieldSessionLabels) != 0 && in.Session != nil {
		top[n] = item(termSession, sessionTerm(in.Session, reads))
		n++
	}
	if reads&(fieldToken|fieldSubject|fieldActor) != 0 && in.Identity != nil {
		id, err := p.identity(in.Identity)
		if err != nil {
			return nil, err
		}
		if reads&fieldToken != 0 {
			top[n] = item(termToken, id.token)
			n++
		}
		if reads&fieldSubject != 0 {
			top[n] = item(termSubject, id.subject)
			n++
		}
		if reads&fieldActor != 0 {
			top[n] = item(termActor, id.actor)
			n++
		}
	}
	return ast.NewObject(top[:n]...), nil
}

// request is input.request, or nil when nothing in it is both read and set.
func (b *builder) request(reads field, in *Input) (*ast.Term, error) {
	var mcp [4][2]*ast.Term
	n := 0
	if reads&fieldMethod != 0 && in.Method != "" {
		mcp[n] = item(termMethod, b.str(in.Method))
		n++
	}
	if in.ToolName != "" && reads&(fieldToolName|fieldToolArguments) != 0 {
		t, err := b.params(reads&fieldToolName != 0, in.ToolName, reads&fieldToolArguments != 0, in.Arguments)
		if err != nil {
			return nil, err
		}
		mcp[n] = item(termTool, t)
		n++
	}
	if in.ResourceURI != "" && reads&fieldResourceURI != 0 {
		mcp[n] = item(termResource, b.object(item(termParams, b.object(item(termURI, b.str(in.ResourceURI))))))
		n++
	}
	if in.PromptName != "" && reads&(fieldPromptName|fieldPromptArguments) != 0 {
		t, err := b.params(reads&fieldPromptName != 0, in.PromptName, reads&fieldPromptArguments != 0, in.Arguments)
		if err != nil {
			return nil, err
		}
		mcp[n] = item(termPrompt, t)
		n++
	}

	var web [3][2]*ast.Term
	m := 0
	if reads&fieldHTTPMethod != 0 && in.HTTPMethod != "" {
		web[m] = item(termMethod, b.str(in.HTTPMethod))
		m++
	}
	if reads&fieldPath != 0 && in.Path != "" {
		web[m] = item(termPath, b.str(in.Path))
		m++
	}
	if reads&fieldHeaders != 0 && in.Headers != nil {
		web[m] = item(termHeaders, b.headers(in.Headers))
		m++
	}

	var request [2][2]*ast.Term
	k := 0
	if n > 0 {
		request[k] = item(termMCP, b.object(mcp[:n]...))
		k++
	}
	if m > 0 {
		request[k] = item(termHTTP, b.object(web[:m]...))
		k++
	}
	if k == 0 {
		return nil, nil
	}
	return b.object(request[:k]...), nil
}

// params is {"params": {"name": name, "arguments": arguments}}.
func (b *builder) params(withName bool, name string, withArguments bool, arguments json.RawMessage) (*ast.Term, error) {
	var fields [2][2]*ast.Term
	n := 0
	if withName {
		fields[n] = item(termName, b.str(name))
		n++
	}
	if withArguments && len(arguments) > 0 {
		v, err := b.json(arguments)
		if err != nil {
			return nil, fmt.Errorf("arguments: %w", err)
		}
		fields[n] = item(termArguments, v)
		n++
	}
	return b.object(item(termParams, b.object(fields[:n]...))), nil
}

// headers is Strata's shape: each header one string, values joined.
func (b *builder) headers(h http.Header) *ast.Term {
	items := make([][2]*ast.Term, 0, len(h))
	for name, values := range h {
		var v string
		switch len(values) {
		case 0:
			continue
		case 1:
			v = values[0]
		default:
			v = strings.Join(values, ", ")
		}
		items = append(items, item(b.str(name), b.str(v)))
	}
	return b.object(items...)
}

// identityTerms is an Identity converted for the input, kept per pointer.
type identityTerms struct {
	token, subject, actor *ast.Term
}

func (p *Policy) identity(id *Identity) (*identityTerms, error) {
	if t, ok := p.identities.Get(id); ok {
		return t, nil
	}
	t, err := convertIdentity(id)
	if err != nil {
		return nil, err
	}
	p.identities.Add(id, t)
	return t, nil
}

// tool is input.tool for t, converted once per pointer.
func (p *Policy) tool(t *Tool) (*ast.Term, error) {
	if term, ok := p.tools.Get(t); ok {
		return term, nil
	}
	items := [][2]*ast.Term{item(termHash, ast.StringTerm(t.Hash)), item(termPin, ast.StringTerm(t.Pin))}
	if len(t.Definition) > 0 {
		definition, err := ast.ValueFromReader(bytes.NewReader(t.Definition))
		if err != nil {
			return nil, fmt.Errorf("tool definition: %w", err)
		}
		items = append(items, item(termDefinition, ast.NewTerm(definition)))
	}
	term := ast.ObjectTerm(items...)
	p.tools.Add(t, term)
	return term, nil
}

func convertIdentity(id *Identity) (*identityTerms, error) {
	claims := ast.NewObject()
	if id.Claims != nil {
		v, err := ast.InterfaceToValue(id.Claims)
		if err != nil {
			return nil, fmt.Errorf("token claims: %w", err)
		}
		claims = v.(ast.Object)
	}

	subject := ast.NewObject(
		item(termGroups, stringsTerm(id.Groups)),
		item(termScopes, stringsTerm(id.Scopes)),
	)
	if id.Subject != "" {
		subject.Insert(termSub, ast.StringTerm(id.Subject))
	}
	if id.Issuer != "" {
		subject.Insert(termIss, ast.StringTerm(id.Issuer))
	}

	actor := ast.NewObject(item(termChain, stringsTerm(id.ActorChain)))
	if id.ClientID != "" {
		actor.Insert(termClientID, ast.StringTerm(id.ClientID))
	}
	switch {
	case len(id.ActorChain) > 0:
		actor.Insert(termSub, ast.StringTerm(id.ActorChain[0]))
	case id.ClientID != "":
		actor.Insert(termSub, ast.StringTerm(id.ClientID))
	}

	return &identityTerms{
		token:   ast.ObjectTerm(item(termClaims, ast.NewTerm(claims))),
		subject: ast.NewTerm(subject),
		actor:   ast.NewTerm(actor),
	}, nil
}

// sessionTerm is input.session, with the calls only for a policy that
// reads them.
func sessionTerm(s *Session, reads field) *ast.Term {
	labels := item(termLabels, stringsTerm(s.Labels))
	if reads&fieldSessionCalls == 0 {
		return ast.ObjectTerm(labels)
	}
	calls := make([]*ast.Term, len(s.Calls))
	for i, c := range s.Calls {
		calls[i] = ast.ObjectTerm(
			item(termMethod, ast.StringTerm(c.Method)),
			item(termApp, ast.StringTerm(c.App)),
			item(termName, ast.StringTerm(c.Name)),
			item(termDecision, ast.StringTerm(c.Decision)),
			item(termTime, ast.IntNumberTerm(int(c.Time))),
			item(termLabels, stringsTerm(c.Labels)),
		)
	}
	return ast.ObjectTerm(item(termCalls, ast.ArrayTerm(calls...)), labels)
}

// stringsTerm is an array, empty rather than absent, so `x in groups` needs
// no guard.
func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}
