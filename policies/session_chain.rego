# A chain rule: in a session that has read from a confidential source, a
# call to an external sink needs the user's approval of exactly that call.
# The labels come from the configuration (apps[].labels and
# apps[].tools[].labels, in input.labels for this call) and from the
# session's history (input.session.labels: the labels of the calls it was
# let through); sessionHistory must be on. Transfers above a limit need a
# member of treasury, never the user.
package orchestrator

transfer_limit := 1000

listing if input.purpose == "list"

sink if "external" in input.labels

tainted if "confidential" in input.session.labels

large_transfer if {
	input.request.mcp.tool.params.name == "transfer"
	not within_limit
}

within_limit if {
	amount := input.request.mcp.tool.params.arguments.amount
	is_number(amount)
	amount <= transfer_limit
}

default result := {"allowed": true}

result := {
	"allowed": false,
	"external_message": "this session read confidential data; sending it out needs your approval",
	"approval": {"reason": "External send after a confidential read in the same session.", "approvers": "self", "ttl": "10m"},
} if {
	not listing
	sink
	tainted
}

result := {
	"allowed": false,
	"external_message": sprintf("transfers above %d need a second person's approval", [transfer_limit]),
	"approval": {"reason": sprintf("Transfer above %d.", [transfer_limit]), "approvers": "treasury", "ttl": "15m"},
} if {
	not listing
	not sink
	large_transfer
}
