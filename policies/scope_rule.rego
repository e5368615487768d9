# A scope rule: reading customer PII needs the pii:read scope in the
# caller's validated token (input.subject.scopes); every other request is
# allowed. Agents without the scope do not see the PII tool in tools/list.
package orchestrator

pii_tools := {"get_customer_pii"}

pii_request if input.request.mcp.tool.params.name in pii_tools

has_pii_scope if "pii:read" in input.subject.scopes

result := {"allowed": true} if not pii_request

result := {"allowed": true} if {
	pii_request
	has_pii_scope
}

result := {"allowed": false, "external_message": "get_customer_pii needs the pii:read scope; ask for it when you authorize"} if {
	pii_request
	not has_pii_scope
}
