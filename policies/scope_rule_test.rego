package orchestrator_test

request(tool, scopes, purpose) := {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": tool, "arguments": {"customer_id": "c-42"}}}}},
	"subject": {"sub": "alice", "groups": [], "scopes": scopes},
	"purpose": purpose,
}

test_pii_with_scope_allowed if {
	data.orchestrator.result == {"allowed": true} with input as request("get_customer_pii", ["openid", "pii:read"], "call")
}

test_pii_without_scope_denied_with_message if {
	result := data.orchestrator.result with input as request("get_customer_pii", ["openid", "pii:write"], "call")
	result.allowed == false
	contains(result.external_message, "pii:read")
}

test_pii_anonymous_denied if {
	not data.orchestrator.result.allowed with input as {
		"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "get_customer_pii"}}}},
		"purpose": "call",
	}
}

test_scope_is_exact if {
	not data.orchestrator.result.allowed with input as request("get_customer_pii", ["pii:read:all", "PII:READ", "pii"], "call")
}

test_other_tools_need_no_scope if {
	data.orchestrator.result.allowed with input as request("get_balance", [], "call")
	data.orchestrator.result.allowed with input as request("list_accounts", ["openid"], "call")
}

test_other_methods_allowed if {
	data.orchestrator.result.allowed with input as {
		"request": {"mcp": {"method": "resources/read", "resource": {"params": {"uri": "ledger://accounts"}}}},
		"purpose": "call",
	}
}

test_list_hides_pii_tool_without_scope if {
	not data.orchestrator.result.allowed with input as request("get_customer_pii", [], "list")
	data.orchestrator.result.allowed with input as request("get_customer_pii", ["pii:read"], "list")
	data.orchestrator.result.allowed with input as request("get_balance", [], "list")
}
