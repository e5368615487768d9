package authserver

import (
	"errors"
	"net/http"

	"github.com/ory/fosite"
)

// serveRevoke is token revocation (RFC 7009). A client revokes its own
// tokens; revoking either token of a grant ends the whole grant: its
// refresh tokens, and its access tokens, whose jtis [Server.Revoked] then
// reports. A token that is unknown or already revoked is answered 200, as
// the RFC asks.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	noStore(w)
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.writeEndpointError(w, fosite.ErrInvalidRequest.WithHint("The body must be a form of at most 64 KiB."))
		return
	}
	if r.PostForm.Get("token") == "" {
		s.writeEndpointError(w, fosite.ErrInvalidRequest.WithHint("The 'token' parameter is required."))
		return
	}
	err := s.provider.NewRevocationRequest(ctx, r)
	e := Event{Name: EventTokenRevoked, Status: http.StatusOK}
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		e = Event{Name: EventTokenRefused, Status: rfc.CodeField, Detail: "revocation: " + rfc.ErrorField}
		if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
			e.Name = EventClientAuthFailed
		}
	}
	_ = s.event(ctx, r, e) // the revocation stands whether recorded or not
	switch {
	case err == nil:
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, fosite.ErrUnauthorizedClient):
		// fosite answers 200 here; the token stays valid, so the client
		// must hear that it was not revoked (RFC 7009 §2.1).
		s.writeEndpointError(w, fosite.ErrUnauthorizedClient.WithHint("The token was not issued to this client."))
	default:
		s.writeEndpointError(w, err)
	}
}
