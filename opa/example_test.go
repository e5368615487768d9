package opa_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mcpbroker/mcpbroker/opa"
)

// A policy written for Strata's Maverics, in pre-1.0 Rego, loads unchanged
// beside Rego v1 policies. The broker compiles it once and asks it about
// every call, and about every tool when it filters tools/list.
func Example() {
	policy, err := opa.Compile(context.Background(), opa.Source{
		Name: "my-mcp-server-inbound-authz",
		Rego: `package orchestrator

default result["allowed"] := false

result["allowed"] := true {
  input.request.mcp.tool.params.name == "listItems"
}

result["allowed"] := true {
  input.request.mcp.tool.params.name == "getItem"
  input.subject.groups[_] == "support"
}

result["external_message"] := "items are read-only here" {
  startswith(input.request.mcp.tool.params.name, "delete")
}
`,
	}, opa.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The broker keeps one Identity per verified principal.
	alice := &opa.Identity{Subject: "alice", Groups: []string{"support"}, ClientID: "claude-code"}

	for _, call := range []opa.Input{
		{Method: "tools/call", ToolName: "listItems", Purpose: opa.PurposeCall},
		{Method: "tools/call", ToolName: "getItem", Arguments: json.RawMessage(`{"id":"7"}`), Purpose: opa.PurposeCall, Identity: alice},
		{Method: "tools/call", ToolName: "getItem", Purpose: opa.PurposeCall},
		{Method: "tools/call", ToolName: "deleteItem", Purpose: opa.PurposeCall, Identity: alice},
	} {
		d := policy.Decide(context.Background(), &call)
		fmt.Printf("%-10s allowed=%-5v reason=%q message=%q\n", call.ToolName, d.Allowed, d.Reason, d.ExternalMessage)
	}
	// Output:
	// listItems  allowed=true  reason="allowed" message=""
	// getItem    allowed=true  reason="allowed" message=""
	// getItem    allowed=false reason="denied by policy" message=""
	// deleteItem allowed=false reason="denied by policy" message="items are read-only here"
}
