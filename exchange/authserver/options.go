package authserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Grant types a client may be allowed.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = exchange.GrantTypeTokenExchange
)

// Defaults for the zero fields of [Options].
const (
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 720 * time.Hour
)

// Options configure a [Server]. Issuer, Audiences, DB, Keys and Minter are
// required; zero values elsewhere mean the defaults.
type Options struct {
	// Issuer is the base URL the server is reached at, http or https, with
	// an optional path and no trailing slash. Metadata names it byte for
	// byte, and every endpoint lives under it.
	Issuer string
	// Audiences are the resources tokens may be issued for (RFC 8707). The
	// first is the audience of a token whose request names no resource.
	Audiences []string
	// Scopes are the scopes clients may request (scopes_supported).
	Scopes []string
	// AccessTokenTTL: default DefaultAccessTokenTTL; whole seconds, at most
	// Keys.MaxTokenTTL().
	AccessTokenTTL time.Duration
	// RefreshTokenTTL: default DefaultRefreshTokenTTL.
	RefreshTokenTTL time.Duration
	// Users sign in at the authorization endpoint with a password.
	Users []User
	// Federation signs users in at an OpenID Provider instead; it excludes
	// Users.
	Federation *Federation
	// IDJAGIssuers are the identity providers whose Identity Assertion
	// JWT Authorization Grants the token endpoint takes (the JWT bearer
	// grant); their DiscoveryURL and HTTPClient are used.
	IDJAGIssuers []Federation
	// IDJAGMaxLifetime bounds exp - iat of those grants (default
	// DefaultIDJAGMaxLifetime).
	IDJAGMaxLifetime time.Duration
	// IDJAGIssuing, when set, issues ID-JAGs at the token exchange (with
	// an Exchanger) to clients allowed it.
	IDJAGIssuing *IDJAGIssuing
	// Registration turns on dynamic client registration (RFC 7591).
	Registration bool
	// ClientIDMetadataDocuments lets a client use an https URL as its
	// client_id: the server fetches the client's metadata from that URL
	// (draft-ietf-oauth-client-id-metadata-document). Such clients are
	// public and always asked consent for.
	ClientIDMetadataDocuments bool
	// ClientIDMetadataFetch configures how the documents are fetched; the
	// zero value reaches public addresses over https only. MaxBodySize and
	// Timeout are at most 5 KiB and 5s. A client_id naming a loopback host
	// is refused unless AllowLoopback.
	ClientIDMetadataFetch oauth.FetcherOptions
	// Clients are the clients from configuration; they replace what was
	// stored for them on every start.
	Clients []Client
	// DB holds the server's state in buckets named "authserver_*". The
	// caller opens and closes it.
	DB *bolt.DB
	// Redis, instead of DB, holds the state of servers that share it
	// (several brokers): the records under RedisKeyPrefix + "{auth}:", each
	// expiring with its code or token, and the spent forms and the sign-in
	// throttle, so that their limits hold across the servers.
	Redis          redis.UniversalClient
	RedisKeyPrefix string
	// Keys publish the signing keys (jwks_uri) and verify access tokens.
	Keys *exchange.KeySet
	// Minter mints the access tokens; its issuer must be Issuer.
	Minter *exchange.Minter
	// Exchanger serves the token-exchange grant (RFC 8693); nil turns the
	// grant off.
	Exchanger TokenExchanger
	// Logger: default slog.Default().
	Logger *slog.Logger
	// OnEvent, when set, is told of every sign-in, consent, token issued,
	// refreshed, exchanged, refused or revoked, client registration and
	// failed client authentication: the audit trail's view of the Auth
	// Provider. It runs before the answer is sent. When it fails for a
	// sign-in or a token about to be handed out, that sign-in or token is
	// refused (503 temporarily_unavailable): nothing is granted that could
	// not be recorded.
	OnEvent func(context.Context, Event) error
	// Now: default time.Now.
	Now func() time.Time
}

// TokenExchanger performs a token exchange for an authenticated client.
// Refusals are *exchange.OAuthError values; *exchange.Exchanger is the
// implementation.
type TokenExchanger interface {
	Exchange(ctx context.Context, client exchange.ExchangeClient, request exchange.ExchangeRequest) (*exchange.ExchangeResponse, error)
}

var _ TokenExchanger = (*exchange.Exchanger)(nil)

// User is a local user.
type User struct {
	Username string
	// PasswordHash is a bcrypt hash.
	PasswordHash string
	Name         string
	Email        string
	Groups       []string
}

// Client is a client from configuration.
type Client struct {
	ID string
	// Secret makes the client confidential; empty means public.
	Secret       string
	Name         string
	RedirectURIs []string
	// GrantTypes: default authorization_code and refresh_token.
	GrantTypes []string
	// Scopes the client may request: default Options.Scopes.
	Scopes []string
	// Audiences the client may obtain tokens for: default Options.Audiences.
	Audiences []string
	// SubjectAudiences are the audiences of the subject tokens the client
	// may exchange (token-exchange grant): default Options.Audiences, the
	// resources agents get tokens for.
	SubjectAudiences []string
	// Groups go into client_credentials tokens, where the client is the
	// subject.
	Groups []string
	// SkipConsent is for first-party clients whose consent is implied.
	SkipConsent bool
	// Introspect lets this confidential client call the introspection
	// endpoint (RFC 7662): resource servers that check tokens there.
	// Registered clients never may.
	Introspect bool
}

var knownGrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantTokenExchange, GrantJWTBearer}

// validate reports every problem with opts at once, each with its path.
func (opts *Options) validate() error {
	var problems []error
	problem := func(path, format string, args ...any) {
		problems = append(problems, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if err := checkIssuer(opts.Issuer); err != nil {
		problem("issuer", "%v", err)
	}
	if len(opts.Audiences) == 0 {
		problem("audiences", "at least one audience is required")
	}
	for i, audience := range opts.Audiences {
		if u, err := url.Parse(audience); err != nil || !u.IsAbs() || u.Fragment != "" {
			problem(fmt.Sprintf("audiences[%d]", i), "%q is not an absolute URI without a fragment", audience)
		}
	}
	for i, scope := range opts.Scopes {
		if !exchange.IsScopeToken(scope) {
			problem(fmt.Sprintf("scopes[%d]", i), "%q is not a scope token", scope)
		}
	}
	switch {
	case opts.DB == nil && opts.Redis == nil:
		problem("db", "required (or redis)")
	case opts.DB != nil && opts.Redis != nil:
		problem("redis", "set db or redis, not both")
	}
	if opts.Keys == nil {
		problem("keys", "required")
	}
	if opts.Minter == nil {
		problem("minter", "required")
	}
	if ttl := opts.AccessTokenTTL; ttl != 0 {
		maxTTL := exchange.MaxTTL
		if opts.Keys != nil {
			maxTTL = opts.Keys.MaxTokenTTL()
		}
		if ttl < time.Second || ttl > maxTTL || ttl%time.Second != 0 {
			problem("accessTokenTTL", "%s is not a whole number of seconds in [1s, %s]", ttl, maxTTL)
		}
	}
	if opts.RefreshTokenTTL < 0 {
		problem("refreshTokenTTL", "%s is negative", opts.RefreshTokenTTL)
	}

	usernames := map[string]bool{}
	firstCost, firstCostUser := 0, 0
	for i, user := range opts.Users {
		path := fmt.Sprintf("users[%d]", i)
		switch {
		case user.Username == "":
			problem(path+".username", "required")
		case usernames[user.Username]:
			problem(path+".username", "%q is listed twice", user.Username)
		}
		usernames[user.Username] = true
		cost, err := bcrypt.Cost([]byte(user.PasswordHash))
		switch {
		case err != nil:
			problem(path+".passwordHash", "not a bcrypt hash")
		case firstCost == 0:
			firstCost, firstCostUser = cost, i
		case cost != firstCost:
			// A sign-in against a cheaper hash answers faster than one
			// against the unknown-user hash: the time would tell which
			// usernames exist.
			problem(path+".passwordHash", "bcrypt cost %d differs from users[%d]'s %d; every user needs the same cost", cost, firstCostUser, firstCost)
		}
	}

	if opts.Federation != nil {
		opts.Federation.validate(problem)
		if len(opts.Users) > 0 {
			problem("users", "local users and federation exclude each other")
		}
	}

	clientIDs := map[string]bool{}
	for i, client := range opts.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		switch {
		case client.ID == "":
			problem(path+".clientID", "required")
		case clientIDs[client.ID]:
			problem(path+".clientID", "%q is listed twice", client.ID)
		case strings.ContainsFunc(client.ID, func(r rune) bool { return r < 0x21 || r > 0x7e }):
			problem(path+".clientID", "%q must be printable ASCII without spaces", client.ID)
		}
		clientIDs[client.ID] = true
		grants := client.GrantTypes
		if len(grants) == 0 {
			grants = defaultGrantTypes
		}
		for j, grant := range grants {
			if !slices.Contains(knownGrantTypes, grant) {
				problem(fmt.Sprintf("%s.grantTypes[%d]", path, j), "unknown grant type %q", grant)
			}
			if (grant == GrantClientCredentials || grant == GrantTokenExchange) && client.Secret == "" {
				problem(fmt.Sprintf("%s.grantTypes[%d]", path, j), "%s needs a confidential client (clientSecret)", grant)
			}
		}
		if slices.Contains(grants, GrantAuthorizationCode) && len(client.RedirectURIs) == 0 {
			problem(path+".redirectURIs", "required for the authorization_code grant")
		}
		for j, redirect := range client.RedirectURIs {
			if err := checkRedirectURI(redirect); err != nil {
				problem(fmt.Sprintf("%s.redirectURIs[%d]", path, j), "%v", err)
			}
		}
		for j, scope := range client.Scopes {
			if !slices.Contains(opts.Scopes, scope) {
				problem(fmt.Sprintf("%s.scopes[%d]", path, j), "%q is not one of the server's scopes", scope)
			}
		}
		for j, audience := range client.Audiences {
			if u, err := url.Parse(audience); err != nil || !u.IsAbs() || u.Fragment != "" {
				problem(fmt.Sprintf("%s.audiences[%d]", path, j), "%q is not an absolute URI without a fragment", audience)
			}
		}
		for j, audience := range client.SubjectAudiences {
			if u, err := url.Parse(audience); err != nil || !u.IsAbs() || u.Fragment != "" {
				problem(fmt.Sprintf("%s.subjectAudiences[%d]", path, j), "%q is not an absolute URI without a fragment", audience)
			}
		}
		if client.Introspect && client.Secret == "" {
			problem(path+".introspect", "needs a confidential client (clientSecret)")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("authserver: invalid options: %w", errors.Join(problems...))
	}
	return nil
}

var defaultGrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken}

// checkIssuer: RFC 8414 §2, an http(s) URL without query or fragment; no
// trailing slash, so that endpoint URLs and the path-inserted well-known
// URL are unambiguous.
func checkIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	switch {
	case issuer == "":
		return errors.New("required")
	case err != nil:
		return fmt.Errorf("%q is not a URL", issuer)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q must be an http or https URL", issuer)
	case u.Host == "" || u.User != nil:
		return fmt.Errorf("%q must name a host and no user", issuer)
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(issuer, "?#"):
		return fmt.Errorf("%q must have no query or fragment", issuer)
	case strings.HasSuffix(issuer, "/"):
		return fmt.Errorf("%q must not end in /", issuer)
	case u.RawPath != "" || strings.ContainsAny(u.Path, "{} \t"):
		return fmt.Errorf("%q must have a plain path, without escapes, braces or spaces", issuer)
	}
	return nil
}

// checkRedirectURI is provider/oauth's redirect URI policy, the one every
// part of the house applies.
func checkRedirectURI(raw string) error { return oauth.CheckRedirectURI(raw) }
