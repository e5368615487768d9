package broker

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/exchange/authserver"
	"github.com/mcpbroker/mcpbroker/opa"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Call is one client message on its way through the pipeline. Each stage
// reads what earlier stages set and adds its own part.
type Call struct {
	Start   time.Time
	Request *provider.Request
	Message *jsonrpc.Message
	Session *provider.Session
	State   *sessionState
	// gen is the configuration generation serving the call, from start to
	// end.
	gen *generation
	// Principal is who the access token speaks for; nil when
	// authentication is off. Set by identify.
	Principal *oauth.Principal

	// Set by decode.
	Params callParams

	// Set by route.
	Route routeKind
	App   *apps.App
	// Name is the upstream's name of the tool or prompt (namespace stripped).
	Name string

	// Set by validate for a tools/call of an app that keeps its
	// definitions (toolPinning, validation): the tool's.
	Definition *apps.Definition

	// Set by authorize: the policy's decision, when a policy governs the app.
	Decision *opa.Decision
	// Labels are the call's data labels: its app's and tool's, and its
	// policy's (set by authorize). Shared: do not modify.
	Labels []string
	// tracked: the call goes into its session's history (set by
	// authorize); passed: it got past the policy and any approval (set by
	// approve).
	tracked, passed bool
	// approval is the approval the call needs (set by authorize from the
	// policy, or by approve from the tool's configuration); approvalUsed
	// the one it took (set by approve).
	approval     *opa.Approval
	approvalUsed *authserver.Approval
	// history is the call's history key, once worked out (historyKey).
	history string

	// Set by exchange for a tools/call to an app whose upstream receives
	// exchanged tokens: the token it carries instead of the session's.
	// Never logged.
	Outbound outboundToken

	// Set by forward.
	Response *jsonrpc.Message
	Upstream time.Duration

	// Set by redact: what redaction found in the result, by detector.
	Redacted map[string]int

	// Err is the error that stopped the pipeline, if any; Reply is what
	// render made of the outcome.
	Err   error
	Reply provider.Reply

	// traceID is the call's trace, when traces are exported.
	traceID string
	// limit is the rate limit that counted the call and its remaining
	// budget, for the policy (set by limit).
	limit *opa.Limit
	// release gives back the call's place among its app's calls in
	// flight (set by limit, called by record).
	release func()

	// agentToken is the agent's own access token, kept with the call for
	// a connector to exchange; never logged, never forwarded.
	agentToken credential

	// hidden names the list items the policies kept from the client
	// ("app/name"), for the audit record; lists are filtered per app in
	// parallel.
	hiddenMu sync.Mutex
	hidden   []string
	// hiddenMore counts those past maxHiddenRecorded.
	hiddenMore int
}

// maxHiddenRecorded bounds the hidden names one record lists.
const maxHiddenRecorded = 1000

// hide notes a list item the policy kept from the client.
func (c *Call) hide(name string) {
	c.hiddenMu.Lock()
	defer c.hiddenMu.Unlock()
	if len(c.hidden) >= maxHiddenRecorded {
		c.hiddenMore++
		return
	}
	c.hidden = append(c.hidden, name)
}

// callParams are the request parameters the broker routes by; everything
// else is forwarded as it came.
type callParams struct {
	Name      string          `json:"name"`
	URI       string          `json:"uri"`
	Cursor    *string         `json:"cursor"`
	Arguments json.RawMessage `json:"arguments"`
	Ref       *struct {
		Type string `json:"type"`
		Name string `json:"name"`
		URI  string `json:"uri"`
	} `json:"ref"`
	RequestID json.RawMessage `json:"requestId"`
	Level     string          `json:"level"`
	Meta      *struct {
		ProgressToken json.RawMessage `json:"progressToken"`
	} `json:"_meta"`
}

// progressToken is the token the client asked progress under; nil for none.
func (p *callParams) progressToken() json.RawMessage {
	if p.Meta == nil || isAbsent(p.Meta.ProgressToken) {
		return nil
	}
	return p.Meta.ProgressToken
}

// routeKind says how a call is served.
type routeKind uint8

const (
	routeNone      routeKind = iota
	routeLocal               // answered by the broker (initialize, ping)
	routeApp                 // forwarded to one app
	routeAggregate           // a list merged across apps
	routeFanOut              // sent to every app (logging level, roots changed)
)
