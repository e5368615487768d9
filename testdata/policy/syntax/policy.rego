# A policy that does not parse: the object on line 8 lacks a colon.
package orchestrator

default result := {"allowed": false}

allowed_tools := {"get_balance"}

result := {"allowed" true} if {
	input.request.mcp.tool.params.name in allowed_tools
}
