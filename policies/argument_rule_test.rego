package orchestrator_test

transfer(arguments) := {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "transfer", "arguments": arguments}}}},
	"subject": {"sub": "alice", "groups": [], "scopes": []},
	"purpose": "call",
}

test_transfer_within_limit_allowed if {
	data.orchestrator.result == {"allowed": true} with input as transfer({"from": "acc-1", "to": "acc-2", "amount": 250})
}

test_transfer_at_limit_allowed if {
	data.orchestrator.result.allowed with input as transfer({"from": "acc-1", "to": "acc-2", "amount": 1000})
}

test_transfer_over_limit_denied_with_message if {
	result := data.orchestrator.result with input as transfer({"from": "acc-1", "to": "acc-2", "amount": 1001})
	result.allowed == false
	contains(result.external_message, "1000")
}

test_transfer_fractional_over_limit_denied if {
	not data.orchestrator.result.allowed with input as transfer({"amount": 1000.01})
}

test_transfer_without_number_denied if {
	not data.orchestrator.result.allowed with input as transfer({"from": "acc-1", "to": "acc-2"})
	not data.orchestrator.result.allowed with input as transfer({"amount": "5"})
	not data.orchestrator.result.allowed with input as transfer({"amount": null})
}

test_transfer_without_purpose_judged_as_call if {
	not data.orchestrator.result.allowed with input as {"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "transfer", "arguments": {"amount": 5000}}}}}}
}

test_transfer_listed if {
	data.orchestrator.result.allowed with input as {
		"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "transfer"}}}},
		"purpose": "list",
	}
}

test_other_tools_allowed if {
	data.orchestrator.result.allowed with input as {
		"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "get_balance", "arguments": {"amount": 999999}}}}},
		"purpose": "call",
	}
}
