// Package sample is a sample upstream MCP server, a small in-memory ledger,
// used by the quickstart and the tests; it is not part of the broker's data
// path.
//
// The server exercises what a gateway must carry faithfully: read and write
// tools with structured output, tool errors (isError results) next to protocol
// errors, elicitation, sampling and roots requests back to the client,
// progress and logging notifications, resources, a resource template,
// resource subscriptions and a prompt. The whoami tool reports which identity
// reached the upstream, so tests can check the tokens the broker delegates.
//
// [ProtectedHandler] makes the server an OAuth 2.1 resource server, as an
// upstream behind the broker may be: every HTTP request needs a valid JWT
// access token from one issuer for one audience, and whoami reports the
// claims it verified.
//
// Tools that need the client's help return input requests (SEP-2322). For
// sessions on protocol versions before 2026-07-28, which is every session of
// the stateful [Handler], the SDK turns them into elicitation/create,
// sampling/createMessage and roots/list requests on the session; a stateless
// handler built from [NewServer] serves them as input_required results.
package sample
