package opa

import (
	"context"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Call decisions of a deterministic policy are kept, keyed by everything
// of the input the policy can read: the same caller asking the same thing
// the same way gets the same answer without an evaluation. A policy that
// reads the request's headers, the rate limit's remaining budget or the
// session's history, whose
// arguments exceed maxCachedArguments, or that calls a builtin whose
// answer may change for the same input (time.now_ns, rand.intn,
// http.send, ... : OPA marks them nondeterministic) or print, is
// evaluated every time.

// maxCachedArguments bounds the arguments a kept decision is keyed by.
const maxCachedArguments = 1024

// callKey identifies a call decision: the fields of the input the policy
// reads (the others are left empty), the identity by pointer (the broker
// passes one pointer per principal), and the policy's version.
type callKey struct {
	identity                                  *Identity
	definition                                *Tool
	version                                   uint64
	method, tool, prompt, resource, arguments string
	httpMethod, path, source, app, purpose    string
	labels                                    string
}

// decideCall answers a call from the kept decisions when it may.
func (p *Policy) decideCall(ctx context.Context, c *compiled, in *Input) Decision {
	key, ok := p.callKeyOf(c, in)
	if ok {
		if d, hit := p.calls.Get(key); hit {
			return d
		}
	}
	d, final := p.evaluateOnce(ctx, c, in)
	d.Policy, d.Hash = p.Name(), c.hash
	if ok && final {
		p.calls.Add(key, d)
	}
	return d
}

// callKeyOf is the key of a call decision; ok false when it is not kept.
func (p *Policy) callKeyOf(c *compiled, in *Input) (key callKey, ok bool) {
	r := c.reads
	if p.calls == nil || !c.deterministic || r&(fieldHeaders|fieldLimit|fieldSessionCalls|fieldSessionLabels) != 0 {
		return key, false
	}
	key.version = c.version
	if r&(fieldToken|fieldSubject|fieldActor) != 0 {
		key.identity = in.Identity
	}
	if r&fieldTool != 0 {
		key.definition = in.Tool
	}
	if r&fieldMethod != 0 {
		key.method = in.Method
	}
	if r&(fieldToolName|fieldToolArguments) != 0 {
		key.tool = in.ToolName
	}
	if r&(fieldPromptName|fieldPromptArguments) != 0 {
		key.prompt = in.PromptName
	}
	if r&fieldResourceURI != 0 {
		key.resource = in.ResourceURI
	}
	if r&(fieldToolArguments|fieldPromptArguments) != 0 {
		if len(in.Arguments) > maxCachedArguments {
			return key, false
		}
		key.arguments = string(in.Arguments)
	}
	if r&fieldHTTPMethod != 0 {
		key.httpMethod = in.HTTPMethod
	}
	if r&fieldPath != 0 {
		key.path = in.Path
	}
	if r&fieldSourceIP != 0 {
		key.source = in.SourceIP
	}
	if r&fieldApp != 0 {
		key.app = in.App
	}
	if r&fieldPurpose != 0 {
		key.purpose = in.Purpose
	}
	if r&fieldLabels != 0 {
		key.labels = strings.Join(in.Labels, "\x00")
	}
	return key, true
}

// deterministic reports whether a compiled module calls only builtins
// whose answers depend on their arguments alone, and does not print.
func deterministic(m *ast.Module) bool {
	ok := true
	ast.WalkExprs(m, func(e *ast.Expr) bool {
		if !ok || !e.IsCall() {
			return !ok
		}
		if impure(e.Operator().String()) {
			ok = false
		}
		return !ok
	})
	if !ok {
		return false
	}
	// Calls nested in terms (f(g(x)) or x := time.now_ns()) are terms,
	// not expressions.
	ast.WalkTerms(m, func(t *ast.Term) bool {
		if call, isCall := t.Value.(ast.Call); isCall && len(call) > 0 {
			if impure(call[0].String()) {
				ok = false
			}
		}
		return !ok
	})
	return ok
}

// impure reports a builtin whose answer may change for the same arguments,
// or that has an effect (printing, tracing).
func impure(name string) bool {
	switch name {
	case ast.Print.Name, ast.InternalPrint.Name, ast.Trace.Name:
		return true
	}
	b, builtin := ast.BuiltinMap[name]
	return builtin && b.Nondeterministic
}
