package bench

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// oauthProvider is the mcpProvider of a broker that wants a JWT access
// token from the authorization server whose metadata is at %[2]q, for the
// audience %[3]q, on every request.
const oauthProvider = `
version: 1
mcpProvider:
  enabled: true
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, allowClientTermination: true}}
  authorization:
    oauth:
      enabled: true
      servers:
        - wellKnownEndpoint: %[2]q
          tokenValidation: {method: jwt, expectedAudiences: [%[3]q]}
`

// authBroker is plainBroker with OAuth: every request needs a JWT access
// token from the authorization server whose metadata is at %[2]q, for the
// audience %[3]q, the broker's own MCP endpoint. %[1]q is the upstream.
const authBroker = oauthProvider + `apps:
  - name: ledger
    type: mcpProxy
    toolNamespace: {disabled: true}
    upstream: {transport: stream, stream: {url: %[1]q}}
`

// policyBroker is authBroker with an inbound Rego policy on the app: a
// call is allowed when one of the caller's groups may use the tool and its
// text is short. The engine compiles it when the broker starts.
const policyBroker = authBroker + policyRule

// policyRule is the inbound policy of policyBroker's app.
const policyRule = policyAllows + `            }
`

// policyAllows is policyRule up to the end of the body of its rule that
// allows, for policies that add to it.
const policyAllows = `    authorization:
      inbound:
        opa:
          name: bench-authz
          rego: |
            package orchestrator
            allowed_tools := {"echo": {"warehouse-ops", "customer-support"}}
            default result := {"allowed": false}
            result := {"allowed": true} if {
              some group in input.subject.groups
              group in allowed_tools[input.request.mcp.tool.params.name]
              count(input.request.mcp.tool.params.arguments.text) < 8192
`

// exchangeBroker is policyBroker with outbound token exchange: the
// embedded authorization server (issuer %[4]q, the broker's own URL, its
// store at %[5]q) mints for each call a token for the upstream, delegated
// to the caller's agent, with the echo tool's scope.
const exchangeBroker = policyBroker + exchangeOutbound + exchangeStore

const exchangeOutbound = `      outbound:
        type: tokenExchange
        tokenExchange:
          type: delegation
          idp: embedded
          audience: ` + benchAudience + `
          tools: [{name: echo, ttl: 60s, scopes: [{name: mcp:tools}]}]
`

const exchangeStore = `storage: {bolt: {path: %[5]q}}
authProvider: {enabled: true, issuer: %[4]q}
`

// validateBroker is exchangeBroker validating every call's arguments
// against echo's inputSchema (and its result against its outputSchema).
const validateBroker = policyBroker + exchangeOutbound + `    validation: {arguments: enforce, results: enforce}
` + exchangeStore

// redactBroker is exchangeBroker masking, with every detector, what the
// results carry.
const redactBroker = policyBroker + exchangeOutbound + `    redaction: {action: mask}
` + exchangeStore

// chainBroker is exchangeBroker keeping each session's history in its
// bbolt store, with the app labelled and a policy that reads the history
// (input.session) on every call: what a chain rule costs.
const chainBroker = oauthProvider + `sessionHistory: {maxCalls: 50, window: 1h}
apps:
  - name: ledger
    type: mcpProxy
    toolNamespace: {disabled: true}
    labels: [internal]
    upstream: {transport: stream, stream: {url: %[1]q}}
` + policyAllows + `              not tainted
            }
            tainted if {
              "external" in input.labels
              "confidential" in input.session.labels
            }
` + exchangeOutbound + exchangeStore

// benchAudience is the audience of the upstream's tokens.
const benchAudience = "https://bench-upstream.example/"

// benchGroups are the groups claim of every session's token: one the
// policy of policyBroker allows echo for.
var benchGroups = []string{"warehouse-ops"}

// authBrokerPath runs the broker from yaml (see authBroker) with its own
// authorization server; each session gets a token for a different user,
// in benchGroups. The verifier caches a token once verified, so after the
// warm-up the row measures authentication with a warm cache: parsing the
// Authorization header and a cache lookup per request.
func authBrokerPath(yaml string) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		dst, _ := startAuthBroker(tb, yaml, upstream)
		return dst
	}
}

// policyBrokerPath is authBrokerPath for yaml with an inbound policy (see
// policyBroker); its target also mints a token, for a user in none of the
// policy's groups, that the policy refuses.
func policyBrokerPath(yaml string) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		dst, mint := startAuthBroker(tb, yaml, upstream)
		dst.outsider = func() string { return mint("bench-outsider", []string{"marketing"}) }
		return dst
	}
}

// exchangeBrokerPath is policyBrokerPath for yaml with outbound token
// exchange (see exchangeBroker).
func exchangeBrokerPath(yaml string) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		dst := policyBrokerPath(yaml)(tb, upstream)
		dst.audience = benchAudience
		return dst
	}
}

// startAuthBroker starts an authorization server and the broker from yaml
// (see authBroker, exchangeBroker, auditSyncBroker and redisBroker) in
// front of upstream; more fills the placeholders from %[7] on. It returns
// the target and how to mint more tokens for the broker.
func startAuthBroker(tb testing.TB, yaml, upstream string, more ...any) (target, func(subject string, groups []string) string) {
	tb.Helper()
	as := oauthtest.NewIssuer(tb, nil)
	ln := listen(tb)
	audience := brokerEndpoint(ln) // known before the config is written
	issuer := "http://" + ln.Addr().String()
	data := tb.TempDir()
	store, trail := filepath.Join(data, "mcpbroker.db"), filepath.Join(data, "audit")
	args := append([]any{upstream, as.MetadataURL(), audience, issuer, store, trail}, more...)
	dst := serveBroker(tb, ln, fmt.Sprintf(yaml, args...))
	mint := func(subject string, groups []string) string { return mintFrom(tb, as, audience, subject, groups) }
	dst.token = func(i int) string { return mint(fmt.Sprintf("bench-user-%d", i), benchGroups) }
	return dst, mint
}

// mintFrom signs, with the authorization server's key, an access token for
// subject in groups (none: no groups claim) at audience, valid for an hour.
func mintFrom(tb testing.TB, as *oauthtest.Issuer, audience, subject string, groups []string) string {
	tb.Helper()
	jti := make([]byte, 12)
	rand.Read(jti)
	now := time.Now()
	claims := as.Claims(now)
	claims["sub"], claims["aud"], claims["client_id"], claims["scope"] = subject, audience, "mcpbroker-bench", "mcp:tools"
	claims["exp"], claims["jti"] = now.Add(time.Hour).Unix(), fmt.Sprintf("%x", jti)
	if groups != nil {
		claims["groups"] = groups
	}
	return as.Mint(tb, claims)
}
