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
// Still to come here: the embedded authorization server (metadata, JWKS and
// token endpoints, authorization code with PKCE, refresh, client
// credentials, dynamic client registration, introspection, revocation) and
// the RFC 8693 token-exchange grant, both as a server and as a client of
// external identity providers.
package exchange
