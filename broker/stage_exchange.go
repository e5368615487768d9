package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/apps/upstream"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/opa"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Outbound identity. The upstream of an app whose outbound type is
// tokenExchange never sees the agent's token. A tools/call carries a token
// shaped by the tool's entry in tokenExchange.tools: the app's audience,
// the tool's scopes (never more than the agent holds, and narrowed further
// when the policy names scopes) and the tool's lifetime. Every other request
// of the app's upstream session — initialize, lists, reads, prompts,
// completions, notifications, the GET stream, DELETE — carries an
// identity-only token: the app's audience, no scopes, the default lifetime,
// so an upstream that checks every request still accepts the session.

// defaultToolEntry is the tokenExchange.tools entry for tools that have none
// of their own; without it such tools get no token.
const defaultToolEntry = "*"

// identityTokenTTL is the lifetime of identity-only tokens: the default
// lifetime of a tool's token.
const identityTokenTTL = 5 * time.Second

// exchanger holds the outbound token configuration of every app whose
// upstream receives exchanged tokens.
type exchanger struct {
	apps map[string]*outboundApp // by app name
	// connectors is set when an app exchanges the agent's token at a
	// connector: the session's own requests during a call then need it.
	connectors bool
}

// outboundApp is one app's tokenExchange configuration, ready for use.
type outboundApp struct {
	name       string
	delegation bool
	audience   string
	tools      map[string]*toolGrant // by upstream tool name
	fallback   *toolGrant            // the "*" entry; nil: unlisted tools get no token
	issuer     exchange.Issuer
}

// toolGrant is the shape of one tool's token.
type toolGrant struct {
	scopes []string
	ttl    time.Duration
}

// exchangeError is a failed exchange. Its text names the app and the cause,
// never a token.
type exchangeError struct {
	app string
	err error
}

func (e *exchangeError) Error() string {
	return fmt.Sprintf("token exchange for app %q failed: %v", e.app, e.err)
}

func (e *exchangeError) Unwrap() []error { return []error{ErrExchangeFailed, e.err} }

// toolScopeError refuses a tool call whose token lacks scopes the tool's
// token needs: the agent may step up and come back with them.
type toolScopeError struct {
	scopes []string
}

func (e *toolScopeError) Error() string {
	return "insufficient scope: the tool needs " + strings.Join(e.scopes, " ")
}

func (e *toolScopeError) Unwrap() error { return errInsufficientScope }

// newExchanger prepares every tokenExchange app; nil when there is none.
func newExchanger(cfg *config.Config, b *Broker) (*exchanger, error) {
	x := &exchanger{apps: make(map[string]*outboundApp)}
	var fetcher *oauth.Fetcher
	for i, app := range cfg.Apps {
		if app.Authorization == nil || app.Authorization.Outbound == nil || app.Authorization.Outbound.Type != config.OutboundTokenExchange {
			continue
		}
		te := app.Authorization.Outbound.TokenExchange
		path := fmt.Sprintf("apps[%d].authorization.outbound.tokenExchange", i)
		if te == nil {
			return nil, fmt.Errorf("broker: %s: required", path)
		}
		oa := &outboundApp{
			name:       app.Name,
			delegation: te.Type == config.ExchangeDelegation,
			audience:   te.Audience,
			tools:      make(map[string]*toolGrant, len(te.Tools)),
		}
		for _, tool := range te.Tools {
			// Tokens count time in whole seconds.
			grant := &toolGrant{ttl: time.Duration(tool.TTL)}
			if rest := grant.ttl % time.Second; rest != 0 {
				grant.ttl += time.Second - rest
			}
			for _, scope := range tool.Scopes {
				grant.scopes = append(grant.scopes, scope.Name)
			}
			if tool.Name == defaultToolEntry {
				oa.fallback = grant
				continue
			}
			oa.tools[tool.Name] = grant
		}
		switch te.IDP {
		case config.EmbeddedIdentityProvider:
			if b.authProvider == nil {
				return nil, fmt.Errorf("broker: %s.idp: the embedded authorization server is not enabled", path)
			}
			oa.issuer = &exchange.MintingIssuer{Minter: b.authProvider.minter}
		default:
			connector := cfg.Connector(te.IDP)
			if connector == nil {
				return nil, fmt.Errorf("broker: %s.idp: no connector named %q", path, te.IDP)
			}
			if fetcher == nil {
				o := cfg.MCPProvider.Authorization.OAuth
				fetcher = oauth.NewFetcher(oauth.FetcherOptions{AllowPrivateNetworks: o != nil && o.AllowPrivateNetworks})
			}
			oa.issuer = exchange.NewConnectorIssuer(exchange.Connector{
				Name: connector.Name, DiscoveryURL: connector.OIDCWellKnownURL,
				ClientID: connector.OAuthClientID, ClientSecret: connector.OAuthClientSecret.Value(),
			}, fetcher)
			x.connectors = true
		}
		x.apps[app.Name] = oa
	}
	if len(x.apps) == 0 {
		return nil, nil
	}
	return x, nil
}

// exchange obtains the token a tools/call carries to an app whose
// upstream receives exchanged tokens. Other requests to such an app carry
// the session's identity-only token (sessionToken).
func (b *Broker) exchange(ctx context.Context, c *Call) error {
	if b.exchanger == nil || c.Route != routeApp || c.App == nil || c.Message.Kind() != jsonrpc.KindRequest {
		return nil
	}
	app := b.exchanger.apps[c.App.Name]
	if app == nil {
		return nil
	}
	if c.Principal == nil {
		return ErrNoAgent
	}
	if c.Message.Method != "tools/call" {
		return nil
	}
	c.Outbound.set = true
	grant := app.grant(c.Name)
	if grant == nil {
		return nil
	}
	scopes, err := grantedScopes(grant.scopes, c.Principal.Scopes, c.Decision)
	if err != nil {
		return err
	}
	r := exchange.TokenRequest{Principal: c.Principal, Audience: app.audience, Scopes: scopes, TTL: grant.ttl, Delegation: app.delegation}
	if app.issuer.ExchangesAgentToken() {
		r.SubjectToken = agentTokenFrom(ctx)
	}
	token, err := app.issuer.Issue(ctx, r)
	if err != nil {
		return &exchangeError{app: app.name, err: err}
	}
	c.Outbound.value = token.Value
	return nil
}

// grant is the entry of a tool, or the default entry; nil when neither
// exists.
func (a *outboundApp) grant(tool string) *toolGrant {
	if g := a.tools[tool]; g != nil {
		return g
	}
	return a.fallback
}

// grantedScopes are the scopes of a tool's token: the tool's own, which the
// agent's token must all hold (a token is never wider than the one it was
// exchanged for), narrowed to those the policy named, if it named any.
func grantedScopes(tool, held []string, d *opa.Decision) ([]string, error) {
	for _, scope := range tool {
		if !slices.Contains(held, scope) {
			return nil, &toolScopeError{scopes: tool}
		}
	}
	if d == nil || d.Scopes == nil {
		return tool, nil
	}
	narrowed := make([]string, 0, len(tool))
	for _, scope := range tool {
		if slices.Contains(d.Scopes, scope) {
			narrowed = append(narrowed, scope)
		}
	}
	return narrowed, nil
}

// subjectToken is the agent's own access token, which a connector
// exchanges. It stays in memory with the call and is never forwarded.
func (c *Call) subjectToken() credential {
	if c.Request == nil || c.Request.HTTP == nil {
		return ""
	}
	token, err := oauth.BearerFromHeader(c.Request.HTTP.Header)
	if err != nil {
		return ""
	}
	return credential(token)
}

// credential is a bearer token held for one request (exchange.Credential):
// it formats and logs as "REDACTED".
type credential = exchange.Credential

// outboundToken is what the exchange stage decided a request carries.
// The zero value leaves it to the session: its identity-only token, if
// any.
type outboundToken struct {
	set   bool       // the call carries value instead of the session's token
	value credential // empty: no token at all
}

// upstreamHeader is the header a forwarded request carries: the call's
// own token, or none at all for a tool without one, in place of the
// session's identity-only token.
func (c *Call) upstreamHeader() http.Header {
	switch {
	case !c.Outbound.set:
		return nil
	case c.Outbound.value == "":
		return withoutAuthorization
	}
	return http.Header{"Authorization": {"Bearer " + string(c.Outbound.value)}}
}

// withoutAuthorization is the header of a tool call that carries no token:
// an empty Authorization replaces the session's and sends none.
var withoutAuthorization = http.Header{"Authorization": nil}

// agentTokenFrom is the agent's token of the call ctx serves, for a
// connector to exchange; empty outside a call.
func agentTokenFrom(ctx context.Context) credential {
	if c := callFrom(ctx); c != nil {
		return c.agentToken
	}
	return ""
}

// sessionToken returns the token source of one client session's upstream
// session with app, nil for an app that receives no exchanged tokens.
func (x *exchanger) sessionToken(st *sessionState, app *apps.App) upstream.TokenSource {
	if x == nil {
		return nil
	}
	oa := x.apps[app.Name]
	if oa == nil {
		return nil
	}
	cache := &identityCache{}
	return func(ctx context.Context) (string, error) {
		token, err := oa.identityToken(ctx, st, cache)
		if err != nil {
			return "", &exchangeError{app: oa.name, err: err}
		}
		return string(token), nil
	}
}

// identityCache keeps one upstream session's identity-only token, reused
// for the same agent while at least half its lifetime remains, or, when
// no new one can be had, until it expires.
type identityCache struct {
	mu        sync.Mutex
	principal *oauth.Principal
	token     credential
	renew     time.Time
	expiry    time.Time
}

// errAgentExpired refuses a token for an agent whose own token expired,
// outside any call that would prove it renewed.
var errAgentExpired = errors.New("the agent's access token has expired")

// identityToken issues the identity-only token for the session's agent.
func (a *outboundApp) identityToken(ctx context.Context, st *sessionState, cache *identityCache) (credential, error) {
	principal := st.agent.Load()
	if principal == nil {
		return "", ErrNoAgent
	}
	now := time.Now()
	cache.mu.Lock()
	defer cache.mu.Unlock()
	cached := cache.token != "" && cache.principal == principal
	if cached && now.Before(cache.renew) {
		return cache.token, nil
	}
	if !principal.Expiry.IsZero() && !now.Before(principal.Expiry) {
		return "", errAgentExpired
	}
	subjectToken := agentTokenFrom(ctx)
	if a.issuer.ExchangesAgentToken() && subjectToken == "" {
		if cached && now.Before(cache.expiry) {
			return cache.token, nil
		}
		return "", exchange.ErrNoSubjectToken
	}
	token, err := a.issuer.Issue(ctx, exchange.TokenRequest{
		Principal:    principal,
		SubjectToken: subjectToken,
		Audience:     a.audience,
		TTL:          identityTokenTTL,
		Delegation:   a.delegation,
	})
	if err != nil {
		return "", err
	}
	cache.principal, cache.token, cache.expiry = principal, token.Value, token.Expiry
	cache.renew = now.Add(token.Expiry.Sub(now) / 2)
	return token.Value, nil
}
