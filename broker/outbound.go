package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// credential is a bearer token held for one request: the agent's own, or
// one issued for an upstream. It formats and logs as "REDACTED", so no
// format verb or log call reveals it by accident.
type credential string

const redacted = "REDACTED"

func (credential) String() string               { return redacted }
func (credential) GoString() string             { return redacted }
func (credential) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (credential) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// tokenIssuer issues the tokens an app's upstream receives: the embedded
// authorization server's minter, or a connector's token endpoint.
type tokenIssuer interface {
	issue(ctx context.Context, r tokenRequest) (issuedToken, error)
	// exchangesAgentToken reports whether issuing needs the agent's own
	// token (tokenRequest.subjectToken).
	exchangesAgentToken() bool
}

// tokenRequest is what one upstream token is issued for.
type tokenRequest struct {
	principal *oauth.Principal
	// subjectToken is the agent's access token, for issuers that exchange
	// it; empty for the embedded minter.
	subjectToken credential
	audience     string
	scopes       []string // nil: an identity-only token
	ttl          time.Duration
	delegation   bool
}

// issuedToken is a token for an upstream and when it expires.
type issuedToken struct {
	value  credential
	expiry time.Time
}

// mintingIssuer mints in process with the embedded authorization server's
// keys: no network hop on the call's path.
type mintingIssuer struct {
	minter *exchange.Minter
}

func (m *mintingIssuer) exchangesAgentToken() bool { return false }

func (m *mintingIssuer) issue(ctx context.Context, r tokenRequest) (issuedToken, error) {
	p := r.principal
	ttl, err := withinAgentLifetime(r.ttl, p.Expiry, time.Now())
	if err != nil {
		return issuedToken{}, err
	}
	grant := exchange.Grant{
		Subject:    p.Subject,
		ClientID:   p.ClientID,
		Audience:   r.audience,
		Scopes:     r.scopes,
		TTL:        ttl,
		Delegation: r.delegation,
	}
	if p.Issuer != m.minter.Issuer() {
		// The token's iss is the Auth Provider's whoever authenticated the
		// user: sub_iss keeps another issuer's "alice" apart from its own.
		grant.Extra = map[string]any{exchange.SubjectIssuerClaim: p.Issuer}
	}
	if r.delegation {
		// The agent acts now; whoever acted before it, as the agent's own
		// token tells, nests inside. The verified chain is shared, not
		// copied: minting only reads it.
		grant.Actor = &oauth.Actor{Subject: p.ClientID, ClientID: p.ClientID, Actor: p.Actor}
	}
	token, claims, err := m.minter.Mint(ctx, grant)
	if err != nil {
		return issuedToken{}, err
	}
	return issuedToken{value: credential(token), expiry: claims.Expiry}, nil
}

// errAgentTokenExpiring refuses a token for an agent whose own token has
// less than a second left: no token can be both whole seconds long and
// end with it. The agent needs a new token, as if its own had expired.
var errAgentTokenExpiring = errors.New("the agent's token expires now")

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
		return 0, errAgentTokenExpiring
	}
	return min(ttl, remaining), nil
}

// connectorIssuer exchanges the agent's token at a connector's token
// endpoint (RFC 8693). The endpoint is discovered from the connector's
// metadata on first use.
type connectorIssuer struct {
	connector *config.Connector
	fetcher   *oauth.Fetcher

	mu      sync.Mutex
	client  *exchange.Client
	retryAt time.Time // after a failed discovery, when to try again
	failure error
}

// discoveryRetryInterval keeps a connector that is down from being asked
// for its metadata by every call.
const discoveryRetryInterval = 5 * time.Second

func newConnectorIssuer(connector *config.Connector, fetcher *oauth.Fetcher) *connectorIssuer {
	return &connectorIssuer{connector: connector, fetcher: fetcher}
}

func (ci *connectorIssuer) exchangesAgentToken() bool { return true }

// errWiderScope refuses a token an identity provider issued with scopes
// nobody asked for.
var errWiderScope = errors.New("the identity provider granted scopes beyond the request")

func (ci *connectorIssuer) issue(ctx context.Context, r tokenRequest) (issuedToken, error) {
	if r.subjectToken == "" {
		return issuedToken{}, errNoSubjectToken
	}
	client, err := ci.exchangeClient(ctx)
	if err != nil {
		return issuedToken{}, err
	}
	req := exchange.ClientRequest{
		SubjectToken:     string(r.subjectToken),
		SubjectTokenType: exchange.TokenTypeAccessToken,
		Audience:         r.audience,
		Scopes:           r.scopes,
	}
	if r.delegation {
		// The identity provider derives the actor, the agent, from its own
		// token.
		req.ActorToken, req.ActorTokenType = string(r.subjectToken), exchange.TokenTypeAccessToken
	}
	start := time.Now()
	issued, err := client.Exchange(ctx, req)
	if err != nil {
		return issuedToken{}, err
	}
	if issued.TokenType != "Bearer" {
		return issuedToken{}, fmt.Errorf("%w: token_type %q is not Bearer", exchange.ErrTokenResponse, issued.TokenType)
	}
	if err := withinRequestedScope(issued, r.scopes); err != nil {
		return issuedToken{}, err
	}
	lifetime := issued.ExpiresIn
	if lifetime <= 0 {
		// The provider did not say: assume no more than asked for.
		lifetime = r.ttl
	}
	return issuedToken{value: credential(issued.AccessToken), expiry: start.Add(lifetime)}, nil
}

// withinRequestedScope refuses a token that grants scopes beyond requested.
// A request without scopes allows none: RFC 8693 servers commonly grant
// the subject token's whole scope when none is asked for, and an
// identity-only token must not carry the agent's scopes to the upstream.
// When the token is a JWT its own scope and scp claims are checked as
// well, since they are what the upstream reads and a response that leaves
// scope out only claims it equals the request (RFC 8693 §2.2.1). Any
// other token is taken at the response's word.
func withinRequestedScope(issued *exchange.IssuedToken, requested []string) error {
	for _, scope := range issued.Scope {
		if !slices.Contains(requested, scope) {
			return errWiderScope
		}
	}
	claimed, err := jwtScopes(issued.AccessToken)
	if err != nil {
		return err
	}
	for _, scope := range claimed {
		if !slices.Contains(requested, scope) {
			return errWiderScope
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
	_, rest, ok := strings.Cut(token, ".")
	payloadPart, signaturePart, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(signaturePart, ".") {
		return nil, nil
	}
	// The strict decoders the broker reads inbound tokens with: exact
	// member names, no duplicates, so this check reads the claim an
	// upstream reads.
	payload, err := oauth.DecodeSegment(payloadPart)
	if err != nil {
		return nil, nil
	}
	claims, err := oauth.DecodeObject(payload)
	if err != nil {
		return nil, nil
	}
	var scopes []string
	for _, name := range [...]string{"scope", "scp"} {
		values, ok := oauth.ScopeValues(claims[name])
		if !ok {
			return nil, fmt.Errorf("%w: the token's %s claim cannot be read", errWiderScope, name)
		}
		scopes = append(scopes, values...)
	}
	return scopes, nil
}

// exchangeClient discovers the connector's token endpoint once.
func (ci *connectorIssuer) exchangeClient(ctx context.Context) (*exchange.Client, error) {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	if ci.client != nil {
		return ci.client, nil
	}
	if time.Now().Before(ci.retryAt) {
		return nil, ci.failure
	}
	client, err := ci.discover(ctx)
	if err != nil {
		ci.retryAt, ci.failure = time.Now().Add(discoveryRetryInterval), err
		return nil, err
	}
	ci.client = client
	return client, nil
}

func (ci *connectorIssuer) discover(ctx context.Context) (*exchange.Client, error) {
	c := ci.connector
	metadata, err := exchange.Discover(ctx, ci.fetcher, c.OIDCWellKnownURL)
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w", c.Name, err)
	}
	if metadata.TokenEndpoint == "" {
		return nil, fmt.Errorf("connector %q: %w: no token_endpoint", c.Name, exchange.ErrMetadata)
	}
	client, err := exchange.NewClient(exchange.ClientOptions{
		TokenEndpoint: metadata.TokenEndpoint,
		ClientID:      c.OAuthClientID,
		ClientSecret:  c.OAuthClientSecret.Value(),
		Fetcher:       ci.fetcher,
	})
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w", c.Name, err)
	}
	return client, nil
}
