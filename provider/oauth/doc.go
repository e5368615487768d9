// Package oauth verifies the access tokens agents present to the broker:
// the broker's side of OAuth 2.1 as a resource server. It owns parsing the
// Authorization header (RFC 6750), discovering each configured
// authorization server (RFC 8414 or OIDC discovery), keeping its JWKS
// fresh, verifying JWT access tokens (RFC 9068, RFC 8725), introspecting
// opaque ones (RFC 7662), and the hardened HTTP client all of that fetches
// through. It does not render 401/403 responses or Protected Resource
// Metadata; the provider does, using the errors and Issuers from here.
//
// # What a token must be
//
// A JWT is accepted only if its alg is on the server's allow-list (never
// "none", never HS*) and fits the type of the key that verifies it; its
// typ is at+jwt (or, with AllowMissingTyp, absent or "JWT"); it has no
// crit header; its iss is byte-equal to an issuer from the configuration;
// the key comes from that issuer's jwks_uri (jku, x5u, jwk and x5c headers
// are ignored, never fetched); aud contains an expected audience; exp is
// present and not past, nbf and iat not in the future (all with a small
// skew); sub is not empty; it carries no cnf (sender-constrained tokens are
// not bearer tokens); and it does not look like an ID token. Headers and
// claims are decoded strictly: canonical base64url only, valid UTF-8, no
// duplicate JSON member names, claims of the registered types.
//
// # Availability
//
// Keys are cached. A JWKS refresh that fails keeps the old keys, so an IdP
// outage does not break verification; only when no JWKS was ever obtained
// does Verify return ErrUnavailable, which the broker answers with 503
// rather than 401. Unknown kids cause at most one JWKS refetch per
// MinKeyRefreshInterval per server, single-flight.
//
// # Caching
//
// Verified tokens are cached (LRU, keyed by SHA-256 of the token) until
// exp; introspection results at most IntrospectionCacheTTL and never past
// exp, which bounds how long a revoked token is still accepted. Inactive
// introspection answers are remembered for a few seconds. When a signing
// key disappears from a JWKS the cache is cleared.
//
// # Fetching
//
// All HTTP goes through a Fetcher: https only (http for loopback hosts),
// no redirects, no userinfo, bounded time and size, no environment proxy,
// and a dial-time check of the resolved address that blocks link-local,
// multicast, unspecified and (unless allowed) private and loopback ranges,
// so that neither configuration nor DNS rebinding can aim it at internal
// services.
package oauth
