# A policy whose test asserts the wrong thing: "mcpbroker policy test" must
# report the failure and exit non-zero.
package orchestrator

default result := {"allowed": false}

result := {"allowed": true} if input.request.mcp.tool.params.name == "get_balance"
