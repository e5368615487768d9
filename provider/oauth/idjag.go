package oauth

import (
	"errors"
	"strings"
	"time"
)

// TypIDJAG is the typ of an Identity Assertion JWT Authorization Grant
// (draft-ietf-oauth-identity-assertion-authz-grant).
const TypIDJAG = "oauth-id-jag+jwt"

// IDJAGRules say what VerifyIDJAG requires of an ID-JAG besides a
// signature by one of the keys.
type IDJAGRules struct {
	// Issuer is the identity provider's iss, byte for byte. Required.
	Issuer string
	// Audience is this authorization server's issuer: aud must name it and
	// nothing else. Required.
	Audience string
	// Resources are this server's resources: resource must be one of
	// them. Required.
	Resources []string
	// ClientID is the authenticated client: client_id must be it.
	// Required.
	ClientID string
	// MaxLifetime bounds exp - iat. Required.
	MaxLifetime time.Duration
	// ClockSkew is tolerated for exp, nbf and iat. Zero means 15s.
	ClockSkew time.Duration
}

// IDJAG is a verified identity assertion grant.
type IDJAG struct {
	Subject, ClientID, Resource, ID string
	// Scopes are the scope claim's, when present; nil when absent.
	Scopes           []string
	Expiry, IssuedAt time.Time
	Claims           map[string]any
}

// VerifyIDJAG checks an ID-JAG with the parser, header rules and key
// binding of access tokens (strict JWS compact serialization, alg on the
// supported list and bound to the key's type, the key chosen by kid from
// keys alone, no crit), then: typ exactly oauth-id-jag+jwt; iss exact; aud
// this server alone; resource one of this server's; client_id the
// authenticated client; exp, iat and jti required; exp, nbf and iat within
// the skew; exp - iat within the maximum lifetime; sub present. Refusals
// are *InvalidTokenError whose description says which rule, and never
// contain token material.
func VerifyIDJAG(token string, keys *KeySet, rules IDJAGRules, now time.Time) (*IDJAG, error) {
	if rules.Issuer == "" || rules.Audience == "" || len(rules.Resources) == 0 || rules.ClientID == "" || rules.MaxLifetime <= 0 {
		return nil, errors.New("oauth: verify id-jag: issuer, audience, resources, client id and maximum lifetime are required")
	}
	typ := func(t *unverifiedJWT) error {
		if !t.hasTyp || !strings.EqualFold(t.typ, TypIDJAG) {
			return invalid(ReasonType, "typ is not "+TypIDJAG)
		}
		return nil
	}
	t, err := verifyCompact(token, keys, rules.Issuer, supportedAlgorithms, typ, nil)
	if err != nil {
		return nil, err
	}
	claims := t.claims
	if rules.ClockSkew == 0 {
		rules.ClockSkew = defaultClockSkew
	}
	expiry, issuedAt, err := checkLifetime(claims, true, rules.ClockSkew, now)
	if err != nil {
		return nil, err
	}
	if issuedAt.IsZero() {
		return nil, invalid(ReasonMalformed, "iat missing")
	}
	if expiry.Sub(issuedAt) > rules.MaxLifetime {
		return nil, invalid(ReasonExpired, "lives longer than "+rules.MaxLifetime.String()+" (exp - iat)")
	}
	audience, _, ok := StringOrStrings(claims["aud"])
	switch {
	case !ok:
		return nil, invalid(ReasonMalformed, "aud is not a string or an array of strings")
	case len(audience) != 1 || audience[0] != rules.Audience:
		return nil, invalid(ReasonAudience, "aud is not this authorization server alone")
	}
	g := &IDJAG{Expiry: expiry, IssuedAt: issuedAt, Claims: claims}
	for name, into := range map[string]*string{"sub": &g.Subject, "client_id": &g.ClientID, "resource": &g.Resource, "jti": &g.ID} {
		if *into, err = StringClaim(claims, name); err != nil {
			return nil, err
		}
		if *into == "" {
			return nil, invalid(ReasonMalformed, name+" missing or empty")
		}
	}
	if g.ClientID != rules.ClientID {
		return nil, invalid(ReasonAudience, "client_id is not the authenticated client")
	}
	found := false
	for _, r := range rules.Resources {
		found = found || r == g.Resource
	}
	if !found {
		return nil, invalid(ReasonAudience, "resource is not one of this server's")
	}
	if scope, present := claims["scope"]; present {
		s, isString := scope.(string)
		if !isString {
			return nil, invalid(ReasonMalformed, "scope is not a string")
		}
		g.Scopes = strings.Fields(s)
	}
	return g, nil
}
