package orchestrator_test

request(tool, ip, purpose) := {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": tool, "arguments": {}}}}},
	"source": {"ip": ip},
	"purpose": purpose,
}

test_reads_from_anywhere if {
	every ip in ["203.0.113.7", "10.1.2.3", "127.0.0.1", "2001:db8::1"] {
		data.orchestrator.result == {"allowed": true} with input as request("get_balance", ip, "call")
	}
}

test_writes_from_internal_networks if {
	every ip in ["10.0.0.1", "10.255.255.254", "127.0.0.1", "127.9.9.9"] {
		data.orchestrator.result == {"allowed": true} with input as request("transfer", ip, "call")
	}
}

test_writes_from_outside_denied_with_message if {
	every ip in ["203.0.113.7", "11.0.0.1", "192.168.1.10", "172.16.0.1", "2001:db8::1"] {
		result := data.orchestrator.result with input as request("transfer", ip, "call")
		result.allowed == false
		contains(result.external_message, "internal network")
	}
}

test_unknown_tools_count_as_writes if {
	not data.orchestrator.result.allowed with input as request("delete_account", "203.0.113.7", "call")
	data.orchestrator.result.allowed with input as request("delete_account", "10.0.0.1", "call")
}

test_missing_or_bad_source_denied if {
	not data.orchestrator.result.allowed with input as {
		"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "transfer"}}}},
		"purpose": "call",
	}
	not data.orchestrator.result.allowed with input as request("transfer", "not-an-ip", "call")
}

test_list_hides_writes_from_outside if {
	data.orchestrator.result.allowed with input as request("get_balance", "203.0.113.7", "list")
	not data.orchestrator.result.allowed with input as request("transfer", "203.0.113.7", "list")
	data.orchestrator.result.allowed with input as request("transfer", "10.0.0.1", "list")
}
