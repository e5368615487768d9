package oauth

import (
	"errors"
	"time"
)

// JWTRules say what VerifyJWT requires of a token besides a signature by
// one of the keys. They are the rules the inbound verifier applies to each
// configured server, for callers that hold the keys themselves.
type JWTRules struct {
	// Issuer is the iss a token must carry, byte for byte. Required.
	Issuer string
	// Audiences: a token's aud must contain one of them, unless
	// AnyAudience is set (aud must then still be well-formed).
	Audiences   []string
	AnyAudience bool
	// Algorithms is the alg allow-list, a subset of the supported ones
	// (never none, never HS*). Empty means every supported algorithm.
	Algorithms []string
	// AllowMissingTyp accepts a token without typ or with typ JWT.
	AllowMissingTyp bool
	// RequireKeyID refuses a token whose header names no kid, for a
	// service verifying its own tokens, which always name their key.
	RequireKeyID bool
	// ClockSkew is tolerated for exp, nbf and iat. Zero means 15s.
	ClockSkew time.Duration
	// GroupsClaim names the claim read into Principal.Groups. Default
	// "groups".
	GroupsClaim string
}

// VerifyJWT checks a JWT access token against a key set that the caller
// holds, with exactly the parsing, header, signature and claims rules of
// Verifier.Verify: strict JWS compact serialization, alg on the allow-list
// and bound to the key's type, the key chosen by kid from keys alone (jku,
// x5u, jwk and x5c ignored), typ at+jwt, no crit, iss exact, aud, exp
// required, exp, nbf and iat within the skew, sub present, no cnf, not an
// ID token, act well-formed. Refusals are *InvalidTokenError and never
// contain token material.
func VerifyJWT(token string, keys *KeySet, rules JWTRules, now time.Time) (*Principal, error) {
	if rules.Issuer == "" {
		return nil, errors.New("oauth: verify jwt: an issuer is required")
	}
	algorithms := rules.Algorithms
	if len(algorithms) == 0 {
		algorithms = supportedAlgorithms
	}
	t, err := verifyCompact(token, keys, rules.Issuer, algorithms, accessTokenTyp(rules.AllowMissingTyp), func(t *unverifiedJWT) error {
		if rules.RequireKeyID && t.keyID == "" {
			return invalid(ReasonKeyID, "kid missing")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rules.ClockSkew == 0 {
		rules.ClockSkew = defaultClockSkew
	}
	if rules.GroupsClaim == "" {
		rules.GroupsClaim = defaultGroupsClaim
	}
	return principalFromClaims(t.claims, &claimRules{
		issuer:          rules.Issuer,
		audiences:       rules.Audiences,
		relaxedAudience: rules.AnyAudience,
		expiryRequired:  true,
		skew:            rules.ClockSkew,
		groupsClaim:     rules.GroupsClaim,
		method:          MethodJWT,
	}, now)
}

// verifyCompact takes a JWS compact token apart and verifies it against a
// key set the caller holds: the header rules, then check (when not nil),
// then the issuer, then the signature by the key the token names.
func verifyCompact(token string, keys *KeySet, issuer string, algorithms []string, typ typRule, check func(*unverifiedJWT) error) (*unverifiedJWT, error) {
	if !isB64Token(token) {
		return nil, invalid(ReasonMalformed, "not a b64token of at most 16 KiB")
	}
	t, err := parseJWT(token)
	if err != nil {
		return nil, err
	}
	if err := checkJOSE(token, t, algorithms, typ); err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(t); err != nil {
			return nil, err
		}
	}
	if t.issuer != issuer {
		return nil, invalid(ReasonIssuer, "")
	}
	found, lookup := keys.find(t.keyID, t.algorithm)
	if err := verifySignature(token, t, found, lookup); err != nil {
		return nil, err
	}
	return t, nil
}
