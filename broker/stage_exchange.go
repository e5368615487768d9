package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/apps/upstream"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// The exchange stage asks exchange for the token a tools/call carries to an
// app whose outbound type is tokenExchange; the app's other upstream
// requests carry its session token (see exchange.Outbound).

// outboundOptions builds exchange's options from the tokenExchange apps;
// none when there is no such app.
func outboundOptions(cfg *config.Config, b *Broker) ([]exchange.AppOptions, error) {
	var options []exchange.AppOptions
	for i, app := range cfg.Apps {
		if app.Authorization != nil && app.Authorization.Outbound != nil && app.Authorization.Outbound.Type == config.OutboundIDJAG {
			o, err := b.idJagOutbound(app.Name, app.Authorization.Outbound.IDJAG)
			if err != nil {
				return nil, fmt.Errorf("broker: apps[%d].authorization.outbound.idJag: %w", i, err)
			}
			options = append(options, o)
			continue
		}
		if app.Authorization == nil || app.Authorization.Outbound == nil || app.Authorization.Outbound.Type != config.OutboundTokenExchange {
			continue
		}
		te := app.Authorization.Outbound.TokenExchange
		path := fmt.Sprintf("apps[%d].authorization.outbound.tokenExchange", i)
		if te == nil {
			return nil, fmt.Errorf("broker: %s: required", path)
		}
		o := exchange.AppOptions{
			Name:       app.Name,
			Audience:   te.Audience,
			Delegation: te.Type == config.ExchangeDelegation,
			Tools:      make(map[string]exchange.ToolGrant, len(te.Tools)),
		}
		o.Shape.QualifiedSubject = te.SubjectFormat == config.SubjectFormatQualified
		if te.Actor == config.ActorGateway && b.authProvider != nil {
			o.Shape.Gateway = b.authProvider.issuer // the broker, as its tokens name it
		}
		for _, claim := range te.Claims {
			o.Shape.Claims = append(o.Shape.Claims, exchange.CopiedClaim{Name: claim.Name, From: strings.TrimPrefix(claim.From, "user.")})
		}
		for _, tool := range te.Tools {
			grant := exchange.ToolGrant{TTL: time.Duration(tool.TTL), Reuse: tool.Reuse}
			for _, scope := range tool.Scopes {
				grant.Scopes = append(grant.Scopes, scope.Name)
			}
			o.Tools[tool.Name] = grant
		}
		switch te.IDP {
		case config.EmbeddedIdentityProvider:
			if b.authProvider == nil {
				return nil, fmt.Errorf("broker: %s.idp: the embedded authorization server is not enabled", path)
			}
			minter := b.authProvider.minter
			if m := b.authProvider.minters[te.SigningAlgorithm]; m != nil {
				minter = m
			}
			o.Issuer = &exchange.MintingIssuer{Minter: minter}
		default:
			connector := cfg.Connector(te.IDP)
			if connector == nil {
				return nil, fmt.Errorf("broker: %s.idp: no connector named %q", path, te.IDP)
			}
			connectorFetcher, err := b.connectorFetcher(connector)
			if err != nil {
				return nil, err
			}
			o.Issuer = exchange.NewConnectorIssuer(exchange.Connector{
				Name: connector.Name, DiscoveryURL: connector.OIDCWellKnownURL,
				ClientID: connector.OAuthClientID, ClientSecret: connector.OAuthClientSecret.Value(),
			}, connectorFetcher)
		}
		options = append(options, o)
	}
	return options, nil
}

// idJagOutbound is an app whose upstream tokens come from its own
// authorization server, for ID-JAGs the embedded Auth Provider issues.
// Every request of the app carries the user's token; it is obtained once
// per user and kept.
func (b *Broker) idJagOutbound(name string, j *config.IDJAGOutbound) (exchange.AppOptions, error) {
	if b.authProvider == nil {
		return exchange.AppOptions{}, errors.New("idp: the embedded authorization server is not enabled")
	}
	server := b.authProvider.server
	grant := exchange.ToolGrant{Scopes: nil, TTL: exchange.SessionTokenTTL}
	o := exchange.AppOptions{
		Name:     name,
		Audience: j.Resource,
		Tools:    map[string]exchange.ToolGrant{exchange.DefaultTool: grant},
		Issuer: &exchange.IDJAGIssuer{
			Name: name,
			Grant: func(ctx context.Context, p *oauth.Principal) (string, error) {
				if p.Issuer != b.authProvider.issuer {
					// The Auth Provider vouches for its own users only.
					return "", fmt.Errorf("the user's token is not the Auth Provider's (iss %q)", p.Issuer)
				}
				return server.MintIDJAG(ctx, j.ClientID, p.Subject, p.Groups, j.Issuer, j.Resource, j.Scopes)
			},
			DiscoveryURL: strings.TrimSuffix(j.Issuer, "/") + "/.well-known/oauth-authorization-server",
			ClientID:     j.ClientID, ClientSecret: j.ClientSecret.Value(),
			Fetcher: oauth.NewFetcher(oauth.FetcherOptions{AllowPrivateNetworks: true}),
		},
	}
	return o, nil
}

// connectorFetcher reaches a connector's metadata and token endpoint: an
// address the operator named, so private networks are allowed (as they
// are not for URLs agents supply), through the connector's own TLS when
// it has some.
func (b *Broker) connectorFetcher(connector *config.Connector) (*oauth.Fetcher, error) {
	opts := oauth.FetcherOptions{AllowPrivateNetworks: true}
	if connector.TLS != nil {
		tlsConfig, err := (pemFiles{b.baseDir}).upstreamTLS("connectors["+connector.Name+"].tls", connector.TLS)
		if err != nil {
			return nil, err
		}
		opts.TLS = tlsConfig
	}
	return oauth.NewFetcher(opts), nil
}

// exchange obtains the token a tools/call carries to an app whose
// upstream receives exchanged tokens.
func (b *Broker) exchange(ctx context.Context, c *Call) error {
	if c.Route != routeApp || c.App == nil || c.Message.Kind() != jsonrpc.KindRequest {
		return nil
	}
	issuer := c.gen.outbound.App(c.App.Name)
	if issuer == nil {
		return nil
	}
	if c.Principal == nil {
		return ErrNoAgent
	}
	if c.Message.Method != "tools/call" {
		return nil
	}
	call := exchange.ToolCall{Principal: c.Principal, Tool: c.Name, SubjectToken: c.agentToken, Reuse: &c.State.reusedTokens}
	if c.Decision != nil {
		call.PolicyScopes = c.Decision.Scopes
	}
	token, err := issuer.ToolToken(ctx, call)
	switch {
	case err != nil:
		b.metrics.Exchange(c.App.Name, "failed")
		return err
	case token.Value == "":
		b.metrics.Exchange(c.App.Name, "no_token")
	default:
		b.metrics.Exchange(c.App.Name, "issued")
	}
	c.Outbound = outboundToken{set: true, token: token}
	c.State.useScopes(token.Scopes)
	return nil
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
// The zero value leaves it to the session: its session token, if any.
type outboundToken struct {
	set   bool                   // the call carries token instead of the session's
	token exchange.UpstreamToken // an empty Value: no token at all
}

// upstreamHeader is the header a forwarded request carries: the call's
// own token, or none at all for a tool without one, in place of the
// session's token.
func (c *Call) upstreamHeader() http.Header {
	header := c.tokenHeader()
	if c.App == nil || c.Principal == nil {
		return header
	}
	identity := c.gen.identityHeaders[c.App.Name]
	if len(identity) == 0 {
		return header
	}
	header = header.Clone()
	if header == nil {
		header = http.Header{}
	}
	for _, h := range identity {
		if value, ok := claimHeaderValue(c.Principal.Claims, h.Claim); ok {
			header.Set(h.Header, value)
		}
	}
	return header
}

// tokenHeader is the Authorization of a call's upstream request.
func (c *Call) tokenHeader() http.Header {
	switch {
	case !c.Outbound.set:
		return nil
	case c.Outbound.token.Value == "":
		return withoutAuthorization
	}
	return http.Header{"Authorization": {"Bearer " + string(c.Outbound.token.Value)}}
}

// maxIdentityHeaderBytes bounds an identity header's value; a longer one
// is left out rather than cut.
const maxIdentityHeaderBytes = 4096

// claimHeaderValue is the header value of the claim path names in claims
// ("act.sub" reaches into objects): a string as it is, a list of strings
// joined with commas, a number or boolean as JSON. Anything else, or a
// value with control characters or over maxIdentityHeaderBytes, yields
// no header.
func claimHeaderValue(claims map[string]any, path string) (string, bool) {
	var value any = claims
	for part := range strings.SplitSeq(path, ".") {
		object, ok := value.(map[string]any)
		if !ok {
			return "", false
		}
		if value, ok = object[part]; !ok {
			return "", false
		}
	}
	var text string
	switch v := value.(type) {
	case string:
		text = v
	case []any:
		parts := make([]string, 0, len(v))
		for _, item := range v {
			s, ok := item.(string)
			if !ok || strings.Contains(s, ",") {
				return "", false
			}
			parts = append(parts, s)
		}
		text = strings.Join(parts, ",")
	case float64, bool, json.Number:
		raw, _ := json.Marshal(v)
		text = string(raw)
	default:
		return "", false
	}
	if len(text) > maxIdentityHeaderBytes || strings.ContainsFunc(text, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", false
	}
	return text, true
}

// withoutAuthorization is the header of a tool call that carries no token:
// an empty Authorization replaces the session's and sends none.
var withoutAuthorization = http.Header{"Authorization": nil}

// sessionToken returns the token source of one client session's upstream
// session with app, nil for an app that receives no exchanged tokens.
func (b *Broker) sessionToken(st *sessionState, app *apps.App) upstream.TokenSource {
	issuer := b.current().outbound.App(app.Name)
	if issuer == nil {
		return nil
	}
	tokens := issuer.SessionToken(st.agent.Load)
	return func(ctx context.Context) (string, error) {
		var subject credential
		if c := callFrom(ctx); c != nil {
			subject = c.agentToken
		}
		token, err := tokens.Token(ctx, subject)
		return string(token), err
	}
}
