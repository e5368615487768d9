package upstream

import (
	"context"
	"net/http"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Transport is one MCP session with an upstream server, whatever carries
// it: Streamable HTTP (Session), the 2024-11-05 HTTP+SSE transport
// (LegacySession) or a local process's standard streams (StdioSession).
// The broker speaks to all of them alike; the header arguments carry a
// call's own credentials, which only the HTTP transports send.
type Transport interface {
	// Call sends a request and returns its response; messages the
	// upstream relates to the request (progress, logging, its own
	// requests to the client) go to onMessage first.
	Call(ctx context.Context, msg *jsonrpc.Message, header http.Header, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error)
	// Send delivers a notification or a response.
	Send(ctx context.Context, msg *jsonrpc.Message, header http.Header) error
	// Listen relays what the upstream sends outside any request until
	// ctx ends; ErrNoStream when it offers nothing of the kind.
	Listen(ctx context.Context, header http.Header, onMessage func(*jsonrpc.Message)) error
	// Close ends the session.
	Close(ctx context.Context, header http.Header) error
	// ID names the session so that another broker process can go on
	// with it; "" when it cannot (a process, a stream held here).
	ID() string
	SetID(id string)
	ProtocolVersion() string
	SetProtocolVersion(v string)
}

// IDSource is implemented by transports whose sessions share one
// upstream connection (a shared stdio process): request ids must then be
// unique across those sessions, so the transport hands them out.
type IDSource interface {
	NextID() int64
}

var _ Transport = (*Session)(nil)
