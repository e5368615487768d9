package upstream

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Sentinel errors. They reach callers wrapped with the failed operation,
// as in "upstream: call tools/list: session not found (id): HTTP 404".
var (
	// ErrSessionNotFound means the upstream answered 404 to a request that
	// carried a session id: it terminated or forgot the session, and the
	// caller must initialize a new one.
	ErrSessionNotFound = errors.New("session not found")

	// ErrNoStream means the upstream offers no GET event stream (405).
	ErrNoStream = errors.New("server offers no event stream")

	// ErrStreamEnded means an event stream ended before the response arrived
	// and could not be resumed: the server gave no event ids, refused the
	// resumption, or reconnection made no progress.
	ErrStreamEnded = errors.New("stream ended before the response")

	// ErrMessageTooLarge means one JSON body or one SSE event exceeded
	// Options.MaxMessageBytes.
	ErrMessageTooLarge = errors.New("message too large")

	// ErrProtocol means the upstream broke the transport rules: a wrong
	// content type, an undecodable message, a response with the wrong id.
	ErrProtocol = errors.New("protocol violation")

	// ErrCredentials means the session's TokenSource supplied no token for
	// a request, which was therefore not sent.
	ErrCredentials = errors.New("no credentials for the upstream")
)

// Bounds of the texts a StatusError keeps.
const (
	maxErrorBodyBytes = 512
	maxChallengeBytes = 2048
)

// StatusError is a non-2xx answer from the upstream (including a refused
// redirect). When the body was a JSON-RPC error response, RPCError holds its
// error object and errors.As can reach it through Unwrap.
type StatusError struct {
	StatusCode int
	// Body is the start of the response body, sanitized for logs.
	Body     string
	RPCError *jsonrpc.Error
	// WWWAuthenticate is the upstream's challenge on a 401 or 403 (RFC
	// 6750: invalid_token, insufficient_scope), sanitized; the broker
	// decides whether to exchange a new token.
	WWWAuthenticate string
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
	if e.RPCError != nil {
		fmt.Fprintf(&b, ": jsonrpc error %d: %s", e.RPCError.Code, sanitize(e.RPCError.Message, maxErrorBodyBytes))
	} else if e.Body != "" {
		b.WriteString(": ")
		b.WriteString(e.Body)
	}
	return b.String()
}

// Unwrap exposes the JSON-RPC error object, if any.
func (e *StatusError) Unwrap() error {
	if e.RPCError == nil {
		return nil
	}
	return e.RPCError
}

// sanitize keeps at most limit bytes of s, valid UTF-8 and free of control
// characters, so an upstream cannot forge log lines.
func sanitize(s string, limit int) string {
	if len(s) > limit {
		s = s[:limit]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}
