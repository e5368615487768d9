package console

import (
	"crypto/subtle"
	"net/http"
	"time"
)

// serveSignIn sends the browser to the OpenID Provider, the sign-in's
// state sealed in a cookie that only the callback sees.
func (c *Console) serveSignIn(w http.ResponseWriter, r *http.Request) {
	st := signInState{State: randomText(), Nonce: randomText(), Verifier: randomText() + randomText(), Expires: time.Now().Add(signInTTL).Unix()}
	target, err := c.opts.SignIn.AuthorizeURL(r.Context(), st.State, st.Nonce, st.Verifier)
	if err != nil {
		c.log.Error("console: the identity provider cannot be reached", "error", err)
		c.error(w, r, nil, http.StatusServiceUnavailable, "Sign-in unavailable", "The identity provider cannot be reached; try again later.")
		return
	}
	// Lax: the provider's redirect back is a navigation from its site.
	c.setCookie(w, signInCookie, c.opts.Path+"/callback", c.seal(st), signInTTL, false)
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// serveCallback takes the provider's answer: the state must be the
// cookie's, the code must redeem for a verified ID token, and the person
// must be in an operator or viewer group.
func (c *Console) serveCallback(w http.ResponseWriter, r *http.Request) {
	cookie, err := r.Cookie(signInCookie)
	var st signInState
	if err != nil || !c.open(cookie.Value, &st) || time.Now().Unix() >= st.Expires {
		c.error(w, r, nil, http.StatusBadRequest, "Sign-in expired", "This sign-in is not in progress any more; start again.")
		return
	}
	c.setCookie(w, signInCookie, c.opts.Path+"/callback", "", -time.Second, false)
	query := r.URL.Query()
	if got := query.Get("state"); got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(st.State)) != 1 {
		c.error(w, r, nil, http.StatusForbidden, "Sign-in not accepted", "The identity provider's answer does not belong to this sign-in.")
		return
	}
	if query.Get("error") != "" {
		c.error(w, r, nil, http.StatusForbidden, "Not signed in", "The identity provider did not sign you in.")
		return
	}
	subject, name, groups, err := c.opts.SignIn.SignIn(r.Context(), query.Get("code"), st.Verifier, st.Nonce)
	if err != nil {
		c.log.Warn("console: sign-in failed", "error", err)
		c.record(r, Event{Name: "console.signin_failed", Detail: "the identity provider's answer could not be verified"})
		c.error(w, r, nil, http.StatusForbidden, "Not signed in", "The sign-in could not be verified.")
		return
	}
	role := c.roleOf(groups)
	if role == "" {
		c.record(r, Event{Name: "console.refused", Subject: subject, Detail: "in no operator or viewer group"})
		c.error(w, r, nil, http.StatusForbidden, "Not allowed", "You are signed in, but not one of the people who may use this console.")
		return
	}
	s := session{Person: Person{Subject: subject, Name: name, Groups: groups, Role: role}, CSRF: randomText(),
		Expires: time.Now().Add(c.opts.SessionTTL).Unix()}
	if err := c.opts.Backend.Record(r.Context(), Event{Name: "console.signin", Subject: subject, Source: r.RemoteAddr, Detail: role}); err != nil {
		c.error(w, r, nil, http.StatusServiceUnavailable, "Sign-in not recorded", "The sign-in could not be recorded; try again later.")
		return
	}
	c.setCookie(w, sessionCookie, c.opts.Path, c.seal(s), c.opts.SessionTTL, true)
	http.Redirect(w, r, c.opts.Path+"/", http.StatusSeeOther)
}

// serveSignOut ends the sign-in.
func (c *Console) serveSignOut(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	c.record(r, Event{Name: "console.signout", Subject: s.Subject})
	c.setCookie(w, sessionCookie, c.opts.Path, "", -time.Second, true)
	c.render(w, r, nil, http.StatusOK, "signedout.html", "Signed out", nil)
}
