# Which clients may obtain identity assertion grants (ID-JAGs) for which
# resource applications, for whom: the Auth Provider as the company's
# identity provider (authProvider.idJag.policy). Members of finance may
# have grants for the ledger application with the read scope; the agent
# client ledger-agent alone may ask for them; anything else is denied.
package orchestrator

allowed_clients := {"ledger-agent"}

read_only if every scope in input.scopes {
	scope == "ledger:read"
}

default result := {"allowed": false, "external_message": "no identity assertion grant for this client, user and application"}

result := {"allowed": true} if {
	input.client_id in allowed_clients
	input.resource_application.name == "ledger"
	"finance" in input.subject.groups
	read_only
}

result := {"allowed": false, "external_message": "the ledger grants only ledger:read"} if {
	input.client_id in allowed_clients
	input.resource_application.name == "ledger"
	"finance" in input.subject.groups
	not read_only
}
