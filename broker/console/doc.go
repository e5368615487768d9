// Package console is the web console of the people who run the broker:
// the apps and their health, each app's tools and pins with the diff of a
// changed definition and its approval, served on the admin listener.
//
// People sign in at an OpenID Provider (the embedded Auth Provider, or an
// OIDC connector) with the authorization code flow and PKCE; only members
// of the configured operator and viewer groups get in, operators alone may
// act. The pages are rendered on the server; what they load is in the
// binary; the Content-Security-Policy allows no inline script or style;
// every form carries a token bound to the sign-in; no token or secret is
// ever rendered. Every action is recorded with the person's identity by
// the broker behind Backend, which applies the same rules as its other
// ways in (an operator approving a pin does what `mcpbroker tools approve`
// does).
package console
