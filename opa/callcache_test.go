package opa

import (
	"context"
	"encoding/json"
	"testing"
)

func compileTest(t *testing.T, rego string) *Policy {
	t.Helper()
	p, err := Compile(context.Background(), Source{Name: "test", Rego: rego}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A deterministic policy's call decisions are kept per caller and per
// what it reads; the same question gets the same answer, other arguments
// or another caller are asked afresh.
func TestCallDecisionsKept(t *testing.T) {
	p := compileTest(t, `package orchestrator
default result := {"allowed": false}
result := {"allowed": true} if {
	input.subject.sub == "alice"
	input.request.mcp.tool.params.arguments.amount < 1000
}`)
	alice, bob := &Identity{Subject: "alice"}, &Identity{Subject: "bob"}
	ask := func(who *Identity, amount int) bool {
		args, _ := json.Marshal(map[string]int{"amount": amount})
		return p.Decide(context.Background(), &Input{Method: "tools/call", ToolName: "pay", Arguments: args, Purpose: PurposeCall, Identity: who}).Allowed
	}
	for range 2 {
		if !ask(alice, 10) || ask(alice, 5000) || ask(bob, 10) {
			t.Fatal("wrong decision")
		}
	}
	if n := p.calls.Len(); n != 3 {
		t.Errorf("%d call decisions kept, want 3 (alice 10, alice 5000, bob 10)", n)
	}
}

// Policies whose answer may change for the same input, or that print,
// read headers or the rate limit's budget, are evaluated every time.
func TestCallDecisionsNotKept(t *testing.T) {
	for name, rego := range map[string]string{
		"time":    `result := {"allowed": time.now_ns() > 0}`,
		"nested":  `result := {"allowed": x} if { x := time.now_ns() > 0 }`,
		"random":  `result := {"allowed": rand.intn("k", 10) >= 0}`,
		"print":   `result := {"allowed": true} if { print("hello") }`,
		"jwt":     `result := {"allowed": v} if { [v, _, _] := io.jwt.decode_verify("x.y.z", {"secret": "s"}) }`,
		"headers": `result := {"allowed": input.request.http.headers["X-A"] == "1"}`,
		"limit":   `result := {"allowed": input.limit.remaining > 0}`,
	} {
		p := compileTest(t, "package orchestrator\n"+rego)
		in := &Input{Method: "tools/call", ToolName: "t", Purpose: PurposeCall, Limit: &Limit{Name: "l", Remaining: 1}}
		p.Decide(context.Background(), in)
		p.Decide(context.Background(), in)
		if n := p.calls.Len(); n != 0 {
			t.Errorf("%s: %d call decisions kept, want none", name, n)
		}
	}
	// Arguments past the bound are not kept either.
	p := compileTest(t, `package orchestrator
result := {"allowed": count(input.request.mcp.tool.params.arguments.s) > 0}`)
	big, _ := json.Marshal(map[string]string{"s": string(make([]byte, maxCachedArguments))})
	p.Decide(context.Background(), &Input{Method: "tools/call", ToolName: "t", Arguments: big, Purpose: PurposeCall})
	if n := p.calls.Len(); n != 0 {
		t.Errorf("large arguments: %d call decisions kept, want none", n)
	}
}

// A reloaded policy's decisions are its own.
func TestCallDecisionsFollowReload(t *testing.T) {
	p := compileTest(t, `package orchestrator
result := {"allowed": input.request.mcp.tool.params.name == "a"}`)
	in := func() *Input { return &Input{Method: "tools/call", ToolName: "a", Purpose: PurposeCall} }
	if !p.Decide(context.Background(), in()).Allowed {
		t.Fatal("a refused")
	}
	if err := p.reload(context.Background(), []byte(`package orchestrator
result := {"allowed": input.request.mcp.tool.params.name == "b"}`)); err != nil {
		t.Fatal(err)
	}
	if p.Decide(context.Background(), in()).Allowed {
		t.Error("after the reload, a kept decision of the old policy allowed a")
	}
}

// A policy that reads input.labels is asked again for other labels, even
// when nothing else it reads differs.
func TestCallDecisionsKeyedByLabels(t *testing.T) {
	p := compileTest(t, `package orchestrator
default result := {"allowed": true}
result := {"allowed": false} if "external" in input.labels`)
	ask := func(labels ...string) bool {
		return p.Decide(context.Background(), &Input{Method: "tools/call", ToolName: "send", Purpose: PurposeCall, Labels: labels}).Allowed
	}
	if !ask("internal") || ask("external") || !ask() {
		t.Fatal("a decision on one call's labels was kept for another's")
	}
}
