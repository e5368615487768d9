package orchestrator_test

call(tool) := {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": tool, "arguments": {}}}}},
	"purpose": "call",
}

list_item(tool) := {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": tool}}}},
	"purpose": "list",
}

test_read_tools_allowed if {
	every tool in ["list_accounts", "get_balance", "whoami"] {
		data.orchestrator.result == {"allowed": true} with input as call(tool)
	}
}

test_transfer_denied_with_message if {
	result := data.orchestrator.result with input as call("transfer")
	result.allowed == false
	contains(result.external_message, "list_accounts")
}

test_unknown_tool_denied if {
	not data.orchestrator.result.allowed with input as call("drop_database")
}

test_other_methods_denied if {
	not data.orchestrator.result.allowed with input as {
		"request": {"mcp": {"method": "resources/read", "resource": {"params": {"uri": "ledger://accounts"}}}},
		"purpose": "call",
	}
}

test_tool_name_is_exact if {
	not data.orchestrator.result.allowed with input as call("ledger_get_balance")
	not data.orchestrator.result.allowed with input as call("GET_BALANCE")
}

test_list_shows_only_read_tools if {
	data.orchestrator.result.allowed with input as list_item("get_balance")
	not data.orchestrator.result.allowed with input as list_item("transfer")
}
