// Package authserver is the broker's embedded OAuth 2.1 authorization
// server, the Auth Provider role: it signs users in, asks their consent,
// and issues the access tokens agents bring to the broker. It is composed
// from fosite handlers over a bbolt store; the access tokens are RFC 9068
// JWTs from [exchange.Minter], so resource servers verify them with the
// published keys alone.
//
// Endpoints, under the issuer's path ([Server.Register] adds them):
//
//	GET  /.well-known/oauth-authorization-server{path}  metadata (RFC 8414)
//	GET  {path}/.well-known/openid-configuration        the same, OpenID discovery
//	GET  /.well-known/openid-configuration{path}        (issuers with a path)
//	GET  {path}/jwks.json                                public signing keys
//	GET  {path}/authorize                                authorization request → login page
//	POST {path}/authorize                                login and consent forms
//	POST {path}/token                                    authorization_code (PKCE S256 required),
//	                                                     refresh_token (rotated), client_credentials,
//	                                                     token exchange (RFC 8693, with an exchanger)
//	POST {path}/introspect                               RFC 7662, configured clients allowed it only
//	POST {path}/revoke                                   RFC 7009
//	POST {path}/register                                 RFC 7591, when registration is on
//	GET  {path}/callback                                 back from the identity provider, when federated
//
// Authorization. GET /authorize checks the request first: an unknown
// client_id, or a redirect_uri that is not byte for byte one the client
// registered, gets an HTML error page and never a redirect. Every other
// problem (missing PKCE or a method other than S256, a scope or resource
// the client may not have, prompt=none) goes back to a configured client's
// redirect URI as error, error_description, state and iss (RFC 9207). A
// registered client, or one described by its metadata document, chose its
// redirect URIs itself, so such a problem gets the error page instead:
// sending the browser on before the user has seen anything would make the
// server an open redirector (RFC 9700 §4.11.2). Errors after the user
// answered (access_denied) go back to every client. The token's audience is the
// request's resource (RFC 8707), which must be one of the client's
// audiences (else invalid_target), or by default the first configured
// audience.
//
// Client ID metadata documents. With [Options.ClientIDMetadataDocuments]
// (draft-ietf-oauth-client-id-metadata-document, the MCP clients'
// preferred registration), the metadata says
// client_id_metadata_document_supported, and a client_id that is an https
// URL with a path (no fragment, user information or dot segments), and is
// not a configured or registered client, names the client's own metadata:
// the server fetches it with the hardened fetcher (https only, no
// redirects, public addresses unless private networks are allowed, never
// a loopback host unless loopback is allowed, at most 5 KiB, 5 seconds,
// application/json). The document's client_id must equal the URL byte for
// byte; redirect_uris is required and matched as for registered clients;
// the client is public (token_endpoint_auth_method none or absent, no
// client_secret); grant_types may hold authorization_code and
// refresh_token. A document is kept for its Cache-Control max-age, between
// one minute and a day (ten minutes without one), in memory only: such
// clients are never stored, and each token request resolves its client
// again, from the cache or the URL. At /authorize a document that cannot
// be fetched or is not acceptable gets the HTML error page, never a
// redirect; at /token, invalid_client. The login and consent pages show
// the client's name with the URL's host, and consent is asked every time,
// neither skipped nor remembered.
//
// The pages are plain HTML forms that work without JavaScript. Each posts
// with method="post" to the authorization endpoint's path (the form's
// action) and carries:
//
//	csrf      hidden; the per-step token bound to the flow cookie
//	username  login page: text field
//	password  login page: password field
//	consent   consent page: <button name="consent" value="allow"> or value="deny"
//
// The flow: GET /authorize?... answers 200 with the login page and sets
// the cookie "mcpbroker_authorize" (HttpOnly, SameSite=Lax, Path the
// authorization endpoint's path, Secure for an https issuer), which holds,
// sealed with AES-GCM, the authorization request, the step reached and the
// csrf token, for ten minutes per step. POSTing username, password and
// csrf either re-renders the login page with a generic message (wrong
// credentials; 429 after too many failures for the username or address),
// or answers with the consent page (200, a new csrf), or, when consent is
// implied (the client's skipConsent) or was given before for the same
// user, client and resource with every scope asked, redirects (303) to the
// client with code, state and iss. POSTing consent=allow and csrf
// redirects with the code and remembers the consent: the scopes, for that
// resource only; consent=deny redirects with error=access_denied. A
// missing or wrong csrf, or a missing or expired cookie, gets an error
// page (403 or 400). prompt=consent always asks; prompt=none answers
// login_required, as every authorization signs in.
//
// Sign-in throttling and user enumeration. Five failures for a username,
// or twenty from an address, within fifteen minutes refuse further tries
// until the window ends. The windows are kept in memory, at most 10000:
// room is made by dropping expired windows, then the oldest that lock
// nothing out, so failures elsewhere never lift a lock-out. Every user's
// bcrypt hash must have the same cost ([New] refuses mixed costs), and an
// unknown username is checked against a hash of that cost, so that the
// time a failure takes does not tell which usernames exist.
//
// Federated sign-in. With [Options.Federation], /authorize sends the
// browser to an OpenID Provider (authorization code with PKCE, a nonce,
// and a state bound to the cookie "mcpbroker_federation", Path
// {path}/callback) instead of showing the login page. The callback redeems
// the code, verifies the ID token (signature by a key from the provider's
// jwks_uri, iss, aud, azp, exp, nonce) and continues with consent as after
// a local sign-in. The subject is the provider's sub; username is
// preferred_username, else email; groups come from the configured claim.
//
// Dynamic registration (RFC 7591) is anonymous, so it is limited: each
// address (an IPv6 address by its /64) may register 20 clients at once and
// earns one more back every three minutes (429 with Retry-After past
// that; the limits are kept in memory for at most 10000 addresses, and the
// one whose limit soonest lapses makes room); at most 10000 registered
// clients are stored; and a registered client that no token was issued to
// within a day of its registration is deleted by the sweep. Registered
// clients may not introspect tokens.
//
// Tokens. Access tokens carry sub (the username, or the client id for
// client_credentials), client_id, aud (one audience), scope, and the
// user's name, email and groups. Refresh tokens and codes are fosite HMAC
// tokens under a secret kept in the database. A code redeems once: of
// concurrent redemptions one gets tokens and the others invalid_grant, and
// presenting a used code revokes what it was redeemed for. A refresh token
// is replaced on every use, and presenting a replaced one revokes the
// grant. Revoking a token (RFC 7009) revokes its whole grant;
// [Server.Revoked] reports the revoked access tokens' jtis until they
// expire, for the token-exchange grant and anyone else who accepts the
// JWTs. A local user who is no longer configured loses every grant on the
// next start (revoked as above, codes deleted); the grants of federated
// users stay while federation is configured. A grant with the openid
// scope also gets an ES256 ID token.
//
// Introspection (RFC 7662) reveals who is behind a token, so only the
// configured confidential clients with [Client.Introspect] may ask (the
// resource servers that need it); others get 403.
//
// Token exchange (RFC 8693) is for confidential clients allowed the
// grant: the exchanger issues a token for one of the client's audiences
// from a subject token whose aud is one of the client's
// [Client.SubjectAudiences], by default [Options.Audiences] (the resources
// agents get tokens for, never an upstream's).
//
// State lives in buckets named "authserver_*" of the caller's bbolt
// database: clients (configured ones rewritten on every start, registered
// ones kept while in use), codes, tokens, revocations, consents (by user,
// client and resource; those of earlier versions, which did not pair
// scopes with resources, are dropped on start and asked again), and the
// HMAC and cookie keys. Expired records and unused registered clients are
// swept every ten minutes.
package authserver
