package authserver

import (
	"context"
	"net/http"
	"time"

	"github.com/ory/fosite"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Event names: what the Auth Provider did or refused.
const (
	EventSignIn             = "signin.ok"
	EventSignInFailed       = "signin.failed"
	EventConsentGranted     = "consent.granted"
	EventConsentDenied      = "consent.denied"
	EventTokenIssued        = "token.issued"
	EventTokenRefreshed     = "token.refreshed"
	EventTokenExchanged     = "token.exchanged"
	EventTokenRefused       = "token.refused"
	EventTokenRevoked       = "token.revoked"
	EventClientAuthFailed   = "client.auth_failed"
	EventClientRegistered   = "client.registered"
	EventRegistrationFailed = "client.registration_refused"
)

// Event is one thing the Auth Provider did or refused, for the audit
// trail. It never carries a token, a code, a password or a secret.
type Event struct {
	Name     string
	Source   string // the client address
	Subject  string // the user, when known
	Client   string // the OAuth client, when known
	TokenID  string // jti of an issued access token
	Audience []string
	Scopes   []string
	Status   int    // HTTP status of the answer
	Detail   string // the OAuth error code, or a few words
	// Approval is the approval an approval event is about.
	Approval *EventApproval
}

// EventApproval is what an approval event says of its approval.
type EventApproval struct {
	ID, Session, App, Tool, ArgumentsDigest string
	Approvers                               string
	// DecidedBy is who answered, once someone has.
	DecidedBy string
	// Deadline is until when it waits for an answer, or, approved, is
	// good.
	Deadline time.Time
}

// event tells Options.OnEvent, when set; an error means the event could
// not be recorded and what it records must not go on (see OnEvent).
func (s *Server) event(ctx context.Context, r *http.Request, e Event) error {
	if s.onEvent == nil {
		return nil
	}
	if r != nil && e.Source == "" {
		e.Source = r.RemoteAddr
	}
	return s.onEvent(ctx, e)
}

// tokenEvent is the event of a token endpoint answer.
func tokenEvent(request fosite.AccessRequester, response fosite.AccessResponder) Event {
	e := Event{Name: EventTokenIssued, Status: http.StatusOK, Client: clientID(request)}
	if request == nil {
		return e
	}
	switch {
	case request.GetGrantTypes().ExactOne("refresh_token"):
		e.Name = EventTokenRefreshed
	case request.GetGrantTypes().ExactOne(GrantTokenExchange):
		e.Name = EventTokenExchanged
	}
	if session := request.GetSession(); session != nil {
		e.Subject = session.GetSubject()
	}
	e.Scopes = request.GetGrantedScopes()
	e.Audience = request.GetGrantedAudience()
	if response != nil {
		// The broker's own token: reading its jti is all that is done.
		if claims, err := oauth.UnverifiedPayload(response.GetAccessToken()); err == nil {
			e.TokenID, _ = claims["jti"].(string)
		}
	}
	return e
}
