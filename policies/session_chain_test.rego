package orchestrator_test

call(tool, arguments, labels, session_labels) := {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": tool, "arguments": arguments}}}},
	"labels": labels,
	"session": {"calls": [], "labels": session_labels},
	"purpose": "call",
}

test_send_alone_allowed if {
	data.orchestrator.result == {"allowed": true} with input as call("send_email", {"to": "x@example.com"}, ["external"], [])
}

test_send_after_confidential_read_needs_the_users_approval if {
	result := data.orchestrator.result with input as call("send_email", {"to": "x@example.com"}, ["external"], ["confidential"])
	result.allowed == false
	contains(result.external_message, "confidential")
	result.approval.approvers == "self"
}

test_read_after_read_allowed if {
	data.orchestrator.result == {"allowed": true} with input as call("read_record", {"id": "r-1"}, ["confidential"], ["confidential"])
}

test_sink_listed_whatever_the_session if {
	data.orchestrator.result == {"allowed": true} with input as {
		"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "send_email"}}}},
		"labels": ["external"],
		"purpose": "list",
	}
}

test_no_history_no_chain if {
	data.orchestrator.result == {"allowed": true} with input as {
		"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "send_email"}}}},
		"labels": ["external"],
		"purpose": "call",
	}
}

test_large_transfer_needs_treasury if {
	result := data.orchestrator.result with input as call("transfer", {"amount": 5000}, [], [])
	result.allowed == false
	result.approval.approvers == "treasury"
}

test_small_transfer_allowed if {
	data.orchestrator.result == {"allowed": true} with input as call("transfer", {"amount": 10}, [], [])
}

test_transfer_without_a_number_needs_treasury if {
	result := data.orchestrator.result with input as call("transfer", {"amount": "lots"}, [], [])
	result.approval.approvers == "treasury"
}

test_transfer_without_an_amount_needs_treasury if {
	result := data.orchestrator.result with input as call("transfer", {}, [], [])
	result.approval.approvers == "treasury"
}
