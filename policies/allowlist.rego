# An allow-list: agents may call only the sample ledger's read tools.
# Everything else (transfer, tools the upstream adds later, prompts and
# resources) is denied, and tools/list shows only these three tools.
package orchestrator

read_tools := {"list_accounts", "get_balance", "whoami"}

default result := {
	"allowed": false,
	"external_message": "only list_accounts, get_balance and whoami may be called through this gateway",
}

result := {"allowed": true} if input.request.mcp.tool.params.name in read_tools
