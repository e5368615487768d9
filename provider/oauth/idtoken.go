package oauth

import (
	"crypto/subtle"
	"errors"
	"slices"
	"strings"
	"time"
)

// IDTokenRules say what VerifyIDToken requires of an OpenID Connect ID
// token besides a signature by one of the keys.
type IDTokenRules struct {
	// Issuer is the identity provider's iss, byte for byte. Required.
	Issuer string
	// ClientID must be in aud; azp, when present or when aud names
	// several parties, must be it. Required.
	ClientID string
	// Nonce is the nonce the authorization request carried. Required,
	// unless AnyNonce: an ID token presented later (as a token exchange's
	// subject token) is not checked against a sign-in's nonce.
	Nonce    string
	AnyNonce bool
	// ClockSkew is tolerated for exp, nbf and iat. Zero means 15s.
	ClockSkew time.Duration
}

// VerifyIDToken checks an ID token (OpenID Connect Core §3.1.3.7) with
// the parser, header rules and key binding of access tokens: strict JWS
// compact serialization, alg on the supported list and bound to the key's
// type, the key chosen by kid from keys alone, no crit. typ may be absent
// or JWT, never at+jwt: an access token is not an ID token. Then iss
// exact, aud naming the client, azp, exp required, exp, nbf and iat within
// the skew, sub present and the nonce equal. It returns the verified
// claims. Refusals are *InvalidTokenError and never contain token material.
func VerifyIDToken(token string, keys *KeySet, rules IDTokenRules, now time.Time) (map[string]any, error) {
	if rules.Issuer == "" || rules.ClientID == "" || (rules.Nonce == "" && !rules.AnyNonce) {
		return nil, errors.New("oauth: verify id token: issuer, client id and nonce are required")
	}
	t, err := verifyCompact(token, keys, rules.Issuer, supportedAlgorithms, accessTokenTyp(true), func(t *unverifiedJWT) error {
		if typ := strings.ToLower(t.typ); typ == "at+jwt" || typ == "application/at+jwt" {
			return invalid(ReasonType, "an access token is not an ID token")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	claims := t.claims
	if rules.ClockSkew == 0 {
		rules.ClockSkew = defaultClockSkew
	}
	if _, _, err := checkLifetime(claims, true, rules.ClockSkew, now); err != nil {
		return nil, err
	}
	audience, _, ok := StringOrStrings(claims["aud"])
	if !ok {
		return nil, invalid(ReasonMalformed, "aud is not a string or an array of strings")
	}
	if !slices.Contains(audience, rules.ClientID) {
		return nil, invalid(ReasonAudience, "")
	}
	// An azp naming another client means the token was issued to that
	// client, whatever aud says.
	azp, hasAZP := claims["azp"]
	if (hasAZP || len(audience) > 1) && azp != rules.ClientID {
		return nil, invalid(ReasonAudience, "azp is not this client")
	}
	nonce, _ := claims["nonce"].(string)
	if !rules.AnyNonce && subtle.ConstantTimeCompare([]byte(nonce), []byte(rules.Nonce)) != 1 {
		return nil, invalid(ReasonMalformed, "nonce does not match")
	}
	subject, err := StringClaim(claims, "sub")
	if err != nil {
		return nil, err
	}
	if subject == "" {
		return nil, invalid(ReasonSubject, "sub missing or empty")
	}
	return claims, nil
}
