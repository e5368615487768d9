package authserver

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Federation signs users in at an external OpenID Provider (an OIDC
// connector) instead of with local passwords: /authorize sends the browser
// there with the authorization code flow and PKCE, and {issuer}/callback
// verifies the ID token that comes back before the consent step.
type Federation struct {
	// DiscoveryURL is the identity provider's OpenID configuration,
	// {issuer}/.well-known/openid-configuration.
	DiscoveryURL string
	ClientID     string
	// ClientSecret authenticates at the identity provider's token endpoint
	// (client_secret_basic); empty for a public client.
	ClientSecret string
	// Scopes asked for; default openid, profile and email.
	Scopes []string
	// GroupsClaim names the ID token claim with the user's groups;
	// default "groups".
	GroupsClaim string
	// HTTPClient reaches the identity provider; default a client with a 10s timeout.
	HTTPClient *http.Client
	// RedirectURL is where the identity provider sends the browser back,
	// registered with it; its path is served as the callback. Default the
	// issuer's /callback.
	RedirectURL string
	// PostLogoutRedirectURLs are where the browser may go after signing
	// out; the first unless the logout request names another of them.
	PostLogoutRedirectURLs []string
	// DisablePKCE leaves PKCE out of the sign-in, for identity providers
	// that refuse it.
	DisablePKCE bool
}

const (
	pathCallback     = "/callback"
	federationCookie = "mcpbroker_federation"
	stageFederated   = "federated"

	// idpMetadataMaxAge is how long the identity provider's metadata is used before it
	// is fetched again.
	idpMetadataMaxAge = time.Hour
	// keysMinInterval limits fetching the identity provider's keys again for an
	// unknown kid.
	keysMinInterval = time.Minute
	// maxIdPDocument caps what is read from the identity provider.
	maxIdPDocument = 1 << 20
	// idTokenLeeway is the clock skew tolerated on ID tokens.
	idTokenLeeway = time.Minute
)

func (f *Federation) validate(problem func(path, format string, args ...any)) {
	u, err := url.Parse(f.DiscoveryURL)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		problem("federation.discoveryURL", "%q is not an absolute URL", f.DiscoveryURL)
	case u.Scheme != "https" && !(u.Scheme == "http" && oauth.IsLoopbackHost(u.Hostname())):
		problem("federation.discoveryURL", "%q must be https (http only on loopback)", f.DiscoveryURL)
	case !strings.HasSuffix(u.Path, wellKnownOpenID):
		problem("federation.discoveryURL", "%q must end in %s", f.DiscoveryURL, wellKnownOpenID)
	}
	if f.ClientID == "" {
		problem("federation.clientID", "required")
	}
	if f.RedirectURL != "" {
		if u, err := url.Parse(f.RedirectURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			problem("federation.redirectURL", "%q is not an absolute http or https URL without query or fragment", f.RedirectURL)
		}
	}
	for i, target := range f.PostLogoutRedirectURLs {
		if u, err := url.Parse(target); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			problem(fmt.Sprintf("federation.postLogoutRedirectURLs[%d]", i), "%q is not an absolute http or https URL", target)
		}
	}
}

// idpMetadata is what is read of the identity provider's OpenID configuration.
type idpMetadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	// EndSessionEndpoint serves RP-initiated logout, when offered.
	EndSessionEndpoint string `json:"end_session_endpoint"`
}

// federation is the client side of federated sign-in.
type federation struct {
	config      Federation
	redirectURL string
	// callbackPath is redirectURL's path, where the callback is served.
	callbackPath string
	client       *http.Client
	now          func() time.Time
	logger       *slog.Logger

	mu          sync.Mutex
	idp         *idpMetadata
	fetched     time.Time
	keys        *oauth.KeySet // nil until fetched
	keysFetched time.Time
}

func newFederation(config Federation, redirectURL string, now func() time.Time, logger *slog.Logger) *federation {
	if len(config.Scopes) == 0 {
		config.Scopes = []string{"openid", "profile", "email"}
	} else if !slices.Contains(config.Scopes, "openid") {
		config.Scopes = append([]string{"openid"}, config.Scopes...)
	}
	config.GroupsClaim = cmp.Or(config.GroupsClaim, "groups")
	client := config.HTTPClient
	if client == nil {
		// Redirects are not followed: a metadata, key or token answer that
		// points elsewhere is a misconfiguration or an attack, never
		// something to chase with the client secret.
		client = &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	callback, _ := url.Parse(redirectURL) // checked by the caller
	return &federation{config: config, redirectURL: redirectURL, callbackPath: cmp.Or(callback.EscapedPath(), "/"), client: client, now: now, logger: logger}
}

// metadata returns the identity provider's metadata, fetched at most every
// idpMetadataMaxAge; when fetching again fails, the last good copy serves.
func (f *federation) metadata(ctx context.Context) (*idpMetadata, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idp != nil && f.now().Sub(f.fetched) < idpMetadataMaxAge {
		return f.idp, nil
	}
	var m idpMetadata
	if err := f.getJSON(ctx, f.config.DiscoveryURL, &m); err != nil {
		if f.idp != nil {
			f.logger.Warn("authserver: refreshing the identity provider's metadata failed; using the last copy", slog.Any("error", err))
			return f.idp, nil
		}
		return nil, err
	}
	if m.Issuer+wellKnownOpenID != f.config.DiscoveryURL && strings.TrimSuffix(m.Issuer, "/")+wellKnownOpenID != f.config.DiscoveryURL {
		return nil, fmt.Errorf("authserver: identity provider issuer %q does not match its discovery URL", m.Issuer)
	}
	// The token endpoint receives the client secret and the code, and the
	// keys at jwks_uri decide which ID tokens are believed: plain http is
	// accepted on loopback only, as for the discovery URL.
	for name, endpoint := range map[string]string{"authorization_endpoint": m.AuthorizationEndpoint, "token_endpoint": m.TokenEndpoint, "jwks_uri": m.JWKSURI} {
		if u, err := url.Parse(endpoint); err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && oauth.IsLoopbackHost(u.Hostname()))) {
			return nil, fmt.Errorf("authserver: identity provider %s %q is not an https URL (http only on loopback)", name, endpoint)
		}
	}
	f.idp, f.fetched = &m, f.now()
	return f.idp, nil
}

// getJSON fetches a JSON document from the identity provider.
func (f *federation) getJSON(ctx context.Context, target string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("authserver: fetch %s: %w", target, err)
	}
	req.Header.Set("Accept", "application/json")
	return f.doJSON(req, into)
}

func (f *federation) doJSON(req *http.Request, into any) error {
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("authserver: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIdPDocument+1))
	if err != nil {
		return fmt.Errorf("authserver: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	if len(body) > maxIdPDocument {
		return fmt.Errorf("authserver: %s %s: response larger than %d bytes", req.Method, req.URL.Redacted(), maxIdPDocument)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("authserver: %s %s: status %d", req.Method, req.URL.Redacted(), resp.StatusCode)
	}
	if mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mediaType != "application/json" && !strings.HasSuffix(mediaType, "+json") {
		return fmt.Errorf("authserver: %s %s: content type %q is not JSON", req.Method, req.URL.Redacted(), mediaType)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("authserver: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	return nil
}

// authorizeURL is where the browser signs in at the identity provider.
func (f *federation) authorizeURL(idp *idpMetadata, state, nonce, verifier string) string {
	target, _ := url.Parse(idp.AuthorizationEndpoint) // checked when fetched
	sum := sha256.Sum256([]byte(verifier))
	query := target.Query()
	query.Set("response_type", "code")
	query.Set("client_id", f.config.ClientID)
	query.Set("redirect_uri", f.redirectURL)
	query.Set("scope", strings.Join(f.config.Scopes, " "))
	query.Set("state", state)
	query.Set("nonce", nonce)
	if !f.config.DisablePKCE {
		query.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
		query.Set("code_challenge_method", "S256")
	}
	target.RawQuery = query.Encode()
	return target.String()
}

// signIn redeems the identity provider's code and returns who its ID token names.
func (f *federation) signIn(ctx context.Context, code, verifier, nonce string) (*identity, error) {
	idp, err := f.metadata(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {f.redirectURL},
		"code_verifier": {verifier},
	}
	if f.config.DisablePKCE {
		form.Del("code_verifier")
	}
	if f.config.ClientSecret == "" {
		form.Set("client_id", f.config.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, idp.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("authserver: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if f.config.ClientSecret != "" {
		// RFC 6749 §2.3.1: the credentials are form-encoded first.
		req.SetBasicAuth(url.QueryEscape(f.config.ClientID), url.QueryEscape(f.config.ClientSecret))
	}
	var tokens struct {
		IDToken string `json:"id_token"`
	}
	if err := f.doJSON(req, &tokens); err != nil {
		return nil, err
	}
	if tokens.IDToken == "" {
		return nil, errors.New("authserver: the identity provider's token response has no id_token")
	}
	return f.verifyIDToken(ctx, idp, tokens.IDToken, nonce)
}

// verifyIDToken checks an ID token (OpenID Connect Core §3.1.3.7) with
// provider/oauth's ID token rules: a signature by one of the identity provider's
// keys with an asymmetric algorithm, iss the identity provider's, aud naming this
// client (and azp, when there are several), exp not past, and the nonce
// sent.
func (f *federation) verifyIDToken(ctx context.Context, idp *idpMetadata, raw, nonce string) (*identity, error) {
	rules := oauth.IDTokenRules{Issuer: idp.Issuer, ClientID: f.config.ClientID, Nonce: nonce, ClockSkew: idTokenLeeway}
	claims, err := oauth.VerifyIDToken(raw, f.verificationKeys(ctx, idp, false), rules, f.now())
	if oauth.ReasonOf(err) == oauth.ReasonKeyID {
		// An unknown kid: the identity provider may have rotated its keys.
		claims, err = oauth.VerifyIDToken(raw, f.verificationKeys(ctx, idp, true), rules, f.now())
	}
	if err != nil {
		return nil, fmt.Errorf("authserver: id token: %w", err)
	}
	subject, _ := claims["sub"].(string)
	who := &identity{Subject: subject, AuthTime: f.now().Unix()}
	who.Name, _ = claims["name"].(string)
	who.Email, _ = claims["email"].(string)
	preferred, _ := claims["preferred_username"].(string)
	who.Username = cmp.Or(preferred, who.Email, subject)
	switch groups := claims[f.config.GroupsClaim].(type) {
	case string:
		who.Groups = []string{groups}
	case []any:
		for _, group := range groups {
			if name, ok := group.(string); ok {
				who.Groups = append(who.Groups, name)
			}
		}
	}
	return who, nil
}

// verificationKeys are the identity provider's signing keys, fetched on first use
// and, when refresh asks (a token named a kid they lack), again at most
// every keysMinInterval.
func (f *federation) verificationKeys(ctx context.Context, idp *idpMetadata, refresh bool) *oauth.KeySet {
	f.mu.Lock()
	defer f.mu.Unlock()
	stale := f.keys == nil || (refresh && f.now().Sub(f.keysFetched) >= keysMinInterval)
	if !stale {
		return f.keys
	}
	var document json.RawMessage
	err := f.getJSON(ctx, idp.JWKSURI, &document)
	var keys *oauth.KeySet
	if err == nil {
		keys, err = oauth.ParseJWKS(document)
	}
	if err != nil {
		f.logger.Warn("authserver: fetching the identity provider's keys failed", slog.Any("error", err))
		return f.keys
	}
	f.keys, f.keysFetched = keys, f.now()
	return keys
}

// RelyingParty signs people in at an OpenID Provider with the
// authorization code flow and PKCE, as the Auth Provider does for its
// users when federated: for other parts of the broker that sign people in
// (the console).
type RelyingParty struct{ f *federation }

// SignedIn is who an OpenID Provider's ID token names.
type SignedIn struct {
	Subject, Username, Name, Email string
	Groups                         []string
}

// NewRelyingParty signs people in at the provider config names; its
// RedirectURL is required and is where the caller serves the callback.
func NewRelyingParty(config Federation, logger *slog.Logger) (*RelyingParty, error) {
	var problems []string
	config.validate(func(path, format string, args ...any) {
		problems = append(problems, path+": "+fmt.Sprintf(format, args...))
	})
	if config.RedirectURL == "" {
		problems = append(problems, "redirect URL: required")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("authserver: relying party: %s", strings.Join(problems, "; "))
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &RelyingParty{f: newFederation(config, config.RedirectURL, time.Now, logger)}, nil
}

// AuthorizeURL is where to send the browser to sign in; state, nonce and
// verifier are the caller's, kept until the callback.
func (rp *RelyingParty) AuthorizeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	idp, err := rp.f.metadata(ctx)
	if err != nil {
		return "", err
	}
	return rp.f.authorizeURL(idp, state, nonce, verifier), nil
}

// SignIn redeems the provider's code and returns who its ID token names,
// once the token is verified.
func (rp *RelyingParty) SignIn(ctx context.Context, code, verifier, nonce string) (*SignedIn, error) {
	who, err := rp.f.signIn(ctx, code, verifier, nonce)
	if err != nil {
		return nil, err
	}
	return &SignedIn{Subject: who.Subject, Username: who.Username, Name: who.Name, Email: who.Email, Groups: who.Groups}, nil
}

// startFederatedSignIn sends the browser to the identity provider, remembering the
// authorization in a cookie scoped to the callback.
func (s *Server) startFederatedSignIn(w http.ResponseWriter, ctx context.Context, a *authorization, query string) {
	idp, err := s.federation.metadata(ctx)
	if err != nil {
		s.logger.Error("authserver: the identity provider is unreachable", slog.Any("error", err))
		s.refuse(w, a, fosite.ErrTemporarilyUnavailable.WithHint("The identity provider cannot be reached."))
		return
	}
	if err := s.sendToIdentityProvider(w, idp, query); err != nil {
		s.refuse(w, a, fosite.ErrServerError.WithWrap(err))
	}
}

// sendToIdentityProvider sends the browser to the identity provider's
// sign-in, the flow (what query it continues, and the sign-in's state,
// nonce and PKCE verifier) sealed in a cookie that only the callback
// sees; on an error nothing is written.
func (s *Server) sendToIdentityProvider(w http.ResponseWriter, idp *idpMetadata, query string) error {
	state := &flow{Query: query, Stage: stageFederated, Nonce: randomID(), Verifier: randomID() + randomID()}
	if err := s.setSealedCookie(w, federationCookie, s.federation.callbackPath, state); err != nil {
		return err
	}
	header := w.Header()
	header.Set("Cache-Control", "no-store")
	header.Set("Referrer-Policy", "no-referrer")
	header.Set("Location", s.federation.authorizeURL(idp, state.CSRF, state.Nonce, state.Verifier))
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// serveCallback is where the identity provider sends the browser back: the state
// must be the flow cookie's, the code must redeem for a valid ID token;
// then the authorization goes on to consent as after a local sign-in.
func (s *Server) serveCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	callbackPath := s.federation.callbackPath
	cookie, err := r.Cookie(federationCookie)
	if err != nil || cookie.Value == "" {
		s.renderError(w, http.StatusBadRequest, "Sign-in expired", "This sign-in is not in progress any more.")
		return
	}
	state, err := s.flows.open(cookie.Value, s.now())
	if err != nil || state.Stage != stageFederated {
		s.clearCookie(w, federationCookie, callbackPath)
		s.renderError(w, http.StatusBadRequest, "Sign-in expired", "This sign-in is not in progress any more, or took too long.")
		return
	}
	query := r.URL.Query()
	if got := query.Get("state"); got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(state.CSRF)) != 1 {
		s.renderError(w, http.StatusForbidden, "Sign-in not accepted", "The answer of the identity provider does not belong to this sign-in.")
		return
	}
	s.clearCookie(w, federationCookie, callbackPath)
	// The answer is good for one callback: a copy of the cookie and the
	// address cannot be played again, nor its code offered twice.
	switch fresh, err := s.spentForms.spend(state.CSRF, s.now()); {
	case err != nil:
		s.logger.Error("authserver: a sign-in could not be checked against the store", slog.Any("error", err))
		s.renderError(w, http.StatusServiceUnavailable, "Sign-in unavailable", "Sign-in is not available right now; try again later.")
		return
	case !fresh:
		s.renderError(w, http.StatusForbidden, "Sign-in already used", "This answer of the identity provider was used already. Start the sign-in again.")
		return
	}
	if id, ok := strings.CutPrefix(state.Query, approvalFlowPrefix); ok {
		s.approvalCallback(w, r, id, state)
		return
	}
	a, ok := s.checkAuthorization(w, ctx, state.Query)
	if !ok {
		return
	}
	if refusal := query.Get("error"); refusal != "" {
		err := fosite.ErrAccessDenied.WithHint("The identity provider did not sign the user in.")
		if refusal == "temporarily_unavailable" {
			err = fosite.ErrTemporarilyUnavailable.WithHint("The identity provider is unavailable.")
		}
		s.redirectError(w, a, err)
		return
	}
	who, err := s.federation.signIn(ctx, query.Get("code"), state.Verifier, state.Nonce)
	if err != nil {
		s.logger.Warn("authserver: federated sign-in failed", slog.String("client_id", a.client.ID), slog.Any("error", err))
		_ = s.event(ctx, r, Event{Name: EventSignInFailed, Client: a.client.ID, Detail: "the identity provider's answer could not be verified"})
		s.redirectError(w, a, fosite.ErrAccessDenied.WithHint("The sign-in at the identity provider could not be verified."))
		return
	}
	if err := s.event(ctx, r, Event{Name: EventSignIn, Subject: who.Subject, Client: a.client.ID, Detail: "identity provider"}); err != nil {
		s.renderError(w, http.StatusServiceUnavailable, "Sign-in not recorded", "The sign-in could not be recorded; try again later.")
		return
	}
	s.signedIn(w, ctx, a, &flow{Query: state.Query}, who)
}

// pathLogout signs the browser out: the sign-in cookies go, and with a
// federated sign-in the browser is sent to the identity provider's
// RP-initiated logout when it offers one.
const pathLogout = "/logout"

// serveLogout ends what the browser holds of a sign-in here and sends it
// on: to the identity provider's end_session_endpoint (OpenID Connect
// RP-Initiated Logout) when federated and offered, then to the
// post-logout redirect the request names, if configured, else the first
// configured; with none, a page says the user is signed out.
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	s.clearCookie(w, flowCookie, s.basePath+pathAuthorize)
	var allowed []string
	if s.federation != nil {
		s.clearCookie(w, federationCookie, s.federation.callbackPath)
		allowed = s.federation.config.PostLogoutRedirectURLs
	}
	next := ""
	if requested := r.URL.Query().Get("post_logout_redirect_uri"); requested != "" {
		if !slices.Contains(allowed, requested) {
			s.renderError(w, http.StatusBadRequest, "Unknown address", "The address to return to after signing out is not one this server was configured with.")
			return
		}
		next = requested
	} else if len(allowed) > 0 {
		next = allowed[0]
	}
	if s.federation != nil {
		if idp, err := s.federation.metadata(r.Context()); err == nil && idp.EndSessionEndpoint != "" {
			if target, err := url.Parse(idp.EndSessionEndpoint); err == nil && (target.Scheme == "https" || target.Scheme == "http" && oauth.IsLoopbackHost(target.Hostname())) {
				query := target.Query()
				query.Set("client_id", s.federation.config.ClientID)
				if next != "" {
					query.Set("post_logout_redirect_uri", next)
				}
				target.RawQuery = query.Encode()
				http.Redirect(w, r, target.String(), http.StatusSeeOther)
				return
			}
		}
	}
	if next != "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.renderError(w, http.StatusOK, "Signed out", "You are signed out of this server.")
}
