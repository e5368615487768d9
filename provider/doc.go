// Package provider is the MCP front end agents connect to: the Streamable
// HTTP transport (POST, GET and DELETE on one endpoint, JSON or SSE
// responses, resumable event streams), the legacy HTTP+SSE transport,
// sessions with sealed, self-contained ids, and the Host and Origin checks
// that protect loopback deployments from DNS rebinding.
//
// The provider moves messages; it does not decide anything about them. Each
// decoded message is handed to a Dispatcher (the broker's pipeline), and
// whatever the dispatcher sends back is written to the right stream.
package provider
