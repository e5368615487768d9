package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// The tokens an app's upstream receives are issued here: minted in
// process by the embedded authorization server, or exchanged (RFC 8693)
// at a connector's token endpoint for the agent's own token.

// Credential is a bearer token held for one request: the agent's own, or
// one issued for an upstream. It formats and logs as "REDACTED", so no
// format verb or log call reveals it by accident.
type Credential string

const redacted = "REDACTED"

func (Credential) String() string               { return redacted }
func (Credential) GoString() string             { return redacted }
func (Credential) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Credential) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Issuer issues the tokens an app's upstream receives: the embedded
// authorization server's minter, or a connector's token endpoint.
type Issuer interface {
	Issue(ctx context.Context, r TokenRequest) (UpstreamToken, error)
	// ExchangesAgentToken reports whether issuing needs the agent's own
	// token (TokenRequest.SubjectToken).
	ExchangesAgentToken() bool
}

var (
	_ Issuer = (*MintingIssuer)(nil)
	_ Issuer = (*ConnectorIssuer)(nil)
)

// TokenRequest is what one upstream token is issued for.
type TokenRequest struct {
	Principal *oauth.Principal
	// SubjectToken is the agent's access token, for issuers that exchange
	// it; empty for the embedded minter.
	SubjectToken Credential
	Audience     string
	Scopes       []string // nil: an identity-only token
	TTL          time.Duration
	Delegation   bool
	Shape        TokenShape
}

// TokenShape is how a minted token tells who is who, beyond the defaults
// (sub the user, act the agent). Only tokens minted in process take it: a
// connector's tokens are shaped by the connector.
type TokenShape struct {
	// Gateway, when set, is the actor of a delegation: act names it, with
	// the agent (and whoever acted before) nested inside, as Strata's
	// orchestrator's tokens do.
	Gateway string
	// QualifiedSubject makes sub "<issuer of the agent's token>|<sub>".
	QualifiedSubject bool
	// Claims are added to the token, each the value of a claim of the
	// agent's token (one it does not have is left out).
	Claims []CopiedClaim
}

// CopiedClaim is a claim a token takes from the agent's token.
type CopiedClaim struct {
	Name string // the claim in the minted token
	From string // the claim of the agent's token
}

// IsZero reports whether the shape is the default one.
func (s TokenShape) IsZero() bool {
	return s.Gateway == "" && !s.QualifiedSubject && len(s.Claims) == 0
}

// UpstreamToken is a token for an upstream and what an audit record may
// say of it: when it expires, its jti (when known), audience and scopes.
type UpstreamToken struct {
	Value    Credential
	Expiry   time.Time
	ID       string
	Audience string
	Scopes   []string
}

// MintingIssuer mints in process with the embedded authorization server's
// keys: no network hop on the call's path.
type MintingIssuer struct {
	Minter *Minter
}

func (m *MintingIssuer) ExchangesAgentToken() bool { return false }

func (m *MintingIssuer) Issue(ctx context.Context, r TokenRequest) (UpstreamToken, error) {
	p := r.Principal
	ttl, err := withinAgentLifetime(r.TTL, p.Expiry, time.Now())
	if err != nil {
		return UpstreamToken{}, err
	}
	grant := Grant{
		Subject:    p.Subject,
		ClientID:   p.ClientID,
		Audience:   r.Audience,
		Scopes:     r.Scopes,
		TTL:        ttl,
		Delegation: r.Delegation,
	}
	if r.Shape.QualifiedSubject {
		grant.Subject = p.Issuer + "|" + p.Subject
	}
	extra := func(name string, value any) {
		if grant.Extra == nil {
			grant.Extra = map[string]any{}
		}
		grant.Extra[name] = value
	}
	if p.Issuer != m.Minter.Issuer() && !r.Shape.QualifiedSubject {
		// The token's iss is the Auth Provider's whoever authenticated the
		// user: sub_iss keeps another issuer's "alice" apart from its own
		// (a qualified sub does so itself).
		extra(SubjectIssuerClaim, p.Issuer)
	}
	for _, c := range r.Shape.Claims {
		if value, ok := p.Claims[c.From]; ok {
			extra(c.Name, value)
		}
	}
	if r.Delegation {
		// The agent acts now; whoever acted before it, as the agent's own
		// token tells, nests inside. The verified chain is shared, not
		// copied: minting only reads it.
		grant.Actor = &oauth.Actor{Subject: p.ClientID, ClientID: p.ClientID, Actor: p.Actor}
		if r.Shape.Gateway != "" {
			grant.Actor = &oauth.Actor{Subject: r.Shape.Gateway, Actor: grant.Actor}
		}
	}
	token, claims, err := m.Minter.Mint(ctx, grant)
	if err != nil {
		return UpstreamToken{}, err
	}
	return UpstreamToken{Value: Credential(token), Expiry: claims.Expiry, ID: claims.TokenID, Audience: r.Audience, Scopes: r.Scopes}, nil
}

// ErrAgentTokenExpiring refuses a token for an agent whose own token has
// less than a second left: no token can be both whole seconds long and
// end with it. The agent needs a new token, as if its own had expired.
var ErrAgentTokenExpiring = errors.New("the agent's token expires now")

// withinAgentLifetime cuts a token's lifetime, in whole seconds, so that
// it ends no later than the agent's own token: an upstream token must not
// outlive the authorization it was made from. A zero agentExpiry (a token
// without exp) leaves ttl as it is.
func withinAgentLifetime(ttl time.Duration, agentExpiry, now time.Time) (time.Duration, error) {
	if agentExpiry.IsZero() {
		return ttl, nil
	}
	remaining := agentExpiry.Sub(now).Truncate(time.Second)
	if remaining < time.Second {
		return 0, ErrAgentTokenExpiring
	}
	return min(ttl, remaining), nil
}

// ConnectorIssuer exchanges the agent's token at a connector's token
// endpoint (RFC 8693). The endpoint is discovered from the connector's
// metadata on first use.
type ConnectorIssuer struct {
	connector Connector
	fetcher   *oauth.Fetcher
	client    discoveredClient
}

// discoveredClient is a token endpoint's client, made once its
// authorization server's metadata is read; after a failed discovery the
// failure stands for discoveryRetryInterval.
type discoveredClient struct {
	mu      sync.Mutex
	client  *Client
	retryAt time.Time
	failure error
}

// get returns the client, discovering it first when needed.
func (d *discoveredClient) get(ctx context.Context, discover func(context.Context) (*Client, error)) (*Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil {
		return d.client, nil
	}
	if time.Now().Before(d.retryAt) {
		return nil, d.failure
	}
	client, err := discover(ctx)
	if err != nil {
		d.retryAt, d.failure = time.Now().Add(discoveryRetryInterval), err
		return nil, err
	}
	d.client = client
	return client, nil
}

// discoveryRetryInterval keeps a connector that is down from being asked
// for its metadata by every call.
const discoveryRetryInterval = 5 * time.Second

// Connector is an identity provider whose token endpoint exchanges the
// agent's token.
type Connector struct {
	// Name names it in errors.
	Name string
	// DiscoveryURL is its metadata document (OIDC discovery or RFC 8414).
	DiscoveryURL           string
	ClientID, ClientSecret string
}

// NewConnectorIssuer issues through connector, fetching with fetcher.
func NewConnectorIssuer(connector Connector, fetcher *oauth.Fetcher) *ConnectorIssuer {
	return &ConnectorIssuer{connector: connector, fetcher: fetcher}
}

func (ci *ConnectorIssuer) ExchangesAgentToken() bool { return true }

// ErrNoSubjectToken: a connector exchanges the agent's token, and none was
// given (outside a call, only a call carries it).
var ErrNoSubjectToken = errors.New("no agent token to exchange outside a call")

// ErrWiderScope refuses a token an identity provider issued with scopes
// nobody asked for.
var ErrWiderScope = errors.New("the identity provider granted scopes beyond the request")

func (ci *ConnectorIssuer) Issue(ctx context.Context, r TokenRequest) (UpstreamToken, error) {
	if r.SubjectToken == "" {
		return UpstreamToken{}, ErrNoSubjectToken
	}
	client, err := ci.exchangeClient(ctx)
	if err != nil {
		return UpstreamToken{}, err
	}
	req := ClientRequest{
		SubjectToken:     string(r.SubjectToken),
		SubjectTokenType: TokenTypeAccessToken,
		Audience:         r.Audience,
		Scopes:           r.Scopes,
		Lifetime:         r.TTL,
	}
	if r.Delegation {
		// The identity provider derives the actor, the agent, from its own
		// token.
		req.ActorToken, req.ActorTokenType = string(r.SubjectToken), TokenTypeAccessToken
	}
	start := time.Now()
	issued, err := client.Exchange(ctx, req)
	if err != nil {
		return UpstreamToken{}, err
	}
	if issued.TokenType != "Bearer" {
		return UpstreamToken{}, fmt.Errorf("%w: token_type %q is not Bearer", ErrTokenResponse, issued.TokenType)
	}
	if err := withinRequestedScope(issued, r.Scopes); err != nil {
		return UpstreamToken{}, err
	}
	lifetime := issued.ExpiresIn
	if lifetime <= 0 {
		// The provider did not say: assume no more than asked for.
		lifetime = r.TTL
	}
	return UpstreamToken{Value: Credential(issued.AccessToken), Expiry: start.Add(lifetime), ID: jwtID(issued.AccessToken), Audience: r.Audience, Scopes: r.Scopes}, nil
}

// withinRequestedScope refuses a token that grants scopes beyond requested.
// A request without scopes allows none: RFC 8693 servers commonly grant
// the subject token's whole scope when none is asked for, and an
// identity-only token must not carry the agent's scopes to the upstream.
// When the token is a JWT its own scope and scp claims are checked as
// well, since they are what the upstream reads and a response that leaves
// scope out only claims it equals the request (RFC 8693 §2.2.1). Any
// other token is taken at the response's word.
func withinRequestedScope(issued *IssuedToken, requested []string) error {
	for _, scope := range issued.Scope {
		if !slices.Contains(requested, scope) {
			return ErrWiderScope
		}
	}
	claimed, err := jwtScopes(issued.AccessToken)
	if err != nil {
		return err
	}
	for _, scope := range claimed {
		if !slices.Contains(requested, scope) {
			return ErrWiderScope
		}
	}
	return nil
}

// jwtScopes reads the scope (space-separated) and scp (array or
// space-separated) claims of token when it is a JWS compact JWT with a
// JSON object payload; any other token has none. The signature is not
// checked: the token is the identity provider's answer over an
// authenticated channel, and only what it grants matters here.
func jwtScopes(token string) ([]string, error) {
	claims, err := oauth.UnverifiedPayload(token)
	if err != nil {
		return nil, nil
	}
	var scopes []string
	for _, name := range [...]string{"scope", "scp"} {
		values, ok := oauth.ScopeValues(claims[name])
		if !ok {
			return nil, fmt.Errorf("%w: the token's %s claim cannot be read", ErrWiderScope, name)
		}
		scopes = append(scopes, values...)
	}
	return scopes, nil
}

// exchangeClient discovers the connector's token endpoint once.
func (ci *ConnectorIssuer) exchangeClient(ctx context.Context) (*Client, error) {
	return ci.client.get(ctx, ci.discover)
}

func (ci *ConnectorIssuer) discover(ctx context.Context) (*Client, error) {
	c := ci.connector
	metadata, err := Discover(ctx, ci.fetcher, c.DiscoveryURL)
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w", c.Name, err)
	}
	if metadata.TokenEndpoint == "" {
		return nil, fmt.Errorf("connector %q: %w: no token_endpoint", c.Name, ErrMetadata)
	}
	client, err := NewClient(ClientOptions{
		TokenEndpoint: metadata.TokenEndpoint,
		ClientID:      c.ClientID,
		ClientSecret:  c.ClientSecret,
		Fetcher:       ci.fetcher,
	})
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w", c.Name, err)
	}
	return client, nil
}

// jwtID is the jti of token when it is a JWT with one, for the audit
// trail; "" otherwise. The signature is not checked: the token is the
// identity provider's answer, and the jti only names it.
func jwtID(token string) string {
	claims, err := oauth.UnverifiedPayload(token)
	if err != nil {
		return ""
	}
	id, _ := claims["jti"].(string)
	if len(id) > 256 {
		return ""
	}
	return id
}
