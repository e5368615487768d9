// Package upstream is the broker's client side of the MCP Streamable HTTP
// transport (specification 2025-11-25, and servers of 2025-03-26 and
// 2025-06-18): it moves JSON-RPC messages between the broker and one
// upstream MCP server.
//
// It owns the HTTP exchanges of an upstream session and nothing above
// them. A Session POSTs requests and reads their answer, whether an
// application/json body or an SSE stream that carries progress, logging and
// server-to-client requests before the response; it POSTs notifications
// and responses, holds the optional GET stream open, resumes broken streams
// with Last-Event-ID (SEP-1699), and ends the session with DELETE. The
// broker assigns upstream request ids and decides what every message
// means, so nothing here remaps ids, answers server requests or retries a
// call.
//
// Credentials: every request of a session carries the bearer token its
// Options.Token source supplies, asked for per HTTP request so that
// reconnections never reuse an expired token; a call may carry a token of
// its own in its header instead. The session keeps no token.
//
// Reading is bounded everywhere: one JSON body or one SSE event is capped
// (Options.MaxMessageBytes), error bodies are read only in part, and bodies
// are drained and closed so pooled connections are reused. The SSE parser
// follows the WHATWG event-stream rules and reuses its buffers; messages
// are decoded with provider/jsonrpc.
//
// Failures reach the caller as errors to test with errors.Is and errors.As:
// ErrSessionNotFound (re-initialize), ErrNoStream, ErrStreamEnded,
// ErrMessageTooLarge, ErrProtocol, ErrCredentials (the token source
// failed; its error is wrapped too), *StatusError for other HTTP answers
// (with the JSON-RPC error object when the body held one), and the
// context's error when the caller's deadline or cancellation ended the
// exchange.
package upstream
