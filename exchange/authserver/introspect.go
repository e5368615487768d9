package authserver

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/ory/fosite"
)

// introspection is an RFC 7662 response for an active token.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Username  string   `json:"username,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Expiry    int64    `json:"exp,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audience  any      `json:"aud,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	TokenID   string   `json:"jti,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	// TokenUse says what was introspected: access_token or refresh_token.
	TokenUse string `json:"token_use,omitempty"`
}

// serveIntrospect is token introspection (RFC 7662). Only the configured
// confidential clients allowed to introspect (the resource servers that
// need it, RFC 7662 §4) may ask, authenticated with their secret; a
// registered client never may. A token that is unknown, expired, revoked
// or rotated away is {"active": false}.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	noStore(w)
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.writeEndpointError(w, fosite.ErrInvalidRequest.WithHint("The body must be a form of at most 64 KiB."))
		return
	}
	if strings.HasPrefix(strings.ToLower(r.Header.Get("Authorization")), "bearer ") {
		s.writeEndpointError(w, fosite.ErrInvalidClient.WithHint("Authenticate as a confidential client, not with a bearer token."))
		return
	}
	c, err := s.provider.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		s.writeEndpointError(w, err)
		return
	}
	if c.IsPublic() {
		s.writeEndpointError(w, fosite.ErrInvalidClient.WithHint("Only confidential clients may introspect tokens."))
		return
	}
	if allowed, ok := c.(*client); !ok || !allowed.Introspect || allowed.Registered || allowed.documentHost != "" {
		s.writeEndpointError(w, fosite.ErrRequestForbidden.WithHint("The client is not allowed to introspect tokens."))
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		s.writeEndpointError(w, fosite.ErrInvalidRequest.WithHint("The 'token' parameter is required."))
		return
	}
	use, request, err := s.provider.IntrospectToken(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")), &session{})
	if err != nil {
		writeJSON(w, http.StatusOK, introspection{Active: false})
		return
	}
	answer := introspection{
		Active:   true,
		Scope:    strings.Join(request.GetGrantedScopes(), " "),
		ClientID: request.GetClient().GetID(),
		Issuer:   s.issuer,
		TokenUse: string(use),
		IssuedAt: request.GetRequestedAt().Unix(),
	}
	if audiences := request.GetGrantedAudience(); len(audiences) == 1 {
		answer.Audience = audiences[0]
	} else if len(audiences) > 1 {
		answer.Audience = []string(audiences)
	}
	if sess, ok := request.GetSession().(*session); ok {
		answer.Subject = sess.Subject
		answer.Username = sess.Username
		answer.Groups = sess.Groups
		expiry := sess.GetExpiresAt(use)
		if use == fosite.AccessToken {
			answer.TokenType = "Bearer"
			answer.TokenID = sess.TokenID
		}
		if !expiry.IsZero() {
			answer.Expiry = expiry.Unix()
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

// writeEndpointError writes an RFC 6749 §5.2 error from the
// introspection, revocation or registration endpoints.
func (s *Server) writeEndpointError(w http.ResponseWriter, err error) {
	err = storeDown(err)
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= http.StatusInternalServerError {
		s.logger.Error("authserver: request failed", slog.Any("error", err))
	}
	status := rfc.CodeField
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Basic realm="`+s.issuer+`"`)
	}
	noStore(w)
	writeJSON(w, status, rfc)
}
