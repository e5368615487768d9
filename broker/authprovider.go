package broker

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	bolt "go.etcd.io/bbolt"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/telemetry"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/exchange/authserver"
	"github.com/mcpbroker/mcpbroker/opa"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// authProvider is the embedded Auth Provider: the signing keys, the
// in-process minter that outbound token exchange uses, and the
// authorization server agents and other brokers talk to. Its state is in
// the broker's store.
type authProvider struct {
	keys *exchange.KeySet
	// minter signs with authProvider.signingAlgorithm; minters has one
	// for each algorithm, by name.
	minter  *exchange.Minter
	minters map[string]*exchange.Minter
	server  *authserver.Server
	issuer  string
}

// newAuthProvider builds the Auth Provider on the broker's store when
// authProvider is enabled; nil otherwise.
func newAuthProvider(ctx context.Context, cfg *config.Config, db *bolt.DB, b *Broker) (*authProvider, error) {
	ap := cfg.AuthProvider
	if ap == nil || !ap.Enabled {
		return nil, nil
	}
	// Replicas share the Auth Provider's state in Redis; a check builds it
	// on a throwaway store instead.
	shared := b.redis != nil && !b.dry
	var keyStore exchange.KeyStore = exchange.NewBoltKeyStore(db)
	if shared {
		keyStore = exchange.NewRedisKeyStore(b.redis, cfg.Storage.Redis.KeyPrefix)
	}
	keys, err := exchange.NewKeySet(ctx, keyStore, exchange.KeySetOptions{Logger: b.log})
	if err != nil {
		return nil, fmt.Errorf("broker: auth provider keys: %w", err)
	}
	// Both algorithms' keys exist: an app may want its tokens signed with
	// the one that is not the default.
	minters := make(map[string]*exchange.Minter, 2)
	for _, algorithm := range []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256} {
		if minters[string(algorithm)], err = exchange.NewMinter(keys, exchange.MinterOptions{Issuer: ap.Issuer, Algorithm: algorithm}); err != nil {
			return nil, fmt.Errorf("broker: auth provider minter: %w", err)
		}
	}
	minter := minters[ap.SigningAlgorithm]
	if minter == nil {
		minter = minters[string(jose.EdDSA)]
	}
	p := &authProvider{keys: keys, minter: minter, minters: minters, issuer: ap.Issuer}
	// The exchanger refuses revoked subject tokens; revocations live in the
	// server, which in turn serves the exchanger's grant.
	exchanger, err := exchange.NewExchanger(minter, keys, exchange.ExchangerOptions{
		Issuer:  ap.Issuer,
		TTL:     timeOf(ap.ExchangeTTL),
		Revoked: func(ctx context.Context, tokenID string) bool { return p.server.Revoked(ctx, tokenID) },
	})
	if err != nil {
		return nil, fmt.Errorf("broker: auth provider token exchange: %w", err)
	}
	login, err := federation(cfg, pemFiles{b.baseDir})
	if err != nil {
		return nil, err
	}
	opts := authserver.Options{
		Issuer:                    ap.Issuer,
		Audiences:                 ap.Audiences,
		Scopes:                    ap.Scopes,
		AccessTokenTTL:            timeOf(ap.AccessTokenTTL),
		RefreshTokenTTL:           timeOf(ap.RefreshTokenTTL),
		Users:                     loginUsers(ap.Login.Users),
		Federation:                login,
		Registration:              ap.Registration.Enabled,
		ClientIDMetadataDocuments: ap.Registration.ClientIDMetadataDocuments,
		ClientIDMetadataFetch:     clientDocumentFetch(),
		Clients:                   providerClients(ap.Clients),
		DB:                        db,
		Keys:                      keys,
		Minter:                    minter,
		Exchanger:                 exchanger,
		Logger:                    b.log,
		OnEvent:                   b.recordAuthEvent,
	}
	if j := ap.IDJAG; j != nil {
		if opts.IDJAGIssuing, err = idJagIssuing(ctx, j, b); err != nil {
			return nil, err
		}
	}
	for _, conn := range cfg.Connectors {
		if !conn.IDJAGIssuer {
			continue
		}
		f := authserver.Federation{DiscoveryURL: conn.OIDCWellKnownURL, ClientID: conn.OAuthClientID}
		if conn.TLS != nil {
			tlsConfig, err := (pemFiles{b.baseDir}).upstreamTLS("connectors["+conn.Name+"].tls", conn.TLS)
			if err != nil {
				return nil, err
			}
			f.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
		opts.IDJAGIssuers = append(opts.IDJAGIssuers, f)
	}
	if c := consoleClient(cfg); c != nil {
		// The console signs people in with OpenID Connect.
		opts.Clients = append(opts.Clients, *c)
		if !slices.Contains(opts.Scopes, "openid") {
			opts.Scopes = append(slices.Clone(opts.Scopes), "openid")
		}
	}
	if shared {
		opts.DB, opts.Redis, opts.RedisKeyPrefix = nil, b.redis, cfg.Storage.Redis.KeyPrefix
	}
	if p.server, err = authserver.New(ctx, opts); err != nil {
		return nil, fmt.Errorf("broker: auth provider: %w", err)
	}
	return p, nil
}

// idJagIssuing makes the Auth Provider issue ID-JAGs for the resource
// applications of j, as its policy decides (compiled here; a file policy
// is read at start).
func idJagIssuing(ctx context.Context, j *config.IDJAGIssuing, b *Broker) (*authserver.IDJAGIssuing, error) {
	policy, err := opa.Compile(ctx, policySource(j.Policy, b.baseDir), opa.Options{Logger: b.log})
	if err != nil {
		return nil, fmt.Errorf("authProvider.idJag.policy: %w", err)
	}
	issuing := &authserver.IDJAGIssuing{TTL: time.Duration(j.TTL)}
	for _, r := range j.Resources {
		issuing.Resources = append(issuing.Resources, authserver.IDJAGResource{Name: r.Name, Audience: r.Audience, Resources: r.Resources, Scopes: r.Scopes})
	}
	issuing.Decide = func(ctx context.Context, r authserver.IDJAGRequest) (bool, []string, string) {
		groups := make([]any, len(r.Groups))
		for i, g := range r.Groups {
			groups[i] = g
		}
		scopes := make([]any, len(r.Scopes))
		for i, s := range r.Scopes {
			scopes[i] = s
		}
		input := map[string]any{
			"client_id":            r.ClientID,
			"subject":              map[string]any{"sub": r.Subject, "groups": groups},
			"resource_application": map[string]any{"name": r.Resource.Name, "audience": r.Resource.Audience, "resource": r.ResourceURI},
			"scopes":               scopes,
		}
		_, d := policy.EvalRaw(ctx, input)
		b.log.Info("identity assertion grant decided", "client_id", r.ClientID, "subject", r.Subject, "application", r.Resource.Name,
			"allowed", d.Allowed, "reason", d.Reason)
		return d.Allowed, d.Scopes, d.ExternalMessage
	}
	return issuing, nil
}

// register serves the authorization server's endpoints on mux.
func (p *authProvider) register(mux *http.ServeMux) {
	if p != nil {
		p.server.Register(mux)
	}
}

// revoked reports whether an access token this Auth Provider issued was
// revoked; tokens of other issuers are not its to judge.
func (p *authProvider) revoked(ctx context.Context, issuer, tokenID string) bool {
	return p != nil && issuer == p.issuer && p.server.Revoked(ctx, tokenID)
}

// askStepUp tells the Auth Provider that an access token it issued was
// refused for lack of scope, so that its grant is not refreshed and the
// client asks the user; tokens of other issuers are not its to handle.
func (p *authProvider) askStepUp(issuer, tokenID string) {
	if p != nil && issuer == p.issuer {
		p.server.AskStepUp(tokenID)
	}
}

// federation signs users in through the connector named by
// authProvider.login.connector, if any.
func federation(cfg *config.Config, files pemFiles) (*authserver.Federation, error) {
	connector := cfg.Connector(cfg.AuthProvider.Login.Connector)
	if cfg.AuthProvider.Login.Connector == "" || connector == nil {
		return nil, nil
	}
	f := &authserver.Federation{
		DiscoveryURL: connector.OIDCWellKnownURL,
		ClientID:     connector.OAuthClientID,
		ClientSecret: connector.OAuthClientSecret.Value(),
		Scopes:       slices.Clone(connector.Scopes),
		DisablePKCE:  connector.DisablePKCE,
	}
	if connector.OfflineAccess && !slices.Contains(f.Scopes, "offline_access") {
		if len(f.Scopes) == 0 {
			f.Scopes = []string{"openid", "profile", "email"}
		}
		f.Scopes = append(f.Scopes, "offline_access")
	}
	if r := connector.OAuthLoginRedirect; r != nil && len(r.URLs) > 0 {
		f.RedirectURL = r.URLs[0]
	}
	if r := connector.OAuthLogoutRedirect; r != nil {
		f.PostLogoutRedirectURLs = r.URLs
	}
	if connector.TLS != nil {
		tlsConfig, err := files.upstreamTLS("connectors["+connector.Name+"].tls", connector.TLS)
		if err != nil {
			return nil, err
		}
		f.HTTPClient = &http.Client{
			Timeout:       10 * time.Second,
			Transport:     &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return f, nil
}

// clientDocumentFetch is how client ID metadata documents are fetched:
// public addresses only, whatever allowPrivateNetworks says. That setting
// trusts identity providers the operator names; a client_id URL is named
// by whoever sends an authorization request, and would otherwise let
// anyone make the server send requests into its private networks.
func clientDocumentFetch() oauth.FetcherOptions {
	return oauth.FetcherOptions{}
}

func loginUsers(users []config.LoginUser) []authserver.User {
	out := make([]authserver.User, len(users))
	for i, u := range users {
		out[i] = authserver.User{Username: u.Username, PasswordHash: u.PasswordHash.Value(), Name: u.Name, Email: u.Email, Groups: u.Groups}
	}
	return out
}

func providerClients(clients []config.ProviderClient) []authserver.Client {
	out := make([]authserver.Client, len(clients))
	for i, c := range clients {
		out[i] = authserver.Client{
			ID: c.ClientID, Secret: c.ClientSecret.Value(), Name: c.Name, RedirectURIs: c.RedirectURIs,
			GrantTypes: c.GrantTypes, Scopes: c.Scopes, Audiences: c.Audiences, SubjectAudiences: c.SubjectAudiences,
			Groups: c.Groups, SkipConsent: c.SkipConsent, Introspect: c.Introspect,
		}
	}
	return out
}

// keyReloadInterval is how often replicas sharing the signing keys read
// them again, to publish and accept the keys another replica made.
const keyReloadInterval = 30 * time.Second

// start runs the key rotation schedule until ctx ends, and, for keys
// replicas share, their reloading.
func (p *authProvider) start(ctx context.Context, interval time.Duration) {
	if p == nil {
		return
	}
	go p.keys.ReloadEvery(ctx, keyReloadInterval)
	if interval > 0 {
		go p.keys.RotateEvery(ctx, interval)
	}
}

// recordAuthEvent records what the Auth Provider did or refused, and
// counts it.
func (b *Broker) recordAuthEvent(ctx context.Context, e authserver.Event) error {
	b.metrics.AuthEvent(e.Name)
	r := &audit.Record{
		Time:    time.Now(),
		Kind:    audit.KindAuth,
		Event:   e.Name,
		TraceID: telemetry.TraceID(ctx),
		Source:  e.Source,
		Subject: e.Subject,
		Issuer:  b.cfg.AuthProvider.Issuer,
		Client:  e.Client,
		Detail:  e.Detail,
	}
	if e.TokenID != "" || len(e.Audience) > 0 || len(e.Scopes) > 0 {
		r.Outbound = &audit.Outbound{JTI: e.TokenID, Audience: e.Audience, Scope: e.Scopes}
	}
	if e.Status != 0 {
		r.Result = &audit.Result{HTTPStatus: e.Status}
	}
	if a := e.Approval; a != nil {
		// The approval's id ties its steps to the records of the calls.
		r.Kind, r.App, r.Tool, r.ArgumentsDigest = audit.KindApproval, a.App, a.Tool, a.ArgumentsDigest
		r.Approval = &audit.Approval{ID: a.ID, Status: strings.TrimPrefix(e.Name, "approval."), Approvers: a.Approvers, By: a.DecidedBy, Deadline: a.Deadline}
		if e.Name == authserver.EventApprovalApproved || e.Name == authserver.EventApprovalDenied {
			defer b.completeElicitation(a.Session, a.ID)
		}
	}
	if err := b.audit.write(ctx, r); err != nil {
		b.log.Error("audit record of the Auth Provider not written", "event", e.Name, "error", err)
		return err
	}
	return nil
}
