package oauth

import (
	"math"
	"slices"
	"strings"
	"time"
)

// Principal is who a valid access token speaks for. A Principal returned by
// Verify may be shared with other callers through the cache: treat it, its
// slices and its Claims map as read-only.
type Principal struct {
	Issuer   string
	Subject  string
	ClientID string   // client_id, else azp
	Scopes   []string // "scope" (space-separated), else "scp" (array or space-separated string)
	Groups   []string // the configured groups claim (array of strings or a single string)
	Audience []string
	Actor    *Actor // RFC 8693 act chain: the current actor, earlier ones nested inside
	Expiry   time.Time
	IssuedAt time.Time // zero when the token has no iat
	TokenID  string    // jti
	Method   string    // MethodJWT or MethodIntrospection
	// Claims holds every claim of the token (JWT payload or introspection
	// response) as encoding/json decodes into any, for policy input.
	Claims map[string]any
}

// Actor is one link of an RFC 8693 §4.1 act chain. Only the outermost
// actor is the one acting now; nested actors acted before it. It is the
// one actor type of the house: read from the tokens the broker accepts,
// and encoded as act into the tokens it mints.
type Actor struct {
	Subject  string `json:"sub,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Actor    *Actor `json:"act,omitempty"`
}

// Validation methods.
const (
	MethodJWT           = "jwt"
	MethodIntrospection = "introspection"
)

// Names lists who acts, the current actor first and each earlier one
// after it: each link by its sub, or its client_id when it names no sub.
func (a *Actor) Names() []string {
	var names []string
	for ; a != nil; a = a.Actor {
		name := a.Subject
		if name == "" {
			name = a.ClientID
		}
		names = append(names, name)
	}
	return names
}

// MaxActorDepth bounds act nesting, in the tokens the broker accepts and
// in those it mints; real delegation chains are two or three links long.
const MaxActorDepth = 8

// claimRules are the checks common to JWT and introspection results.
type claimRules struct {
	issuer           string // required value of iss when iss is present
	audiences        []string
	relaxedAudience  bool
	audienceOptional bool // introspection responses may omit aud (RFC 7662 §2.2)
	expiryRequired   bool // JWTs must carry exp (RFC 9068 §2.2); introspection may omit it
	skew             time.Duration
	groupsClaim      string
	method           string
}

// principalFromClaims validates claims and builds the principal.
func principalFromClaims(claims map[string]any, rules *claimRules, now time.Time) (*Principal, error) {
	p := &Principal{Method: rules.method, Claims: claims}
	var err error

	if v, present := claims["iss"]; present {
		issuer, ok := v.(string)
		if !ok {
			return nil, invalid(ReasonMalformed, "iss is not a string")
		}
		if issuer != rules.issuer {
			return nil, invalid(ReasonIssuer, "")
		}
		p.Issuer = issuer
	} else if rules.method == MethodJWT {
		return nil, invalid(ReasonIssuer, "iss missing")
	} else {
		p.Issuer = rules.issuer
	}

	// Sender-constrained tokens (DPoP, RFC 9449; mTLS, RFC 8705) must not
	// be accepted as plain bearer tokens: we would drop the binding that
	// makes a stolen token useless.
	if _, present := claims["cnf"]; present {
		return nil, invalid(ReasonTokenType, "sender-constrained token (cnf) presented as bearer")
	}

	if p.Expiry, p.IssuedAt, err = checkLifetime(claims, rules.expiryRequired, rules.skew, now); err != nil {
		return nil, err
	}

	audience, present, ok := StringOrStrings(claims["aud"])
	if present && !ok {
		return nil, invalid(ReasonMalformed, "aud is not a string or an array of strings")
	}
	p.Audience = audience
	if !rules.relaxedAudience && (present || !rules.audienceOptional) {
		if !slices.ContainsFunc(audience, func(a string) bool { return slices.Contains(rules.audiences, a) }) {
			return nil, invalid(ReasonAudience, "")
		}
	}

	if p.Subject, err = StringClaim(claims, "sub"); err != nil {
		return nil, err
	}
	if p.Subject == "" {
		return nil, invalid(ReasonSubject, "sub missing or empty")
	}
	if p.ClientID, err = StringClaim(claims, "client_id"); err != nil {
		return nil, err
	}
	azp, err := StringClaim(claims, "azp")
	if err != nil {
		return nil, err
	}
	if p.ClientID == "" {
		p.ClientID = azp
	}
	if p.TokenID, err = StringClaim(claims, "jti"); err != nil {
		return nil, err
	}

	scope, scopePresent := claims["scope"]
	if scopePresent {
		s, ok := scope.(string)
		if !ok {
			return nil, invalid(ReasonMalformed, "scope is not a string")
		}
		p.Scopes = strings.Fields(s)
	}
	scp, scpPresent := claims["scp"]
	if scpPresent {
		values, ok := ScopeValues(scp)
		if !ok {
			return nil, invalid(ReasonMalformed, "scp is not a string or an array of strings")
		}
		if !scopePresent {
			p.Scopes = values
		}
	}

	if v, present := claims[rules.groupsClaim]; present {
		var ok bool
		if p.Groups, _, ok = StringOrStrings(v); !ok {
			return nil, invalid(ReasonMalformed, "groups claim is not a string or an array of strings")
		}
	}

	if v, present := claims["act"]; present {
		if p.Actor, err = ParseActor(v); err != nil {
			return nil, err
		}
	}

	if rules.method == MethodJWT {
		if err := refuseIDToken(claims, scopePresent || scpPresent, p.ClientID != ""); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// refuseIDToken catches OpenID Connect ID tokens presented as access tokens
// (mistake 4). The typ check already refuses most of them; this catches the
// ones that get through when AllowMissingTyp is set. nonce, at_hash and
// c_hash exist only in ID tokens; auth_time may appear in access tokens
// (RFC 9068 §2.2.1) but then with a scope or client_id beside it.
func refuseIDToken(claims map[string]any, hasScope, hasClientID bool) error {
	for _, name := range [...]string{"nonce", "at_hash", "c_hash"} {
		if _, present := claims[name]; present {
			return invalid(ReasonIDToken, name+" claim present")
		}
	}
	if _, present := claims["auth_time"]; present && !hasScope && !hasClientID {
		return invalid(ReasonIDToken, "auth_time without scope or client_id")
	}
	return nil
}

// ParseActor reads the value of an act claim (RFC 8693 §4.1): an object
// naming sub or client_id (strings), with earlier actors nested in act, at
// most MaxActorDepth deep. Refusals are *InvalidTokenError.
func ParseActor(v any) (*Actor, error) { return parseActor(v, 1) }

func parseActor(v any, depth int) (*Actor, error) {
	if depth > MaxActorDepth {
		return nil, invalid(ReasonMalformed, "act nested too deeply")
	}
	object, ok := v.(map[string]any)
	if !ok {
		return nil, invalid(ReasonMalformed, "act is not an object")
	}
	var actor Actor
	var err error
	if actor.Subject, err = StringClaim(object, "sub"); err != nil {
		return nil, err
	}
	if actor.ClientID, err = StringClaim(object, "client_id"); err != nil {
		return nil, err
	}
	if actor.Subject == "" && actor.ClientID == "" {
		return nil, invalid(ReasonMalformed, "act names neither sub nor client_id")
	}
	if nested, present := object["act"]; present {
		if actor.Actor, err = parseActor(nested, depth+1); err != nil {
			return nil, err
		}
	}
	return &actor, nil
}

// checkLifetime applies exp (required when expiryRequired), nbf and iat
// to now, each with skew, and returns exp and iat (zero when absent).
func checkLifetime(claims map[string]any, expiryRequired bool, skew time.Duration, now time.Time) (expiry, issuedAt time.Time, err error) {
	if expiry, err = NumericDate(claims, "exp"); err != nil {
		return expiry, issuedAt, err
	}
	switch {
	case expiry.IsZero() && expiryRequired:
		return expiry, issuedAt, invalid(ReasonNoExpiry, "")
	case !expiry.IsZero() && !now.Before(expiry.Add(skew)):
		return expiry, issuedAt, invalid(ReasonExpired, "")
	}
	notBefore, err := NumericDate(claims, "nbf")
	if err != nil {
		return expiry, issuedAt, err
	}
	if !notBefore.IsZero() && notBefore.After(now.Add(skew)) {
		return expiry, issuedAt, invalid(ReasonNotYetValid, "")
	}
	if issuedAt, err = NumericDate(claims, "iat"); err != nil {
		return expiry, issuedAt, err
	}
	if !issuedAt.IsZero() && issuedAt.After(now.Add(skew)) {
		return expiry, issuedAt, invalid(ReasonIssuedInFuture, "")
	}
	return expiry, issuedAt, nil
}

// StringClaim reads an optional string claim; absent gives "". Any other
// type is a malformed-token error.
func StringClaim(claims map[string]any, name string) (string, error) {
	v, present := claims[name]
	if !present {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", invalid(ReasonMalformed, name+" is not a string")
	}
	return s, nil
}

// StringOrStrings reads a claim that may be one string or an array of
// strings (aud per RFC 7519 §4.1.3, and the same shape for groups and scp,
// and for lists in metadata documents). Absent (nil) gives present false
// and ok true; any other type, or an array holding a non-string, ok false.
func StringOrStrings(v any) (values []string, present, ok bool) {
	switch v := v.(type) {
	case nil:
		return nil, false, true
	case string:
		return []string{v}, true, true
	case []any:
		values = make([]string, 0, len(v))
		for _, element := range v {
			s, isString := element.(string)
			if !isString {
				return nil, true, false
			}
			values = append(values, s)
		}
		return values, true, true
	}
	return nil, true, false
}

// maxNumericDate is 9999-12-31T23:59:59Z: a later date is a bug or an attack.
const maxNumericDate = 253402300799

// NumericDate reads the RFC 7519 NumericDate claim name (seconds, maybe
// fractional); absent gives the zero time. A value that is not a number,
// is negative or lies beyond the year 9999 is a malformed-token error.
func NumericDate(claims map[string]any, name string) (time.Time, error) {
	v, present := claims[name]
	if !present {
		return time.Time{}, nil
	}
	seconds, ok := v.(float64)
	if !ok || math.IsNaN(seconds) || seconds < 0 || seconds > maxNumericDate {
		return time.Time{}, invalid(ReasonMalformed, name+" is not a valid NumericDate")
	}
	whole, fraction := math.Modf(seconds)
	return time.Unix(int64(whole), int64(fraction*1e9)), nil
}

// ScopeValues reads a scope list in either form found in the wild: a
// space-separated string (RFC 6749 §3.3, the scope claim) or an array of
// strings (scp as some identity providers write it). Absent (nil) gives
// none; any other type, ok false.
func ScopeValues(v any) (values []string, ok bool) {
	if s, isString := v.(string); isString {
		return strings.Fields(s), true
	}
	values, _, ok = StringOrStrings(v)
	return values, ok
}
