// Package oauth is the one OAuth/JOSE primitives layer of the house:
// everyone who reads a token or checks a URL uses it, and what it lacks is
// added here rather than copied beside the caller. It owns
//
//   - strict JWS parsing: canonical base64url segments (DecodeSegment) and
//     JSON objects without duplicate members (DecodeObject);
//   - the claims rules and readers: NumericDate, StringOrStrings,
//     ScopeValues, StringClaim, ParseActor, and the rules a JWT access
//     token must pass (RFC 9068, RFC 8725);
//   - who a token speaks for: Principal and its RFC 8693 act chain, Actor,
//     the one actor type, also minted into the broker's own tokens;
//   - inbound verification for the broker as OAuth 2.1 resource server:
//     the Authorization header (RFC 6750), discovery of each configured
//     authorization server (RFC 8414 or OIDC discovery), its JWKS kept
//     fresh, JWT verification, introspection of opaque tokens (RFC 7662);
//     and VerifyJWT with a KeySet the caller holds (the broker's own keys,
//     a JWKS fetched by token inspect), under exactly the same rules;
//   - the one invalid-token error, InvalidTokenError with its Reason;
//   - the URL, loopback, redirect-URI and SSRF policy, and the hardened
//     Fetcher every fetch of metadata, keys or tokens goes through.
//
// It does not render 401/403 responses or Protected Resource Metadata; the
// provider does, using the errors and Issuers from here. Its subpackage
// oauthtest serves a test issuer and the table of tokens every reader of
// tokens must refuse.
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
