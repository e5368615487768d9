package opa

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown/print"
)

// Source is where a policy comes from: exactly one of Rego (inline text) or
// File (a path, which [Policy.Watch] can reload). Name labels the policy in
// errors and logs.
type Source struct {
	Name string
	Rego string
	File string
}

func (s Source) label() string {
	if s.Name != "" {
		return s.Name
	}
	return s.File
}

// Options tune a policy. The zero value is the defaults.
type Options struct {
	// Logger receives the policy's print() output (debug), reloads and
	// recovered panics. Nil means slog.Default().
	Logger *slog.Logger
	// CacheSize is how many list decisions, and how many call decisions
	// of a deterministic policy, are kept; default 10000 each, negative
	// disables both caches.
	CacheSize int
	// IdentityCacheSize is how many converted identities are kept; default 4096.
	IdentityCacheSize int
	// Timeout bounds one decision, in wall time; default 250ms, room for a
	// busy machine's scheduling on top of a policy's few microseconds. A
	// decision that takes longer denies with reason "policy timeout".
	Timeout time.Duration
	// StrictBuiltinErrors turns builtin errors (a division by zero, a bad
	// JWT) into evaluation errors that deny, instead of OPA's default of
	// making the expression undefined.
	StrictBuiltinErrors bool
}

const (
	defaultCacheSize         = 10000
	defaultIdentityCacheSize = 4096
	defaultTimeout           = 250 * time.Millisecond
	defaultWatchInterval     = 2 * time.Second
)

// query is the one rule the broker asks about.
const query = "data.orchestrator.result"

var orchestratorPath = ast.MustParseRef("data.orchestrator")

// Policy is a compiled policy, safe for concurrent use. Watch swaps in a
// recompiled policy without disturbing decisions in flight.
type Policy struct {
	src     Source
	opts    Options
	log     *slog.Logger
	current atomic.Pointer[compiled]

	identities *lru.Cache[*Identity, *identityTerms]
	tools      *lru.Cache[*Tool, *ast.Term]  // input.tool, per definition
	decisions  *lru.Cache[listKey, Decision] // nil when disabled
	// calls keeps call decisions of a deterministic policy (callcache.go);
	// nil when disabled.
	calls *lru.Cache[callKey, Decision]

	reloadMu sync.Mutex // one recompilation at a time
}

// compiled is one successful compilation; Watch replaces it whole.
type compiled struct {
	query   rego.PreparedEvalQuery
	version uint64
	reads   field    // the input fields the policy can read
	hash    [32]byte // of the source text, to notice real changes
	// deterministic: the policy calls no builtin whose answer can differ
	// for the same input (time, randomness, the network) and prints
	// nothing, so its call decisions may be kept.
	deterministic bool
}

// Compile parses, checks and prepares a policy. It accepts Rego v1 and, for
// modules that do not parse as v1, the pre-1.0 syntax; errors name the
// source and line.
func Compile(ctx context.Context, src Source, opts Options) (*Policy, error) {
	if (src.Rego == "") == (src.File == "") {
		return nil, fmt.Errorf("opa: policy %q: %w", src.label(), ErrSource)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = defaultCacheSize
	}
	if opts.IdentityCacheSize <= 0 {
		opts.IdentityCacheSize = defaultIdentityCacheSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	p := &Policy{src: src, opts: opts, log: opts.Logger.With("policy", src.label())}
	var err error
	if p.identities, err = lru.New[*Identity, *identityTerms](opts.IdentityCacheSize); err != nil {
		return nil, err
	}
	if p.tools, err = lru.New[*Tool, *ast.Term](opts.IdentityCacheSize); err != nil {
		return nil, err
	}
	if opts.CacheSize > 0 {
		if p.decisions, err = lru.New[listKey, Decision](opts.CacheSize); err != nil {
			return nil, err
		}
		if p.calls, err = lru.New[callKey, Decision](opts.CacheSize); err != nil {
			return nil, err
		}
	}
	text := src.Rego
	if src.File != "" {
		b, err := os.ReadFile(src.File)
		if err != nil {
			return nil, fmt.Errorf("opa: policy %q: %w", src.label(), err)
		}
		text = string(b)
	}
	c, err := p.compile(ctx, text, 1)
	if err != nil {
		return nil, err
	}
	p.current.Store(c)
	return p, nil
}

// Version is the number of the policy now serving: 1 after Compile, one more
// after each successful reload.
func (p *Policy) Version() uint64 { return p.current.Load().version }

// Name is the policy's label.
func (p *Policy) Name() string { return p.src.label() }

// compile turns source text into a prepared query numbered version. It
// tries Rego v1 first and pre-1.0 Rego second: a module can fail as v1 at
// parsing (rule bodies without if) or only at compiling (builtins v1
// removed, such as any and re_match).
func (p *Policy) compile(ctx context.Context, text string, version uint64) (*compiled, error) {
	filename := p.src.File
	if filename == "" {
		filename = p.src.Name
	}
	c, parsedV1, errV1 := p.compileAs(ctx, filename, text, ast.RegoV1)
	if errV1 == nil {
		c.version = version
		return c, nil
	}
	c, parsedV0, errV0 := p.compileAs(ctx, filename, text, ast.RegoV0)
	switch {
	case errV0 == nil:
		p.log.Debug("policy uses pre-1.0 Rego", "version", version)
		c.version = version
		return c, nil
	case parsedV0 && !parsedV1:
		// Pre-1.0 syntax with a mistake past parsing: the v1 complaint
		// about missing ifs would hide it.
		return nil, fmt.Errorf("opa: policy %q (pre-1.0 Rego): %w", p.src.label(), errV0)
	case parsedV1 || errV0.Error() == errV1.Error():
		return nil, fmt.Errorf("opa: policy %q: %w", p.src.label(), errV1)
	}
	return nil, fmt.Errorf("opa: policy %q: %w\n(as pre-1.0 Rego: %v)", p.src.label(), errV1, errV0)
}

// compileAs parses text in one Rego version and prepares the query.
// parsed reports whether the text parsed, to tell which error matters.
func (p *Policy) compileAs(ctx context.Context, filename, text string, syntax ast.RegoVersion) (c *compiled, parsed bool, err error) {
	module, err := ast.ParseModuleWithOpts(filename, text, ast.ParserOptions{RegoVersion: syntax})
	if err != nil {
		return nil, false, err
	}
	if !module.Package.Path.Equal(orchestratorPath) {
		return nil, true, fmt.Errorf("%s: package %s: %w", locationOf(module.Package.Location),
			strings.TrimPrefix(module.Package.Path.String(), "data."), ErrPackage)
	}
	compiler := ast.NewCompiler().
		WithEnablePrintStatements(true).
		WithUseTypeCheckAnnotations(true).
		WithDefaultRegoVersion(syntax)
	if compiler.Compile(map[string]*ast.Module{filename: module}); compiler.Failed() {
		return nil, true, compiler.Errors
	}
	compiledModule := compiler.Modules[filename]
	if !definesResult(compiledModule) {
		return nil, true, ErrNoResult
	}
	prepared, err := rego.New(
		rego.Compiler(compiler),
		rego.Query(query),
		rego.StrictBuiltinErrors(p.opts.StrictBuiltinErrors),
		rego.EnablePrintStatements(true),
		rego.PrintHook(printHook{p.log}),
		// The result stays an AST term: no conversion to Go values per call.
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, true, err
	}
	return &compiled{
		query:         prepared,
		reads:         inputReads(compiledModule),
		hash:          sourceHash([]byte(text)),
		deterministic: deterministic(compiledModule),
	}, true, nil
}

// definesResult reports whether the module has a rule for result, complete
// (result := {...}) or partial (result["allowed"] := true).
func definesResult(m *ast.Module) bool {
	for _, r := range m.Rules {
		if ref := r.Head.Ref(); len(ref) > 0 && ref[0].Value.Compare(ast.Var("result")) == 0 {
			return true
		}
	}
	return false
}

func locationOf(l *ast.Location) string {
	if l == nil {
		return "?"
	}
	return fmt.Sprintf("%s:%d", l.File, l.Row)
}

// printHook sends the policy's print() calls to the log.
type printHook struct{ log *slog.Logger }

func (h printHook) Print(ctx print.Context, msg string) error {
	h.log.Debug("policy print", "location", locationOf(ctx.Location), "message", msg)
	return nil
}

// Hash is the SHA-256 of the current version's source text.
func (p *Policy) Hash() [32]byte { return p.current.Load().hash }

// EvalRaw evaluates the current version for an input given as a JSON
// value, as `policy eval` does: the result as the policy wrote it, and
// the broker's reading of it.
func (p *Policy) EvalRaw(ctx context.Context, input any) (any, Decision) {
	c := p.current.Load()
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	rs, err := c.query.Eval(ctx, rego.EvalInput(input))
	switch {
	case err != nil:
		return nil, Decision{Reason: ReasonError + err.Error(), Version: c.version, Policy: p.Name(), Hash: c.hash}
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return nil, Decision{Reason: ReasonUndefined, Version: c.version, Policy: p.Name(), Hash: c.hash}
	}
	result := rs[0].Expressions[0].Value
	var d Decision
	if term, ok := result.(*ast.Term); ok {
		// The prepared query answers terms (decision.go).
		d = interpret(term.Value, c.version)
		result, _ = ast.JSON(term.Value)
	} else {
		d = ResultDecision(result)
	}
	d.Version, d.Policy, d.Hash = c.version, p.Name(), c.hash
	return result, d
}

// ReadsSession reports whether the policy's current version can read
// input.session, so that the history is fetched only for policies that
// use it.
func (p *Policy) ReadsSession() bool {
	return p.current.Load().reads&(fieldSessionCalls|fieldSessionLabels) != 0
}

// Decide evaluates the policy for one request or one list item. It never
// fails: anything but result.allowed == true denies, with the reason.
func (p *Policy) Decide(ctx context.Context, in *Input) Decision {
	if in == nil {
		in = &Input{}
	}
	c := p.current.Load()
	if in.Purpose != PurposeList {
		return p.decideCall(ctx, c, in)
	}
	if p.decisions == nil {
		d, _ := p.evaluateOnce(ctx, c, in)
		d.Policy, d.Hash = p.Name(), c.hash
		return d
	}
	key := listKey{
		identity: in.Identity, version: c.version, app: in.App, method: in.Method,
		tool: in.ToolName, prompt: in.PromptName, resource: in.ResourceURI, source: in.SourceIP,
	}
	if d, ok := p.decisions.Get(key); ok {
		return d
	}
	d, final := p.evaluateOnce(ctx, c, in)
	d.Policy, d.Hash = p.Name(), c.hash
	if final {
		p.decisions.Add(key, d)
	}
	return d
}

// listKey identifies a list decision. The source address is part of it,
// since network rules are common; headers are not: a list shows what the
// principal may use from where it is, and the call itself is decided
// afresh.
type listKey struct {
	identity                                    *Identity
	version                                     uint64
	app, method, tool, prompt, resource, source string
}
