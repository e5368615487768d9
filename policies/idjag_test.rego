package orchestrator_test

request(client, groups, app, scopes) := {
	"client_id": client,
	"subject": {"sub": "alice", "groups": groups},
	"resource_application": {"name": app, "audience": "https://ledger.example", "resource": "https://ledger.example/mcp"},
	"scopes": scopes,
}

test_finance_reads_the_ledger if {
	data.orchestrator.result == {"allowed": true} with input as request("ledger-agent", ["finance"], "ledger", ["ledger:read"])
}

test_no_scope_asked_is_read_only if {
	data.orchestrator.result.allowed with input as request("ledger-agent", ["finance"], "ledger", [])
}

test_write_denied if {
	result := data.orchestrator.result with input as request("ledger-agent", ["finance"], "ledger", ["ledger:write"])
	result.allowed == false
	contains(result.external_message, "ledger:read")
}

test_other_group_denied if {
	not data.orchestrator.result.allowed with input as request("ledger-agent", ["ops"], "ledger", ["ledger:read"])
}

test_other_client_denied if {
	not data.orchestrator.result.allowed with input as request("mallory-agent", ["finance"], "ledger", ["ledger:read"])
}

test_other_application_denied if {
	not data.orchestrator.result.allowed with input as request("ledger-agent", ["finance"], "crm", [])
}
