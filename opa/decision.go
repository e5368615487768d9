package opa

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Decision is a policy's answer. Only Allowed matters for enforcement; the
// rest is for the agent (ExternalMessage), the token exchange (Scopes) and
// the audit log (Reason, Version).
type Decision struct {
	Allowed bool
	// ExternalMessage is result.external_message when it is a string: what
	// the policy wants the agent told.
	ExternalMessage string
	// Scopes is result.scopes (an array or set of strings); nil when the
	// policy sets none. Shared with the list cache: do not modify.
	Scopes []string
	// Redact is result.redact: true asks for every detector of redaction
	// on the result ("*"), an array or set of detector names for those;
	// nil when the policy asks for none. Shared with the caches: do not
	// modify.
	Redact []string
	// Labels is result.labels (an array or set of strings): data labels
	// the policy gives the call, kept in the session's history with the
	// configured ones. Shared with the caches: do not modify.
	Labels []string
	// Approval is result.approval: the call may go ahead once a person
	// approves exactly it. Set only on a denial.
	Approval *Approval
	// Reason says why: one of the Reason constants, or ReasonError followed
	// by the error.
	Reason string
	// Version is the policy version that decided.
	Version uint64
	// Policy names the policy; Hash is the SHA-256 of the source text of
	// the version that decided: together what an audit record needs to
	// find the rules that decided.
	Policy string
	Hash   [32]byte
}

// Reasons a decision gives.
const (
	ReasonAllowed    = "allowed"
	ReasonDenied     = "denied by policy"                                    // allowed is false
	ReasonUndefined  = "undefined"                                           // result or result.allowed is undefined
	ReasonNotObject  = "not an object"                                       // result is not an object
	ReasonNotBoolean = "not a boolean"                                       // allowed is not a boolean
	ReasonBadScopes  = "scopes not an array of strings"                      // a malformed result.scopes fails closed
	ReasonBadRedact  = "redact not a boolean or an array of strings"         // a malformed result.redact fails closed
	ReasonBadLabels  = "labels not an array of strings"                      // a malformed result.labels fails closed
	ReasonBadApprove = "approval not an object of reason, approvers and ttl" // a malformed result.approval fails closed
	ReasonTimeout    = "policy timeout"                                      // the decision took longer than Options.Timeout or the context allowed
	ReasonError      = "evaluation error: "                                  // prefix; the error follows
)

var (
	keyAllowed         = ast.InternedTerm("allowed")
	keyExternalMessage = ast.InternedTerm("external_message")
	keyScopes          = ast.InternedTerm("scopes")
	keyRedact          = ast.InternedTerm("redact")
	keyLabels          = ast.InternedTerm("labels")
	keyApproval        = ast.InternedTerm("approval")
	keyReason          = ast.InternedTerm("reason")
	keyApprovers       = ast.InternedTerm("approvers")
	keyTTL             = ast.InternedTerm("ttl")
)

// Approval is what a policy asks of a call that needs a person's yes.
type Approval struct {
	// Reason is shown to the approver and the agent.
	Reason string
	// Approvers is ApproversSelf (the user the call is made for) or the
	// name of a group whose members, never the user, may approve.
	Approvers string
	// TTL is how long an approval stays good for its one call; zero
	// leaves it to the configured default.
	TTL time.Duration
}

// ApproversSelf names the user the call is made for as its approver.
const ApproversSelf = "self"

// maxApprovalTTL bounds result.approval.ttl.
const maxApprovalTTL = 24 * time.Hour

// readApproval reads result.approval: {"reason": string?, "approvers":
// string?, "ttl": duration string or seconds?}.
func readApproval(v ast.Value) (*Approval, bool) {
	o, ok := v.(ast.Object)
	if !ok {
		return nil, false
	}
	a := &Approval{Approvers: ApproversSelf}
	valid := true
	o.Foreach(func(k, v *ast.Term) {
		switch {
		case k.Equal(keyReason):
			s, isString := v.Value.(ast.String)
			valid = valid && isString
			a.Reason = string(s)
		case k.Equal(keyApprovers):
			s, isString := v.Value.(ast.String)
			valid = valid && isString && s != ""
			a.Approvers = string(s)
		case k.Equal(keyTTL):
			switch t := v.Value.(type) {
			case ast.String:
				d, err := time.ParseDuration(string(t))
				valid = valid && err == nil
				a.TTL = d
			case ast.Number:
				seconds, isInt := t.Int64()
				valid = valid && isInt
				a.TTL = time.Duration(seconds) * time.Second
			default:
				valid = false
			}
		default:
			valid = false
		}
	})
	if !valid || a.TTL < 0 || a.TTL > maxApprovalTTL {
		return nil, false
	}
	return a, true
}

// RedactAll is Decision.Redact when the policy asks for every detector.
const RedactAll = "*"

// evaluateOnce runs the prepared query for in. final is false for outcomes
// that may differ on the next try (timeouts, cancellation, panics), which
// the list cache must not keep.
func (p *Policy) evaluateOnce(ctx context.Context, c *compiled, in *Input) (d Decision, final bool) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("policy evaluation panicked; denying", "panic", r, "stack", string(debug.Stack()))
			d, final = Decision{Reason: fmt.Sprintf("%spanic: %v", ReasonError, r), Version: c.version}, false
		}
	}()
	input, err := p.input(c.reads, in)
	if err != nil {
		return Decision{Reason: ReasonError + err.Error(), Version: c.version}, true
	}

	// One cancel flag serves both the policy's own time limit and the
	// caller's context; neither leaves a goroutine or timer behind.
	cancel := topdown.NewCancel()
	timer := time.AfterFunc(p.opts.Timeout, cancel.Cancel)
	stopContext := func() bool { return false }
	if ctx.Done() != nil {
		stopContext = context.AfterFunc(ctx, cancel.Cancel)
	}
	rs, err := c.query.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(metrics.NoOp()),
	)
	timedOut := !timer.Stop()
	stopContext()

	if err != nil {
		switch {
		case timedOut || errors.Is(ctx.Err(), context.DeadlineExceeded):
			return Decision{Reason: ReasonTimeout, Version: c.version}, false
		case ctx.Err() != nil:
			return Decision{Reason: ReasonError + ctx.Err().Error(), Version: c.version}, false
		}
		return Decision{Reason: ReasonError + err.Error(), Version: c.version}, true
	}
	return readResult(rs, c.version), true
}

// readResult interprets data.orchestrator.result.
func readResult(rs rego.ResultSet, version uint64) Decision {
	d := Decision{Version: version}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		d.Reason = ReasonUndefined
		return d
	}
	term, _ := rs[0].Expressions[0].Value.(*ast.Term)
	if term == nil {
		d.Reason = ReasonUndefined
		return d
	}
	return interpret(term.Value, version)
}

// ResultDecision is the decision the broker reads from result, a value of
// data.orchestrator.result as the rego package returns it (policy eval
// shows it).
func ResultDecision(result any) Decision {
	v, err := ast.InterfaceToValue(result)
	if err != nil {
		return Decision{Reason: ReasonError + err.Error()}
	}
	return interpret(v, 0)
}

// interpret reads a result object.
func interpret(v ast.Value, version uint64) Decision {
	d := Decision{Version: version}
	result, ok := v.(ast.Object)
	if !ok {
		d.Reason = ReasonNotObject
		return d
	}
	if m := result.Get(keyExternalMessage); m != nil {
		if s, ok := m.Value.(ast.String); ok {
			d.ExternalMessage = string(s)
		}
	}
	allowed := result.Get(keyAllowed)
	if allowed == nil {
		d.Reason = ReasonUndefined
		return d
	}
	b, ok := allowed.Value.(ast.Boolean)
	if !ok {
		d.Reason = ReasonNotBoolean
		return d
	}
	if s := result.Get(keyScopes); s != nil {
		if d.Scopes, ok = stringList(s.Value); !ok {
			d.Reason = ReasonBadScopes
			return d
		}
	}
	if r := result.Get(keyRedact); r != nil {
		switch v := r.Value.(type) {
		case ast.Boolean:
			if v {
				d.Redact = []string{RedactAll}
			}
		default:
			if d.Redact, ok = stringList(v); !ok {
				d.Reason = ReasonBadRedact
				return d
			}
		}
	}
	if l := result.Get(keyLabels); l != nil {
		if d.Labels, ok = stringList(l.Value); !ok {
			d.Reason = ReasonBadLabels
			return d
		}
	}
	if !b {
		d.Reason = ReasonDenied
		if a := result.Get(keyApproval); a != nil {
			if d.Approval, ok = readApproval(a.Value); !ok {
				d.Reason = ReasonBadApprove
			}
		}
		return d
	}
	d.Allowed, d.Reason = true, ReasonAllowed
	return d
}

// stringList reads an array or set of strings.
func stringList(v ast.Value) ([]string, bool) {
	var out []string
	ok := true
	add := func(t *ast.Term) {
		if s, isString := t.Value.(ast.String); isString {
			out = append(out, string(s))
		} else {
			ok = false
		}
	}
	switch v := v.(type) {
	case *ast.Array:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	case ast.Set:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	default:
		return nil, false
	}
	if !ok {
		return nil, false
	}
	return out, true
}
