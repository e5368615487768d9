package exchange

import "errors"

// Mint refuses a [Grant] with one of these, wrapped with the audience
// ("exchange: mint for %q: %w"); callers compare with errors.Is. A refused
// grant is a configuration or programming error, never the agent's fault.
var (
	ErrTTL         = errors.New("ttl must be a whole number of seconds, at least 1s and at most the keys' maximum token lifetime")
	ErrNoSubject   = errors.New("subject is required")
	ErrNoAudience  = errors.New("audience is required")
	ErrNoClientID  = errors.New("client_id is required (RFC 9068 §2.2)")
	ErrScope       = errors.New("scope is not a scope token (RFC 6749 §3.3)")
	ErrActor       = errors.New("delegation needs an actor chain whose every link names sub or client_id, at most 8 deep")
	ErrExtraClaim  = errors.New("extra claims may not set a claim the minter sets")
	ErrAlgorithm   = errors.New("signing algorithm must be EdDSA or ES256")
	ErrKeyMismatch = errors.New("stored key does not match its kid or alg")
	ErrInsecureDB  = errors.New("database file is readable or writable by group or others")
	ErrStoreLocked = errors.New("the store is locked by another process (is another broker using it?)")
)

// Verify refuses a token with provider/oauth's *InvalidTokenError, the one
// invalid-token error of the house: errors.Is oauth.ErrInvalidToken, and
// oauth.ReasonOf says why (oauth.ReasonExpired for an expired token).

// Client errors. An identity provider's OAuth error response is an
// *OAuthError instead.
var (
	// ErrClientRequest: the request was not sent because it is incomplete.
	ErrClientRequest = errors.New("token exchange request is incomplete")
	// ErrTokenResponse: the token endpoint answered with something that is
	// neither a valid token response nor an OAuth error response.
	ErrTokenResponse = errors.New("token endpoint response is not a valid token response")
	// ErrMetadata: an authorization server metadata document is unusable.
	ErrMetadata = errors.New("authorization server metadata is not usable")
)
