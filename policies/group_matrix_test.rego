package orchestrator_test

# The recipe's matrix, row by row: tool, warehouse-ops, customer-support.
matrix := [
	["list-orders", true, true],
	["get-order", true, true],
	["cancel-order", false, true],
	["list-inventory", true, true],
	["check-inventory", true, true],
	["restock-item", true, false],
	["get-customer", false, true],
	["update-customer-contact", false, true],
]

request(tool, groups, purpose) := {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": tool}}}},
	"subject": {"sub": "alice", "groups": groups, "scopes": []},
	"purpose": purpose,
}

allowed(tool, groups, purpose) := decision if {
	decision := data.orchestrator.result.allowed with input as request(tool, groups, purpose)
}

test_warehouse_ops_calls if {
	every row in matrix {
		allowed(row[0], ["warehouse-ops"], "call") == row[1]
	}
}

test_customer_support_calls if {
	every row in matrix {
		allowed(row[0], ["customer-support"], "call") == row[2]
	}
}

test_warehouse_ops_lists_five_tools if {
	shown := {row[0] | some row in matrix; allowed(row[0], ["warehouse-ops"], "list")}
	shown == {"list-orders", "get-order", "list-inventory", "check-inventory", "restock-item"}
}

test_customer_support_lists_seven_tools if {
	shown := {row[0] | some row in matrix; allowed(row[0], ["customer-support"], "list")}
	count(shown) == 7
	not "restock-item" in shown
}

test_both_groups_get_the_union if {
	every row in matrix {
		allowed(row[0], ["warehouse-ops", "customer-support"], "call")
	}
}

test_denied_call_explains if {
	result := data.orchestrator.result with input as request("cancel-order", ["warehouse-ops"], "call")
	result == {"allowed": false, "external_message": "cancel-order is available only to the group(s) customer-support"}
}

test_no_groups_denied if {
	not allowed("list-orders", [], "call")
	not data.orchestrator.result.allowed with input as {
		"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "list-orders"}}}},
		"purpose": "call",
	}
}

test_unknown_group_denied if {
	not allowed("list-orders", ["Warehouse-Ops", "admins"], "call")
}

test_unknown_tool_denied if {
	result := data.orchestrator.result with input as request("drop-orders", ["warehouse-ops", "customer-support"], "call")
	result == {"allowed": false, "external_message": "only the ecommerce tools can be called"}
}

test_other_methods_denied if {
	not data.orchestrator.result.allowed with input as {
		"request": {"mcp": {"method": "resources/read", "resource": {"params": {"uri": "orders://recent"}}}},
		"subject": {"groups": ["customer-support"]},
		"purpose": "call",
	}
}
