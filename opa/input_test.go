package opa

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestInputReads(t *testing.T) {
	mcp := fieldMethod | fieldToolName | fieldToolArguments | fieldResourceURI | fieldPromptName | fieldPromptArguments
	tests := []struct {
		name, rules string
		want        field
	}{
		{"none", `result := {"allowed": true}`, 0},
		{"tool name", `result := {"allowed": input.request.mcp.tool.params.name == "a"}`, fieldToolName},
		{"into arguments", `result := {"allowed": input.request.mcp.tool.params.arguments.path == "a"}`, fieldToolArguments},
		{"into claims", `result := {"allowed": input.token.claims.sub == "a"}`, fieldToken},
		{"two leaves", `result := {"allowed": input.app.name == input.purpose}`, fieldApp | fieldPurpose},
		{"a subtree", `result := {"allowed": count(input.request.http) > 0}`, fieldHTTPMethod | fieldPath | fieldHeaders},
		{"dynamic key", `result := {"allowed": true} if { some k; input.request.mcp[k] }`, mcp},
		{"computed key", `result := {"allowed": true} if input.request.mcp[concat("", ["me", "thod"])] == "a"`, mcp},
		{"key from input", `result := {"allowed": true} if input.request.mcp[input.purpose]`, mcp | fieldPurpose},
		{"unknown path", `result := {"allowed": input.nothing.here == 1}`, 0},
		{"whole input", `result := {"allowed": count(input) > 0}`, fieldAll},
		{"input bound", `result := {"allowed": x.app.name == "a"} if x := input`, fieldAll},
		{"walk", `result := {"allowed": true} if walk(input, [_, "a"])`, fieldAll},
		{"import", "import input.source\nresult := {\"allowed\": source.ip == \"a\"}", fieldSourceIP},
		{"helper rule", "ip := input.source.ip\nresult := {\"allowed\": ip == \"a\"}", fieldSourceIP},
		{"function", "f(x) := x == input.request.http.headers.Authorization\nresult := {\"allowed\": f(\"a\")}", fieldHeaders},
		{"comprehension", `result := {"allowed": count([g | some g in input.subject.groups]) > 0}`, fieldSubject},
		{"with", `result := {"allowed": true} if { input.purpose == "call" with input.actor as {} }`, fieldPurpose | fieldActor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			module := ast.MustParseModule("package orchestrator\n" + tt.rules)
			compiler := ast.NewCompiler()
			if compiler.Compile(map[string]*ast.Module{"m": module}); compiler.Failed() {
				t.Fatal(compiler.Errors)
			}
			if got := inputReads(compiler.Modules["m"]); got != tt.want {
				t.Errorf("inputReads = %015b, want %015b", got, tt.want)
			}
		})
	}
}
