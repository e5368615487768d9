package authserver

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"
)

// serveToken is the token endpoint: fosite authenticates the client and
// runs the grant's handlers (authorization_code with PKCE, refresh_token,
// client_credentials, token exchange); the response is never cached.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.writeTokenError(w, r, nil, fosite.ErrInvalidRequest.WithHint("The body must be a form of at most 64 KiB."))
		return
	}
	if grant := r.PostForm.Get("grant_type"); grant != "" && !slices.Contains(s.metadata.GrantTypesSupported, grant) {
		s.writeTokenError(w, r, nil, fosite.ErrUnsupportedGrantType.WithHintf("The grant type '%s' is not supported.", grant))
		return
	}
	for name, list := range r.PostForm {
		if len(list) > 1 && name != "resource" && name != "audience" {
			s.writeTokenError(w, r, nil, fosite.ErrInvalidRequest.WithHintf("The '%s' parameter must not be repeated.", name))
			return
		}
	}
	request, err := s.provider.NewAccessRequest(ctx, r, &session{})
	if err != nil {
		s.writeTokenError(w, r, request, err)
		return
	}
	if request.GetGrantTypes().ExactOne(GrantRefreshToken) {
		if sess, ok := request.GetSession().(*session); ok && s.stepUps.taken(sess.TokenID, s.now()) {
			s.writeTokenError(w, r, request, fosite.ErrInvalidGrant.WithHint("A resource server asked for more scope than this grant holds; ask the user again."))
			return
		}
		// RFC 6749 §6: a refresh may not widen the grant. Fosite would
		// hand out the original scopes, silently short of what was asked;
		// refused, a client asks the user (the MCP step-up).
		for _, scope := range strings.Fields(r.PostForm.Get("scope")) {
			if !slices.Contains(request.GetGrantedScopes(), scope) {
				s.writeTokenError(w, r, request, fosite.ErrInvalidScope.WithHintf("The scope '%s' was not granted with this refresh token; ask the user for it with a new authorization.", scope))
				return
			}
		}
	}
	response, err := s.provider.NewAccessResponse(ctx, request)
	switch {
	case errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
		// A concurrent request redeemed the code between the checks and
		// the issuing; fosite reports the store's refusal as a server error.
		err = fosite.ErrInvalidGrant.WithHint("The authorization code has already been used.").WithWrap(err)
	case request.GetGrantTypes().ExactOne(GrantRefreshToken) &&
		(errors.Is(err, fosite.ErrInactiveToken) || errors.Is(err, fosite.ErrNotFound)):
		// Between the checks and the issuing, a concurrent request rotated
		// the refresh token, or was taken for its replay and ended the
		// grant. Fosite asks the client to try again, but the token is
		// spent: played again it would end the grant.
		err = fosite.ErrInvalidGrant.WithHint("A concurrent request used the refresh token first.").WithWrap(err)
	}
	if err != nil {
		s.writeTokenError(w, r, request, err)
		return
	}
	// RFC 6750 names the type "Bearer"; fosite writes it in lower case.
	if strings.EqualFold(response.GetTokenType(), "bearer") {
		response.SetTokenType("Bearer")
	}
	if err := s.event(ctx, r, tokenEvent(request, response)); err != nil {
		s.logger.Error("authserver: a token was not handed out: its audit record could not be written", slog.Any("error", err))
		s.provider.WriteAccessError(ctx, w, request, fosite.ErrTemporarilyUnavailable.WithHint("The token could not be recorded; try again later."))
		return
	}
	s.provider.WriteAccessResponse(ctx, w, request, response)
}

// writeTokenError writes a token endpoint error (RFC 6749 §5.2); server
// errors are logged with their cause and sent without it.
func (s *Server) writeTokenError(w http.ResponseWriter, r *http.Request, request fosite.AccessRequester, err error) {
	err = storeDown(err)
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= http.StatusInternalServerError {
		s.logger.Error("authserver: token request failed", slog.String("grant_type", r.PostForm.Get("grant_type")),
			slog.String("client_id", clientID(request)), slog.String("error", rfc.ErrorField), slog.Any("cause", rfc.Cause()))
	}
	e := Event{Name: EventTokenRefused, Client: clientID(request), Status: rfc.CodeField, Detail: rfc.ErrorField}
	if (r.PostForm.Get("grant_type") == GrantJWTBearer || r.PostForm.Get("requested_token_type") == TokenTypeIDJAG) && rfc.HintField != "" {
		// Which rule the assertion broke, in this server's own words.
		e.Detail += ": " + rfc.HintField
	}
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+s.issuer+`"`)
		e.Name = EventClientAuthFailed
	}
	_ = s.event(r.Context(), r, e) // a refusal stands whether recorded or not
	s.provider.WriteAccessError(r.Context(), w, request, err)
}

// clientID names the client of a token request, if it was authenticated.
func clientID(request fosite.AccessRequester) string {
	if request == nil || request.GetClient() == nil {
		return ""
	}
	return request.GetClient().GetID()
}
