package jsonrpc

import "encoding/json"

// What the MCP revision without sessions (2026-07-28) puts in messages,
// for both its sides: the provider that serves such clients and the
// client of such upstreams.

// ModernVersion is the first protocol version without sessions.
const ModernVersion = "2026-07-28"

// Members of a modern request's params._meta.
const (
	MetaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	MetaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	MetaClientInfo         = "io.modelcontextprotocol/clientInfo"
	MetaLogLevel           = "io.modelcontextprotocol/logLevel"
)

// MetaInputKey is the params._meta member of a request to the client
// that names it as a server named it in an input_required result, when it
// came from one: a client asked for input the same way is asked under the
// same name. It never reaches a client.
const MetaInputKey = "io.mcpbroker/inputKey"

// namedBy is the params member the Mcp-Name header repeats, per method.
var namedBy = map[string]string{
	"tools/call":     "name",
	"prompts/get":    "name",
	"resources/read": "uri",
}

// RequestName returns what a request's Mcp-Name header repeats (the
// tool's or prompt's name, the resource's URI), and whether its method
// has one at all.
func RequestName(method string, params []byte) (name string, named bool) {
	member := namedBy[method]
	if member == "" {
		return "", false
	}
	raw, _, _ := Member(params, member)
	_ = json.Unmarshal(raw, &name)
	return name, true
}
