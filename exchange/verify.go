package exchange

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

const (
	// MaxTokenSize is the largest token Verify looks at; the broker's own
	// tokens are a few hundred bytes.
	MaxTokenSize = 16 << 10
	// DefaultVerifyClockSkew is the skew Verify tolerates for exp, nbf and
	// iat when VerifyOptions names none. The tokens are the broker's own,
	// so only the clocks of its replicas can differ.
	DefaultVerifyClockSkew = 5 * time.Second
	// maxVerifyClockSkew bounds VerifyOptions.ClockSkew: retired keys stay
	// published for DefaultClockSkew past their last token's expiry.
	maxVerifyClockSkew = DefaultClockSkew
)

// VerifyOptions say what [KeySet.Verify] requires of a token.
type VerifyOptions struct {
	// Issuer is the iss the token must carry, byte for byte. Required.
	Issuer string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// ClockSkew is tolerated for exp, nbf and iat. Default
	// DefaultVerifyClockSkew; at most DefaultClockSkew.
	ClockSkew time.Duration
	// Now: default time.Now.
	Now func() time.Time
}

// MayAct is the may_act claim (RFC 8693 §4.4): the party allowed to act
// for the subject. It names a sub, a client_id or both, and may name the
// issuer of the actor's identity.
type MayAct struct {
	Subject  string
	ClientID string
	Issuer   string
}

// VerifiedToken is an access token this broker minted, verified. Claims
// holds every claim as encoding/json decodes into any (numbers are
// float64); the fields are the claims the broker reads, already checked
// for their types.
type VerifiedToken struct {
	KeyID     string
	Algorithm jose.SignatureAlgorithm

	Issuer    string
	Subject   string
	ClientID  string   // empty when the token has none
	Scope     string   // the scope claim as written, space-separated
	Scopes    []string // Scope split on spaces
	Audience  []string // aud, a string or an array in the token
	Actor     *Actor   // act: the current actor, earlier ones nested inside
	MayAct    *MayAct  // may_act
	Expiry    time.Time
	IssuedAt  time.Time // zero when the token has no iat
	NotBefore time.Time // zero when the token has no nbf
	TokenID   string    // jti, empty when the token has none
	Claims    map[string]any
}

// tokenError is the concrete type of every ErrInvalidToken from Verify.
// reason is fixed text written here, never token content, so it may be
// shown to the client that presented the token.
type tokenError struct {
	reason string
	also   error // a narrower sentinel (ErrTokenExpired), or nil
}

func (e *tokenError) Error() string { return "exchange: " + ErrInvalidToken.Error() + ": " + e.reason }

func (e *tokenError) Is(target error) bool {
	return target == ErrInvalidToken || (e.also != nil && target == e.also)
}

func invalidToken(reason string) error { return &tokenError{reason: reason} }

// tokenReason returns the client-safe reason of a Verify error, or "" for
// any other error.
func tokenReason(err error) string {
	var e *tokenError
	if errors.As(err, &e) {
		return e.reason
	}
	return ""
}

// Verify checks that token is an access token minted with one of these
// keys, active or retired, and returns its claims. Refusals match
// ErrInvalidToken (and ErrTokenExpired when exp has passed); their text
// never contains any part of the token.
//
// What a token must be: a JWS compact serialization in canonical
// base64url; alg EdDSA or ES256 and the algorithm of the key its kid
// names; typ at+jwt (RFC 9068 §4); no crit header (jku, x5u, jwk and x5c
// are ignored: the key comes from the kid alone); a JSON object payload
// whose iss is opts.Issuer exactly, with exp present and not past, nbf
// and iat not in the future (all within the skew), a non-empty sub, and
// when opts.Audience is set an aud that contains it.
func (s *KeySet) Verify(token string, opts VerifyOptions) (*VerifiedToken, error) {
	if opts.Issuer == "" {
		return nil, errors.New("exchange: verify needs an issuer")
	}
	if opts.ClockSkew == 0 {
		opts.ClockSkew = DefaultVerifyClockSkew
	}
	if opts.ClockSkew < 0 || opts.ClockSkew > maxVerifyClockSkew {
		return nil, errors.New("exchange: verify: clock skew must be in (0, 5m]")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	if len(token) > MaxTokenSize {
		return nil, invalidToken("token too large")
	}
	headerPart, rest, ok := strings.Cut(token, ".")
	payloadPart, signaturePart, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(signaturePart, ".") {
		return nil, invalidToken("not a JWS compact serialization")
	}
	headerBytes, err := oauth.DecodeSegment(headerPart)
	if err != nil {
		return nil, invalidToken("header is not base64url")
	}
	header, err := oauth.DecodeObject(headerBytes)
	if err != nil {
		return nil, invalidToken("header is not a json object")
	}
	if _, present := header["crit"]; present {
		// No extension is understood here, so any crit list is refused
		// (RFC 7515 §4.1.11).
		return nil, invalidToken("crit header")
	}
	algorithm, _ := header["alg"].(string)
	if algorithm != string(jose.EdDSA) && algorithm != string(jose.ES256) {
		return nil, invalidToken("alg must be EdDSA or ES256")
	}
	keyID, _ := header["kid"].(string)
	if keyID == "" {
		return nil, invalidToken("kid missing")
	}
	typ, _ := header["typ"].(string)
	if t := strings.ToLower(typ); t != TypeAccessToken && t != "application/"+TypeAccessToken {
		return nil, invalidToken("typ is not at+jwt")
	}

	key := s.publishedKey(keyID)
	if key == nil {
		return nil, invalidToken("unknown kid")
	}
	if string(key.signer.algorithm) != algorithm {
		return nil, invalidToken("alg does not match the key")
	}
	payload, err := oauth.DecodeSegment(payloadPart)
	if err != nil {
		return nil, invalidToken("payload is not base64url")
	}
	signature, err := oauth.DecodeSegment(signaturePart)
	if err != nil {
		return nil, invalidToken("signature is not base64url")
	}
	if !verifySignature(key, token[:len(headerPart)+1+len(payloadPart)], signature) {
		return nil, invalidToken("bad signature")
	}
	claims, err := oauth.DecodeObject(payload)
	if err != nil {
		return nil, invalidToken("payload is not a json object")
	}
	verified, err := readClaims(claims, &opts)
	if err != nil {
		return nil, err
	}
	verified.KeyID = keyID
	verified.Algorithm = key.signer.algorithm
	return verified, nil
}

// publishedKey returns the published key with kid, or nil.
func (s *KeySet) publishedKey(keyID string) *signingKey {
	for _, key := range s.ring.Load().keys {
		if key.stored.ID == keyID {
			return key
		}
	}
	return nil
}

func verifySignature(key *signingKey, signingInput string, signature []byte) bool {
	if len(signature) != signatureSize {
		return false
	}
	switch public := key.public.Key.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(public, []byte(signingInput), signature)
	case *ecdsa.PublicKey:
		digest := sha256.Sum256([]byte(signingInput))
		r := new(big.Int).SetBytes(signature[:32])
		sValue := new(big.Int).SetBytes(signature[32:])
		return ecdsa.Verify(public, digest[:], r, sValue)
	}
	return false
}

// readClaims checks the claims against opts and reads the ones the broker
// uses.
func readClaims(claims map[string]any, opts *VerifyOptions) (*VerifiedToken, error) {
	v := &VerifiedToken{Claims: claims}
	var err error
	if v.Issuer, err = claimString(claims, "iss"); err != nil {
		return nil, err
	}
	if v.Issuer != opts.Issuer {
		return nil, invalidToken("issuer does not match")
	}

	now := opts.Now()
	if v.Expiry, err = numericDate(claims, "exp"); err != nil {
		return nil, err
	}
	switch {
	case v.Expiry.IsZero():
		return nil, invalidToken("exp missing")
	case !now.Before(v.Expiry.Add(opts.ClockSkew)):
		return nil, &tokenError{reason: "expired", also: ErrTokenExpired}
	}
	if v.NotBefore, err = numericDate(claims, "nbf"); err != nil {
		return nil, err
	}
	if v.NotBefore.After(now.Add(opts.ClockSkew)) {
		return nil, invalidToken("not yet valid")
	}
	if v.IssuedAt, err = numericDate(claims, "iat"); err != nil {
		return nil, err
	}
	if v.IssuedAt.After(now.Add(opts.ClockSkew)) {
		return nil, invalidToken("issued in the future")
	}

	if v.Subject, err = claimString(claims, "sub"); err != nil {
		return nil, err
	}
	if v.Subject == "" {
		return nil, invalidToken("sub missing")
	}
	if v.Audience, err = audienceClaim(claims["aud"]); err != nil {
		return nil, err
	}
	if opts.Audience != "" && !slices.Contains(v.Audience, opts.Audience) {
		return nil, invalidToken("audience does not match")
	}
	if v.ClientID, err = claimString(claims, "client_id"); err != nil {
		return nil, err
	}
	if v.TokenID, err = claimString(claims, "jti"); err != nil {
		return nil, err
	}
	if v.Scope, err = claimString(claims, "scope"); err != nil {
		return nil, err
	}
	v.Scopes = strings.Fields(v.Scope)
	if raw, present := claims["act"]; present {
		if v.Actor, err = actorClaim(raw, 1); err != nil {
			return nil, err
		}
	}
	if raw, present := claims["may_act"]; present {
		if v.MayAct, err = mayActClaim(raw); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func actorClaim(raw any, depth int) (*Actor, error) {
	if depth > maxActorDepth {
		return nil, invalidToken("act nested too deeply")
	}
	object, ok := raw.(map[string]any)
	if !ok {
		return nil, invalidToken("act is not an object")
	}
	actor := &Actor{}
	var err error
	if actor.Subject, err = claimString(object, "sub"); err != nil {
		return nil, err
	}
	if actor.ClientID, err = claimString(object, "client_id"); err != nil {
		return nil, err
	}
	if actor.Subject == "" && actor.ClientID == "" {
		return nil, invalidToken("act names neither sub nor client_id")
	}
	if nested, present := object["act"]; present {
		if actor.Actor, err = actorClaim(nested, depth+1); err != nil {
			return nil, err
		}
	}
	return actor, nil
}

func mayActClaim(raw any) (*MayAct, error) {
	object, ok := raw.(map[string]any)
	if !ok {
		return nil, invalidToken("may_act is not an object")
	}
	mayAct := &MayAct{}
	var err error
	if mayAct.Subject, err = claimString(object, "sub"); err != nil {
		return nil, err
	}
	if mayAct.ClientID, err = claimString(object, "client_id"); err != nil {
		return nil, err
	}
	if mayAct.Issuer, err = claimString(object, "iss"); err != nil {
		return nil, err
	}
	if mayAct.Subject == "" && mayAct.ClientID == "" {
		return nil, invalidToken("may_act names neither sub nor client_id")
	}
	return mayAct, nil
}

// claimString reads an optional string member; absent gives "".
func claimString(object map[string]any, name string) (string, error) {
	raw, present := object[name]
	if !present {
		return "", nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", invalidToken(name + " is not a string")
	}
	return s, nil
}

// audienceClaim reads aud: one string or an array of strings (RFC 7519
// §4.1.3); absent gives nil.
func audienceClaim(raw any) ([]string, error) {
	values, ok := stringOrStrings(raw)
	if !ok {
		return nil, invalidToken("aud is not a string or an array of strings")
	}
	return values, nil
}

// stringOrStrings reads a JSON string or array of strings; nil gives nil.
func stringOrStrings(raw any) ([]string, bool) {
	switch v := raw.(type) {
	case nil:
		return nil, true
	case string:
		return []string{v}, true
	case []any:
		values := make([]string, len(v))
		for i, element := range v {
			s, ok := element.(string)
			if !ok {
				return nil, false
			}
			values[i] = s
		}
		return values, true
	}
	return nil, false
}

// maxNumericDate is 9999-12-31T23:59:59Z.
const maxNumericDate = 253402300799

// numericDate reads an RFC 7519 NumericDate; absent gives the zero time.
func numericDate(claims map[string]any, name string) (time.Time, error) {
	raw, present := claims[name]
	if !present {
		return time.Time{}, nil
	}
	seconds, ok := raw.(float64)
	if !ok || math.IsNaN(seconds) || seconds < 0 || seconds > maxNumericDate {
		return time.Time{}, invalidToken(name + " is not a NumericDate")
	}
	whole, fraction := math.Modf(seconds)
	return time.Unix(int64(whole), int64(fraction*1e9)), nil
}
