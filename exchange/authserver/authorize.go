package authserver

import (
	"context"
	"errors"
	"github.com/mcpbroker/mcpbroker/exchange"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/ory/fosite"
)

// authorization is an authorization request that passed every check: the
// client and redirect URI are known good, so errors from here on go back
// to the client.
type authorization struct {
	request     fosite.AuthorizeRequester
	client      *client
	redirectURI *url.URL
	state       string
	audience    string
	prompts     []string
}

// fositeState stands in for a state shorter than fosite accepts: state is
// the client's business (PKCE protects the code), and the client's own
// value is what goes back.
const fositeState = "state-not-sent"

// codeChallengePattern is RFC 7636 §4.2 for S256: base64url of 32 bytes.
var codeChallengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// singleValued are the authorization request parameters that may appear
// once only (RFC 6749 §3.1); resource and audience may repeat (RFC 8707).
var singleValued = []string{
	"client_id", "redirect_uri", "response_type", "response_mode", "scope", "state",
	"code_challenge", "code_challenge_method", "nonce", "prompt",
}

// serveAuthorize opens an authorization: it checks the request and shows
// the login form, or sends the browser to the identity provider.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	query := r.URL.RawQuery
	a, ok := s.checkAuthorization(w, r.Context(), query)
	if !ok {
		return
	}
	if slices.Contains(a.prompts, "none") {
		s.refuse(w, a, fosite.ErrLoginRequired.WithHint("There is no signed-in user: every authorization here asks for the password."))
		return
	}
	if s.federation != nil {
		s.startFederatedSignIn(w, r.Context(), a, query)
		return
	}
	state := s.newFlow(query)
	if err := s.setFlow(w, state); err != nil {
		s.serverError(w, err)
		return
	}
	s.renderLogin(w, http.StatusOK, a, state, "", "")
}

// serveAuthorizeForm continues an authorization with the login or consent
// form the user posted.
func (s *Server) serveAuthorizeForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Invalid form", "The form could not be read.")
		return
	}
	state, err := s.postedFlow(r)
	if err != nil {
		s.refuseForm(w, err, "Go back, reload the page and try again.", "This sign-in is not in progress any more, or took too long.")
		return
	}
	// The request is checked again: the client may have changed since.
	a, ok := s.checkAuthorization(w, r.Context(), state.Query)
	if !ok {
		return
	}
	switch state.Stage {
	case stageLogin:
		s.login(w, r, a, state)
	case stageConsent:
		s.consent(w, r, a, state)
	default:
		s.clearFlow(w)
		s.renderError(w, http.StatusBadRequest, "Sign-in expired", "This sign-in is not in progress any more.")
	}
}

// refuseForm answers a form post whose steps postedFlowOf refused: again
// says how to start afresh after a spent form, expired after a lost or
// stale cookie.
func (s *Server) refuseForm(w http.ResponseWriter, err error, again, expired string) {
	switch {
	case errors.Is(err, errCSRF):
		s.renderError(w, http.StatusForbidden, "Form not accepted",
			"The form could not be verified. It may be stale, or have been opened in another window.")
	case errors.Is(err, errFormSpent):
		s.renderError(w, http.StatusForbidden, "Form already sent", "This form was sent already. "+again)
	case errors.Is(err, errFlowMissing), errors.Is(err, errFlowInvalid):
		s.renderError(w, http.StatusBadRequest, "Sign-in expired", expired)
	default:
		s.logger.Error("authserver: a form could not be checked against the store", slog.Any("error", err))
		s.renderError(w, http.StatusServiceUnavailable, "Sign-in unavailable", "Sign-in is not available right now; try again later.")
	}
}

// checkAuthorization validates the authorization request in query. When
// it fails it has written the response: an error page while the client or
// redirect URI is in doubt, else as [Server.refuse] answers.
func (s *Server) checkAuthorization(w http.ResponseWriter, ctx context.Context, query string) (*authorization, bool) {
	if len(query) > maxQueryBytes {
		s.renderError(w, http.StatusBadRequest, "Invalid request", "The authorization request is too long.")
		return nil, false
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		s.renderError(w, http.StatusBadRequest, "Invalid request", "The authorization request is malformed.")
		return nil, false
	}
	if len(values["client_id"]) != 1 || len(values["redirect_uri"]) > 1 {
		s.renderError(w, http.StatusBadRequest, "Invalid request", "The request must name exactly one client_id and at most one redirect_uri.")
		return nil, false
	}
	found, err := s.store.GetClient(ctx, values.Get("client_id"))
	switch {
	case errors.Is(err, errClientDocument):
		s.renderError(w, http.StatusBadRequest, "Unknown application",
			"The document that describes the application that sent you here could not be fetched, or is not acceptable.")
		return nil, false
	case errors.Is(err, errStoreDown):
		s.logger.Error("authserver: load client", slog.Any("error", err))
		s.renderError(w, http.StatusServiceUnavailable, "Sign-in unavailable", "Sign-in is not available right now; try again later.")
		return nil, false
	case err != nil:
		if !errors.Is(err, fosite.ErrNotFound) {
			s.logger.Error("authserver: load client", slog.Any("error", err))
		}
		s.renderError(w, http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered.")
		return nil, false
	}
	c := found.(*client)
	redirect := values.Get("redirect_uri")
	switch {
	case redirect == "" && len(c.RedirectURIs) == 1:
		redirect = c.RedirectURIs[0]
	case redirect == "" || !slices.Contains(c.RedirectURIs, redirect):
		s.renderError(w, http.StatusBadRequest, "Invalid redirect",
			"The redirect_uri does not match any registered for this application.")
		return nil, false
	}
	redirectURI, err := url.Parse(redirect)
	if err != nil || checkRedirectURI(redirect) != nil {
		s.renderError(w, http.StatusBadRequest, "Invalid redirect", "The registered redirect_uri is not acceptable.")
		return nil, false
	}

	a := &authorization{
		client:      c,
		redirectURI: redirectURI,
		state:       values.Get("state"),
		prompts:     strings.Fields(values.Get("prompt")),
	}
	for _, name := range singleValued {
		if len(values[name]) > 1 {
			s.refuse(w, a, fosite.ErrInvalidRequest.WithHintf("The '%s' parameter must not be repeated.", name))
			return nil, false
		}
	}

	forFosite := url.Values{}
	for name, list := range values {
		forFosite[name] = slices.Clone(list)
	}
	if len(a.state) < fosite.MinParameterEntropy {
		forFosite.Set("state", fositeState)
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, "/?"+forFosite.Encode(), nil)
	if err != nil {
		s.serverError(w, err)
		return nil, false
	}
	ar, err := s.provider.NewAuthorizeRequest(ctx, request)
	if err != nil {
		s.refuse(w, a, err)
		return nil, false
	}
	a.request = ar

	challenge, method := values.Get("code_challenge"), values.Get("code_challenge_method")
	switch {
	case challenge == "":
		s.refuse(w, a, fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge and code_challenge_method=S256."))
		return nil, false
	case method != "S256":
		s.refuse(w, a, fosite.ErrInvalidRequest.WithHint("code_challenge_method must be S256."))
		return nil, false
	case !codeChallengePattern.MatchString(challenge):
		s.refuse(w, a, fosite.ErrInvalidRequest.WithHint("code_challenge must be the base64url SHA-256 of the code verifier."))
		return nil, false
	}

	audience, err := resolveAudience(targets(values), c.GetAudience(), s.audiences[0])
	if err != nil {
		s.refuse(w, a, err)
		return nil, false
	}
	a.audience = audience
	ar.SetRequestedAudience(fosite.Arguments{audience})
	return a, true
}

// issueCode completes the authorization for the signed-in user: it grants
// what was asked, has fosite issue the code, and sends the browser back to
// the client with code, state and iss (RFC 9207).
func (s *Server) issueCode(w http.ResponseWriter, ctx context.Context, a *authorization, user *session) {
	ar := a.request
	for _, scope := range ar.GetRequestedScopes() {
		ar.GrantScope(scope)
	}
	ar.GrantAudience(a.audience)
	user.Nonce = ar.GetRequestForm().Get("nonce")
	response, err := s.provider.NewAuthorizeResponse(ctx, ar, user)
	if err != nil {
		s.redirectError(w, a, err)
		return
	}
	s.clearFlow(w)
	parameters := url.Values{}
	for name, list := range response.GetParameters() {
		parameters[name] = list
	}
	s.redirect(w, a, parameters)
}

// refuse answers an authorization request that failed a check before the
// user saw anything. A configured client gets the error at its redirect
// URI (RFC 6749 §4.1.2.1). The redirect URIs of a registered client, and
// of one described by its metadata document, are anyone's choice: sending
// the browser there at once would make this server an open redirector
// (RFC 9700 §4.11.2), so the user sees the error here instead.
func (s *Server) refuse(w http.ResponseWriter, a *authorization, err error) {
	if !a.client.Registered && a.client.documentHost == "" {
		s.redirectError(w, a, err)
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= http.StatusInternalServerError {
		s.logger.Error("authserver: authorization failed", slog.String("client_id", a.client.ID), slog.Any("error", err))
		s.renderError(w, rfc.CodeField, "Something went wrong", "The request could not be completed.")
		return
	}
	status := rfc.CodeField
	if status < http.StatusBadRequest {
		status = http.StatusBadRequest
	}
	s.renderError(w, status, "Invalid request", "The application sent an authorization request that cannot be served: "+rfc.GetDescription())
}

// redirectError sends the browser back to the client with an error (RFC
// 6749 §4.1.2.1). A server error is logged, and goes back without detail.
func (s *Server) redirectError(w http.ResponseWriter, a *authorization, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= http.StatusInternalServerError {
		s.logger.Error("authserver: authorization failed", slog.String("client_id", a.client.ID), slog.Any("error", err))
	}
	parameters := url.Values{}
	parameters.Set("error", rfc.ErrorField)
	if description := rfc.GetDescription(); description != "" {
		parameters.Set("error_description", description)
	}
	s.redirect(w, a, parameters)
}

// redirect sends the browser to the client's redirect URI with
// parameters, the request's state when it sent one (RFC 6749 §4.1.2)
// and iss.
func (s *Server) redirect(w http.ResponseWriter, a *authorization, parameters url.Values) {
	target := *a.redirectURI
	query := target.Query()
	for name, list := range parameters {
		query[name] = list
	}
	if a.state != "" {
		query.Set("state", a.state)
	}
	query.Set("iss", s.issuer)
	target.RawQuery = query.Encode()
	header := w.Header()
	header.Set("Cache-Control", "no-store")
	header.Set("Pragma", "no-cache")
	header.Set("Referrer-Policy", "no-referrer")
	header.Set("Location", target.String())
	w.WriteHeader(http.StatusSeeOther)
}

func (s *Server) serverError(w http.ResponseWriter, err error) {
	s.logger.Error("authserver: internal error", slog.Any("error", err))
	s.renderError(w, http.StatusInternalServerError, "Something went wrong", "The request could not be completed.")
}

// targets are the resources (RFC 8707) and audiences a request names.
func targets(values url.Values) []string {
	return append(slices.Clone(values["resource"]), values["audience"]...)
}

// resolveAudience picks the one audience of a token: the target the
// request names, which the client must be allowed, else the server's
// default audience if the client is allowed it, else the client's first.
func resolveAudience(requested, allowed []string, fallback string) (string, error) {
	var target string
	for _, t := range requested {
		if u, err := url.Parse(t); err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(t, "#") {
			return "", exchange.ErrInvalidTarget.WithHint("A resource must be an absolute URI without a fragment.")
		}
		if target != "" && target != t {
			return "", exchange.ErrInvalidTarget.WithHint("A token is issued for one resource; ask for one.")
		}
		target = t
	}
	switch {
	case target != "" && slices.Contains(allowed, target):
		return target, nil
	case target != "":
		return "", exchange.ErrInvalidTarget.WithHintf("The client may not obtain tokens for '%s'.", target)
	case slices.Contains(allowed, fallback):
		return fallback, nil
	case len(allowed) > 0:
		return allowed[0], nil
	}
	return "", exchange.ErrInvalidTarget.WithHint("The client may not obtain tokens for any resource.")
}
