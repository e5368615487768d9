package authserver

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/hmac"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// Endpoint paths under the issuer's path.
const (
	pathAuthorize  = "/authorize"
	pathToken      = "/token"
	pathRegister   = "/register"
	pathIntrospect = "/introspect"
	pathRevoke     = "/revoke"
	pathJWKS       = "/jwks.json"

	wellKnownOAuth  = "/.well-known/oauth-authorization-server"
	wellKnownOpenID = "/.well-known/openid-configuration"
)

const (
	// authorizeCodeTTL is the lifetime of an authorization code.
	authorizeCodeTTL = time.Minute
	// idTokenTTL is the lifetime of an ID token.
	idTokenTTL = time.Hour
	// maxRegisteredClients caps dynamic registration.
	maxRegisteredClients = 10000
	// maxFormBytes caps the bodies of the token, introspection and
	// revocation endpoints and of the forms posted to /authorize.
	maxFormBytes = 64 << 10
)

// Server is the embedded OAuth 2.1 authorization server. It is safe for
// concurrent use.
type Server struct {
	issuer    string
	basePath  string // the issuer's path, "" or "/..." without a trailing slash
	audiences []string
	scopes    []string
	users     map[string]User
	dummyHash []byte // compared against when a username is unknown

	provider  *fosite.Fosite
	config    *fosite.Config
	store     *store
	keys      *exchange.KeySet
	exchanger TokenExchanger
	flows     *flowSealer
	throttle  signInThrottle
	// spentForms makes each sign-in and consent form, and each answer of
	// the identity provider, good for one use.
	spentForms formSpender
	// registrations rate limits dynamic registration per address.
	registrations *addressLimiter
	federation    *federation // nil: local users sign in
	// idjag takes identity assertion grants; nil when no issuer is trusted.
	idjag *jwtBearerHandler
	// idjagIssuing issues them; nil when this server does not.
	idjagIssuing *IDJAGIssuing
	metadata     Metadata

	// stepUps are the access tokens (by jti) a resource server refused
	// for lack of scope: their grants are not refreshed, so that a client
	// that refreshes before it asks the user (the TypeScript SDK does)
	// asks the user for the scopes it was told it needs.
	stepUps stepUps

	registration  bool
	secureCookies bool
	logger        *slog.Logger
	onEvent       func(context.Context, Event) error
	now           func() time.Time
}

// New builds the server from opts: it creates its buckets, writes the
// configured clients, and makes the HMAC and cookie keys on first start.
// Expired codes and tokens are swept from the database until ctx is done.
func New(ctx context.Context, opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.AccessTokenTTL == 0 {
		opts.AccessTokenTTL = min(DefaultAccessTokenTTL, opts.Keys.MaxTokenTTL())
	}
	if opts.RefreshTokenTTL == 0 {
		opts.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	issuerURL, _ := url.Parse(opts.Issuer) // validated
	s := &Server{
		issuer:        opts.Issuer,
		basePath:      issuerURL.Path,
		audiences:     slices.Clone(opts.Audiences),
		scopes:        slices.Clone(opts.Scopes),
		users:         make(map[string]User, len(opts.Users)),
		keys:          opts.Keys,
		exchanger:     opts.Exchanger,
		throttle:      newLoginThrottle(),
		spentForms:    newSpentForms(flowTTL, maxSpentForms),
		registrations: newAddressLimiter(registrationBurst, registrationWindow, registrationAddresses),
		registration:  opts.Registration,
		idjagIssuing:  opts.IDJAGIssuing,
		secureCookies: issuerURL.Scheme == "https",
		logger:        opts.Logger,
		onEvent:       opts.OnEvent,
		now:           opts.Now,
	}
	for _, user := range opts.Users {
		s.users[user.Username] = user
	}
	if opts.Federation != nil {
		s.federation = newFederation(*opts.Federation, cmp.Or(opts.Federation.RedirectURL, s.endpoint(pathCallback)), s.now, s.logger)
		for _, own := range []string{pathAuthorize, pathToken, pathJWKS, pathIntrospect, pathRevoke, pathRegister, pathLogout} {
			if s.federation.callbackPath == s.basePath+own {
				return nil, fmt.Errorf("authserver: the federation's redirect URL path %s is one of the server's own endpoints", s.federation.callbackPath)
			}
		}
	}
	// An unknown username is checked against a hash of the users' own cost
	// (one for all, validated), so that the time taken does not tell users
	// apart.
	cost := bcrypt.DefaultCost
	if len(opts.Users) > 0 {
		cost, _ = bcrypt.Cost([]byte(opts.Users[0].PasswordHash)) // validated
	}
	var err error
	if s.dummyHash, err = bcrypt.GenerateFromPassword([]byte("no such user"), cost); err != nil {
		return nil, fmt.Errorf("authserver: %w", err)
	}
	// The access tokens must name this server as their issuer.
	if _, claims, err := opts.Minter.Mint(ctx, exchange.Grant{
		Subject: "authserver", ClientID: "authserver", Audience: s.audiences[0], TTL: time.Second,
	}); err != nil {
		return nil, fmt.Errorf("authserver: minter: %w", err)
	} else if claims.Issuer != s.issuer {
		return nil, fmt.Errorf("authserver: the minter's issuer %q is not %q", claims.Issuer, s.issuer)
	}

	if opts.Redis != nil {
		// Brokers sharing Redis share the records, the spent forms and the
		// sign-in throttle.
		prefix := opts.RedisKeyPrefix + "{auth}:"
		s.store = openRedisStore(opts.Redis, opts.RedisKeyPrefix, s.scopes, s.audiences, s.now)
		s.spentForms = &redisSpentForms{client: opts.Redis, prefix: prefix, ttl: flowTTL}
		s.throttle = &redisThrottle{client: opts.Redis, prefix: prefix}
	} else if s.store, err = openStore(opts.DB, s.scopes, s.audiences, s.now); err != nil {
		return nil, err
	}
	if ended, err := s.store.endGrants(s.userRemoved); err != nil {
		return nil, fmt.Errorf("authserver: end the grants of removed users: %w", err)
	} else if ended > 0 {
		s.logger.Info("authserver: ended the grants of users no longer configured", slog.Int("grants", ended))
	}
	if opts.ClientIDMetadataDocuments {
		s.store.documents = newClientDocuments(opts.ClientIDMetadataFetch, s.scopes, s.audiences, s.logger, s.now)
	}
	hasher := newSecretHasher()
	if err := s.saveConfigClients(opts.Clients); err != nil {
		return nil, err
	}
	hmacSecret, err := s.store.secret("hmac_secret", 32)
	if err != nil {
		return nil, err
	}
	flowKey, err := s.store.secret("flow_key", 32)
	if err != nil {
		return nil, err
	}
	if s.flows, err = newFlowSealer(flowKey); err != nil {
		return nil, err
	}

	s.config = &fosite.Config{
		AccessTokenLifespan:   opts.AccessTokenTTL,
		RefreshTokenLifespan:  opts.RefreshTokenTTL,
		AuthorizeCodeLifespan: authorizeCodeTTL,
		IDTokenLifespan:       idTokenTTL,
		IDTokenIssuer:         s.issuer,
		AccessTokenIssuer:     s.issuer,
		TokenURL:              s.endpoint(pathToken),
		// Scopes and audiences are compared exactly: no wildcard scopes,
		// no audience that is a mere path prefix of an allowed one.
		ScopeStrategy:            fosite.ExactScopeStrategy,
		AudienceMatchingStrategy: fosite.ExactAudienceMatchingStrategy,
		EnforcePKCE:              true,
		RedirectSecureChecker:    func(_ context.Context, u *url.URL) bool { return checkRedirectURI(u.String()) == nil },
		// Every client with the refresh_token grant gets a refresh token,
		// whatever its scopes.
		RefreshTokenScopes:     []string{},
		OmitRedirectScopeParam: true,
		GlobalSecret:           hmacSecret,
		ClientSecretsHasher:    hasher,
		TokenEntropy:           32,
	}
	strategy := &tokenStrategy{
		HMACSHAStrategyUnPrefixed: oauth2.NewHMACSHAStrategyUnPrefixed(&hmac.HMACStrategy{Config: s.config}, s.config),
		minter:                    opts.Minter,
		keys:                      opts.Keys,
		issuer:                    s.issuer,
		ttl:                       opts.AccessTokenTTL,
		now:                       s.now,
	}
	s.provider = fosite.NewOAuth2Provider(s.store, s.config)
	// Order matters: the token endpoint runs every handler's checks in
	// turn, then every handler's response. The resource check comes before
	// PKCE, which spends the code's challenge as it checks it.
	for _, factory := range []compose.Factory{
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
	} {
		s.addHandler(factory(s.config, s.store, strategy))
	}
	s.addHandler(&resourceHandler{audiences: s.audiences})
	for _, factory := range []compose.Factory{
		compose.OAuth2PKCEFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	} {
		s.addHandler(factory(s.config, s.store, strategy))
	}
	s.addHandler(&idTokenHandler{keys: opts.Keys, issuer: s.issuer, now: s.now})
	if s.exchanger != nil {
		s.addHandler(&tokenExchangeHandler{server: s, exchanger: s.exchanger, audiences: s.audiences})
	}
	if len(opts.IDJAGIssuers) > 0 {
		h := &jwtBearerHandler{s: s, maxLife: cmp.Or(opts.IDJAGMaxLifetime, DefaultIDJAGMaxLifetime),
			helper: &oauth2.HandleHelper{AccessTokenStrategy: strategy, AccessTokenStorage: s.store, Config: s.config}}
		for _, f := range opts.IDJAGIssuers {
			h.issuers = append(h.issuers, newFederation(f, s.issuer+"/unused", s.now, s.logger))
		}
		s.idjag = h
		s.addHandler(h)
	}
	s.metadata = s.buildMetadata()

	go s.store.sweepEvery(ctx, sweepInterval, s.logger)
	return s, nil
}

// addHandler registers a fosite handler for every role it plays, as
// compose.Compose does.
func (s *Server) addHandler(handler any) {
	if h, ok := handler.(fosite.AuthorizeEndpointHandler); ok {
		s.config.AuthorizeEndpointHandlers.Append(h)
	}
	if h, ok := handler.(fosite.TokenEndpointHandler); ok {
		s.config.TokenEndpointHandlers.Append(h)
	}
	if h, ok := handler.(fosite.TokenIntrospector); ok {
		s.config.TokenIntrospectionHandlers.Append(h)
	}
	if h, ok := handler.(fosite.RevocationHandler); ok {
		s.config.RevocationHandlers.Append(h)
	}
}

// saveConfigClients stores the configured clients, secrets hashed.
func (s *Server) saveConfigClients(configured []Client) error {
	clients := make([]*client, 0, len(configured))
	for _, c := range configured {
		stored := &client{
			ID:               c.ID,
			Name:             c.Name,
			RedirectURIs:     slices.Clone(c.RedirectURIs),
			GrantTypes:       slices.Clone(c.GrantTypes),
			Scopes:           slices.Clone(c.Scopes),
			Audiences:        slices.Clone(c.Audiences),
			SubjectAudiences: slices.Clone(c.SubjectAudiences),
			Groups:           slices.Clone(c.Groups),
			SkipConsent:      c.SkipConsent,
			Introspect:       c.Introspect,
			AuthMethod:       authMethodNone,
			IssuedAt:         s.now().UTC(),
		}
		if len(stored.GrantTypes) == 0 {
			stored.GrantTypes = slices.Clone(defaultGrantTypes)
		}
		if c.Secret != "" {
			hash, err := bcrypt.GenerateFromPassword([]byte(c.Secret), clientSecretCost)
			if err != nil {
				return fmt.Errorf("authserver: hash the secret of client %q: %w", c.ID, err)
			}
			stored.SecretHash = hash
			stored.AuthMethod = authMethodBasic
		}
		clients = append(clients, stored)
	}
	if err := s.store.saveConfigClients(clients); err != nil {
		return fmt.Errorf("authserver: save clients: %w", err)
	}
	return nil
}

// userRemoved reports whether sess belongs to a local user who is no
// longer configured. When users sign in locally, every user session is
// taken for a local user's, including those from before sessions were
// marked; the grants of federated users stay while federation does.
func (s *Server) userRemoved(sess *session) bool {
	if sess.AuthTime.IsZero() { // client credentials: the client is the subject
		return false
	}
	if !sess.Local && s.federation != nil {
		return false
	}
	_, configured := s.users[sess.Subject]
	return !configured
}

// endpoint is the URL of the endpoint at path under the issuer.
func (s *Server) endpoint(path string) string { return s.issuer + path }

// Register adds every route the server serves to mux, under the issuer's
// path: metadata (RFC 8414 path-inserted, OpenID discovery both ways),
// JWKS, authorize, token, introspect, revoke and, when enabled, register
// (dynamic registration) and callback (federated sign-in).
func (s *Server) Register(mux *http.ServeMux) {
	for _, path := range s.metadataPaths() {
		mux.HandleFunc("GET "+path, s.serveMetadata)
	}
	mux.HandleFunc("GET "+s.basePath+pathJWKS, s.serveJWKS)
	mux.HandleFunc("GET "+s.basePath+pathAuthorize, s.serveAuthorize)
	mux.HandleFunc("POST "+s.basePath+pathAuthorize, s.serveAuthorizeForm)
	mux.HandleFunc("POST "+s.basePath+pathToken, s.serveToken)
	mux.HandleFunc("POST "+s.basePath+pathIntrospect, s.serveIntrospect)
	mux.HandleFunc("POST "+s.basePath+pathRevoke, s.serveRevoke)
	if s.registration {
		mux.HandleFunc("POST "+s.basePath+pathRegister, s.serveRegister)
	}
	if s.federation != nil {
		mux.HandleFunc("GET "+s.federation.callbackPath, s.serveCallback)
	}
	mux.HandleFunc("GET "+s.basePath+pathLogout, s.serveLogout)
	mux.HandleFunc("GET "+s.approvalsPath()+"{id}", s.serveApproval)
	mux.HandleFunc("POST "+s.approvalsPath()+"{id}", s.serveApprovalForm)
}

// Revoked reports whether the access token with jti tokenID was revoked
// (RFC 7009) before it expired. It fails closed: when the database cannot
// be read, every token counts as revoked.
func (s *Server) Revoked(_ context.Context, tokenID string) bool {
	revoked, err := s.store.revoked(tokenID)
	if err != nil {
		s.logger.Error("authserver: reading revocations failed", slog.Any("error", err))
		return true
	}
	return revoked
}

// AskStepUp records that a resource server refused the access token with
// jti tokenID for lack of scope (403 insufficient_scope): its grant is not
// refreshed any more (invalid_grant), and the client asks the user for the
// scope. Kept in memory for the life of a refresh attempt; per replica.
func (s *Server) AskStepUp(tokenID string) {
	if tokenID != "" {
		s.stepUps.ask(tokenID, s.now())
	}
}

// authorizePath is the path of the authorization endpoint: the forms'
// action and the flow cookie's path.
func (s *Server) authorizePath() string { return s.basePath + pathAuthorize }

// BrowserAPI reports whether path is one of the endpoints a client in a
// browser calls cross-origin with its own credentials (metadata, keys,
// token, registration, revocation, introspection), whose answers any
// origin may read. The sign-in pages are not: they are navigated to.
func (s *Server) BrowserAPI(path string) bool {
	if slices.Contains(s.metadataPaths(), path) {
		return true
	}
	rest, ok := strings.CutPrefix(path, s.basePath)
	if !ok {
		return false
	}
	switch rest {
	case pathJWKS, pathToken, pathRegister, pathRevoke, pathIntrospect:
		return true
	}
	return false
}

// metadataPaths are where the metadata is served: RFC 8414's
// path-inserted URL, OpenID discovery's path-appended one, and, for an
// issuer with a path, OpenID discovery path-inserted as well (RFC 8414
// §5), which clients following the MCP specification also try.
func (s *Server) metadataPaths() []string {
	paths := []string{
		wellKnownOAuth + s.basePath,
		s.basePath + wellKnownOpenID,
	}
	if s.basePath != "" {
		paths = append(paths, wellKnownOpenID+s.basePath)
	}
	return paths
}

// stepUps holds the jtis of access tokens refused for lack of scope, for
// stepUpTTL, at most maxStepUps of them.
type stepUps struct {
	mu    sync.Mutex
	asked map[string]time.Time
}

const (
	stepUpTTL  = 10 * time.Minute
	maxStepUps = 10000
)

func (u *stepUps) ask(tokenID string, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.asked == nil || len(u.asked) >= maxStepUps {
		fresh := make(map[string]time.Time)
		for id, at := range u.asked {
			if now.Sub(at) < stepUpTTL && len(fresh) < maxStepUps/2 {
				fresh[id] = at
			}
		}
		u.asked = fresh
	}
	u.asked[tokenID] = now
}

// taken reports, once, whether the token was refused for lack of scope.
func (u *stepUps) taken(tokenID string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	at, ok := u.asked[tokenID]
	if ok {
		delete(u.asked, tokenID)
	}
	return ok && now.Sub(at) < stepUpTTL
}
