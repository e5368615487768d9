package broker

import (
	"errors"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// Failures the pipeline renders as JSON-RPC errors (see render.go).
var (
	ErrInvalidParams    = errors.New("invalid params")
	ErrMethodNotFound   = errors.New("method not found")
	ErrUnknownTool      = errors.New("unknown tool")
	ErrUnknownPrompt    = errors.New("unknown prompt")
	ErrResourceNotFound = errors.New("resource not found")
	ErrInvalidCursor    = errors.New("invalid cursor")
	ErrUpstreamFailed   = errors.New("upstream unavailable")
	ErrUpstreamTimeout  = errors.New("upstream timed out")
	// ErrPolicyTimeout: the policy did not decide in time; the call is
	// refused, as a failure to try again rather than a denial.
	ErrPolicyTimeout      = errors.New("the policy did not decide in time; try again")
	ErrNotInitialized     = errors.New("session not initialized")
	ErrAlreadyInitialized = errors.New("session already initialized")
	// ErrShuttingDown refuses new sessions while the broker shuts down.
	ErrShuttingDown = errors.New("the broker is shutting down: no new sessions")
	// ErrCancelled ends a request the client cancelled: it gets no response.
	ErrCancelled = errors.New("cancelled by the client")
	// ErrExchangeFailed: no token could be obtained for an upstream, which
	// was therefore not contacted.
	ErrExchangeFailed = exchange.ErrFailed
	// ErrNoAgent: the app's upstream receives exchanged tokens, which are
	// issued for an authenticated agent only.
	ErrNoAgent = exchange.ErrNoAgent
)
