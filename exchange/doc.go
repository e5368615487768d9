// Package exchange owns the tokens the broker sends upstream: the signing
// keys, their rotation and publication, and the in-process minter that turns
// one authorized tool call into a fresh, short-lived, tool-scoped access
// token carrying the identity chain.
//
// Keys. A [KeySet] holds one active Ed25519 (EdDSA) and one active P-256
// (ES256) key; RSA is never used to mint. Keys are generated on first start
// and persisted through a [KeyStore] (bbolt in production, see
// [NewBoltKeyStore]; [MemoryKeyStore] in tests). [KeySet.Rotate] makes new
// active keys; a replaced key stays in [KeySet.JWKS] until every token it can
// have signed has expired (its retirement + the longest token lifetime + the
// verifiers' clock skew) and is then dropped. [KeySet.RotateEvery] does this on
// a schedule that survives restarts, because it counts from the keys' stored
// creation time.
//
// Minting. [Minter.Mint] produces RFC 9068 JWT access tokens:
//
//	header  {"alg": "ES256" | "EdDSA", "kid": <RFC 7638 thumbprint>, "typ": "at+jwt"}
//	claims  {"iss", "sub", "aud", "scope", "client_id", "act"?, "exp", "iat", "jti"}
//
// For delegation, act names the current actor and nests the earlier ones
// inside it (RFC 8693 §4.1); impersonation has no act. Minting runs on every
// tool call, so the protected header is encoded once per key and the claims
// are a struct encoded without maps.
//
// Issuing upstream tokens. An [Issuer] issues the token an app's upstream
// receives for one request: [MintingIssuer] mints in process with the
// embedded authorization server's keys, [ConnectorIssuer] exchanges the
// agent's own token at a connector's token endpoint (RFC 8693) and refuses
// an answer that grants more scope than asked for. Either way the token
// ends no later than the agent's own, and is held as a [Credential], which
// never formats or logs its value.
//
// Verifying. [KeySet.Verify] checks a token this broker minted by the rules
// of provider/oauth's VerifyJWT, the ones every token the broker accepts
// must pass, with the published keys (active or retired): kid names one of
// them and alg must be that key's; typ at+jwt; no crit; jku, x5u and jwk
// are never used; iss exact; exp required; nbf and iat not in the future,
// with a small skew. It returns every claim, including act (an
// oauth.Actor) and may_act; refusals are oauth.InvalidTokenError.
//
// Token exchange as a server. [Exchanger.Exchange] is the RFC 8693 grant
// without HTTP: the token endpoint authenticates the client, passes the
// form as an [ExchangeRequest] and renders the [ExchangeResponse] or the
// [*OAuthError]. Subject and actor tokens must be this issuer's and not
// revoked; audience and resource together name one target the client may
// have; scope is never widened; an actor token makes it delegation (act
// names the actor, earlier actors nest inside) and its absence
// impersonation; may_act, when present, names the only party that may act.
// The new token never outlives the subject or actor token.
//
// Token exchange as a client. [Client.Exchange] asks an external identity
// provider's token endpoint (found with [Discover] or [DiscoverIssuer]) for
// a token, authenticating with client_secret_basic, and checks the answer:
// access_token, token_type (Bearer or N_A) and issued_token_type present,
// the body at most 64 KiB. Provider errors come back as [*OAuthError] with
// the HTTP status. No error from this package contains a token.
//
// The embedded authorization server that serves these tokens and the
// token-exchange grant over HTTP is the subpackage authserver.
package exchange
