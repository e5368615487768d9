# Strata's published MCP Proxy example, unchanged, in the pre-1.0 Rego
# syntax (rule bodies without "if"). It does not parse as Rego v1; the
# broker and "mcpbroker policy test" parse it as v0. With opa itself:
#   opa test --v0-compatible policies/strata_compat.rego policies/strata_compat_test.rego
package orchestrator

default result["allowed"] := false

result["allowed"] := true {
  input.request.mcp.tool.params.name == "listItems"
}

result["allowed"] := true {
  input.request.mcp.tool.params.name == "getItem"
}
