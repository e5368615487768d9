package exchange

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Enterprise-managed authorization toward an upstream (MCP's ext-auth): the
// app's tokens come from the upstream's own authorization server, which
// takes an Identity Assertion JWT Authorization Grant for the user from
// the company's identity provider, redeemed with the JWT bearer grant
// (RFC 7523). Each user's token is kept until shortly before it expires,
// and never serves another user.

// GrantTypeJWTBearer is RFC 7523's grant.
const GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// IDJAGIssuer issues an app's upstream tokens through ID-JAGs.
type IDJAGIssuer struct {
	// Name names the app in errors.
	Name string
	// Grant obtains the ID-JAG for the user the principal names.
	Grant func(ctx context.Context, p *oauth.Principal) (string, error)
	// DiscoveryURL is the upstream authorization server's metadata (RFC
	// 8414); ClientID and ClientSecret the broker's client there.
	DiscoveryURL           string
	ClientID, ClientSecret string
	Fetcher                *oauth.Fetcher

	client discoveredClient
	mu     sync.Mutex
	tokens *lru.Cache[string, UpstreamToken]
}

const (
	// maxIDJAGUsers bounds the users whose upstream tokens are kept.
	maxIDJAGUsers = 10000
	// idjagRenewBefore is how long before its expiry a kept token is
	// replaced.
	idjagRenewBefore = 30 * time.Second
)

var _ Issuer = (*IDJAGIssuer)(nil)

func (i *IDJAGIssuer) ExchangesAgentToken() bool { return false }

// userKey names the user a token is for: the issuer and subject of the
// agent's token, never the agent alone.
func userKey(p *oauth.Principal) string { return p.Issuer + "\x00" + p.Subject }

func (i *IDJAGIssuer) Issue(ctx context.Context, r TokenRequest) (UpstreamToken, error) {
	if r.Principal == nil || r.Principal.Subject == "" {
		return UpstreamToken{}, ErrNoAgent
	}
	key := userKey(r.Principal)
	i.mu.Lock()
	if i.tokens == nil {
		i.tokens, _ = lru.New[string, UpstreamToken](maxIDJAGUsers)
	}
	tokens := i.tokens
	i.mu.Unlock()
	if t, ok := tokens.Get(key); ok && time.Until(t.Expiry) > idjagRenewBefore {
		return t, nil
	}
	client, err := i.tokenClient(ctx)
	if err != nil {
		return UpstreamToken{}, err
	}
	assertion, err := i.Grant(ctx, r.Principal)
	if err != nil {
		return UpstreamToken{}, fmt.Errorf("identity assertion grant for app %q: %w", i.Name, err)
	}
	start := time.Now()
	issued, err := client.RedeemAssertion(ctx, assertion)
	if err != nil {
		return UpstreamToken{}, err
	}
	if !strings.EqualFold(issued.TokenType, "Bearer") {
		return UpstreamToken{}, fmt.Errorf("%w: token_type %q is not Bearer", ErrTokenResponse, issued.TokenType)
	}
	lifetime := issued.ExpiresIn
	if lifetime <= 0 {
		lifetime = time.Minute // the server did not say: not kept long
	}
	t := UpstreamToken{Value: Credential(issued.AccessToken), Expiry: start.Add(lifetime), ID: jwtID(issued.AccessToken), Audience: r.Audience, Scopes: issued.Scope}
	tokens.Add(key, t)
	return t, nil
}

func (i *IDJAGIssuer) tokenClient(ctx context.Context) (*Client, error) {
	return i.client.get(ctx, func(ctx context.Context) (*Client, error) {
		metadata, err := Discover(ctx, i.Fetcher, i.DiscoveryURL)
		if err == nil && metadata.TokenEndpoint == "" {
			err = fmt.Errorf("%w: no token_endpoint", ErrMetadata)
		}
		var client *Client
		if err == nil {
			client, err = NewClient(ClientOptions{TokenEndpoint: metadata.TokenEndpoint, ClientID: i.ClientID, ClientSecret: i.ClientSecret, Fetcher: i.Fetcher})
		}
		if err != nil {
			return nil, fmt.Errorf("the authorization server of app %q: %w", i.Name, err)
		}
		return client, nil
	})
}

// RedeemAssertion redeems an identity assertion grant with the JWT bearer
// grant (RFC 7523) and returns the access token issued. Errors never
// contain the assertion or the client secret.
func (c *Client) RedeemAssertion(ctx context.Context, assertion string) (*IssuedToken, error) {
	if assertion == "" {
		return nil, fmt.Errorf("exchange: %w: an assertion is required", ErrClientRequest)
	}
	form := url.Values{"grant_type": {GrantTypeJWTBearer}, "assertion": {assertion}}
	user, password := c.clientID, c.clientSecret
	if password == "" {
		user = ""
		form.Set("client_id", c.clientID)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	body, status, err := c.post(ctx, c.endpoint, form, user, password)
	if errors.Is(err, oauth.ErrResponseTooLarge) || len(body) > maxTokenResponseSize {
		return nil, fmt.Errorf("exchange: JWT bearer grant at %s: %w: the response is too large", c.endpoint, ErrTokenResponse)
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: JWT bearer grant at %s: %w", c.endpoint, err)
	}
	if status != http.StatusOK {
		// The request's secret parts are scrubbed from what is echoed.
		return nil, c.errorResponse(body, status, &ClientRequest{SubjectToken: assertion})
	}
	issued, err := parseAccessTokenResponse(body, nil)
	if err != nil {
		return nil, fmt.Errorf("exchange: JWT bearer grant at %s: %w: %w", c.endpoint, ErrTokenResponse, err)
	}
	return issued, nil
}
