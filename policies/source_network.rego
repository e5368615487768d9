# A source-network rule: read tools may be called from anywhere, everything
# else (transfer, and any tool not known to be a read) only from the
# internal network. The input's source address is the TCP peer of the
# request; behind a proxy that is the proxy's address, unless the broker's
# http.trustedProxies names the proxy (then it is the client's).
package orchestrator

read_tools := {"list_accounts", "get_balance", "whoami"}

internal_networks := ["10.0.0.0/8", "127.0.0.0/8"]

read if input.request.mcp.tool.params.name in read_tools

from_internal_network if {
	some network in internal_networks
	net.cidr_contains(network, input.source.ip)
}

default result := {
	"allowed": false,
	"external_message": "this tool can be called only from the internal network",
}

result := {"allowed": true} if read

result := {"allowed": true} if from_internal_network
