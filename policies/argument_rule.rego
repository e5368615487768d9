# An argument rule: transfer is allowed only up to an amount of 1000; the
# other tools are allowed. tools/list asks without arguments (purpose
# "list"), so transfer stays listed and each call is judged on its amount.
package orchestrator

transfer_limit := 1000

transfer if input.request.mcp.tool.params.name == "transfer"

listing if input.purpose == "list"

within_limit if {
	amount := input.request.mcp.tool.params.arguments.amount
	is_number(amount)
	amount <= transfer_limit
}

result := {"allowed": true} if not transfer

result := {"allowed": true} if {
	transfer
	listing
}

result := {"allowed": true} if {
	transfer
	not listing
	within_limit
}

result := {"allowed": false, "external_message": sprintf("transfer is limited to an amount of %d; larger transfers need a person", [transfer_limit])} if {
	transfer
	not listing
	not within_limit
}
