package authserver

import (
	"net/http"

	"github.com/ory/fosite"
)

// renderConsent asks the signed-in user whether a's client may act for
// them with the scopes and on the resource it asked for.
func (s *Server) renderConsent(w http.ResponseWriter, a *authorization, state *flow) {
	redirectTo := *a.redirectURI
	redirectTo.RawQuery = ""
	s.renderPage(w, http.StatusOK, "consent", consentPage{
		Title:      "Allow access?",
		ClientName: a.client.displayName(),
		User:       state.Identity.displayName(),
		Registered: a.client.Registered,
		ClientHost: a.client.documentHost,
		RedirectTo: redirectTo.String(),
		Resource:   a.audience,
		Scopes:     a.request.GetRequestedScopes(),
		Action:     s.authorizePath(),
		CSRF:       state.CSRF,
	})
}

// consent acts on the user's answer: allow remembers it for this user and
// client and issues the code; deny sends access_denied to the client.
func (s *Server) consent(w http.ResponseWriter, r *http.Request, a *authorization, state *flow) {
	who := state.Identity
	// A user removed from the configuration since signing in is signed in
	// no more.
	if who == nil || s.userRemoved(who.session()) {
		s.clearFlow(w)
		s.renderError(w, http.StatusBadRequest, "Sign-in expired", "This sign-in is not in progress any more.")
		return
	}
	switch r.PostForm.Get("consent") {
	case "allow":
		if a.client.documentHost == "" {
			if err := s.store.rememberConsent(who.Subject, a.client.ID, a.request.GetRequestedScopes(), a.audience); err != nil {
				s.serverError(w, err)
				return
			}
		}
		_ = s.event(r.Context(), r, Event{Name: EventConsentGranted, Subject: who.Subject, Client: a.client.ID,
			Scopes: a.request.GetRequestedScopes(), Audience: []string{a.audience}})
		s.issueCode(w, r.Context(), a, who.session())
	case "deny":
		_ = s.event(r.Context(), r, Event{Name: EventConsentDenied, Subject: who.Subject, Client: a.client.ID})
		s.clearFlow(w)
		s.redirectError(w, a, fosite.ErrAccessDenied.WithHint("The user denied the request."))
	default:
		// The posted form is spent: the page asks again with a fresh one.
		if err := s.setFlow(w, state); err != nil {
			s.clearFlow(w)
			s.serverError(w, err)
			return
		}
		s.renderConsent(w, a, state)
	}
}
