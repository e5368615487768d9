package oauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// unverifiedJWT is a JWS compact token taken apart but not yet trusted.
type unverifiedJWT struct {
	algorithm string
	keyID     string
	typ       string
	hasTyp    bool
	payload   []byte
	claims    map[string]any
	issuer    string
	// headerErr is a header problem found while parsing. It is reported
	// only once the token is known to be for a JWT server: a server that
	// introspects may issue JWTs we could not verify ourselves.
	headerErr error
}

var strictBase64 = base64.RawURLEncoding.Strict()

// parseJWT takes a JWS compact token apart and checks everything that
// needs no key and no configuration. It fails when the token is not a JWS
// with a JSON object payload naming its issuer; header problems are kept
// in headerErr. Nothing in the header is ever used to locate a key: jku,
// x5u, jwk and x5c are ignored (RFC 8725 §3.10; mistake 6).
func parseJWT(token string) (*unverifiedJWT, error) {
	if len(token) > MaxTokenSize {
		return nil, invalid(ReasonMalformed, "token too large")
	}
	headerPart, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, invalid(ReasonMalformed, "not a JWS compact serialization")
	}
	payloadPart, signaturePart, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(signaturePart, ".") {
		// Five parts is a JWE, which an access token for us never is.
		return nil, invalid(ReasonMalformed, "not a JWS compact serialization")
	}

	headerBytes, err := DecodeSegment(headerPart)
	if err != nil {
		return nil, invalid(ReasonMalformed, "header is not base64url")
	}
	header, err := DecodeObject(headerBytes)
	if err != nil {
		return nil, invalid(ReasonMalformed, "header is not a json object")
	}
	t := &unverifiedJWT{}
	t.headerErr = checkHeader(header, t)

	if t.payload, err = DecodeSegment(payloadPart); err != nil {
		return nil, invalid(ReasonMalformed, "payload is not base64url")
	}
	if t.claims, err = DecodeObject(t.payload); err != nil {
		return nil, invalid(ReasonMalformed, "payload is not a json object")
	}
	// An empty signature (alg none, or a stripped one) is refused in
	// verifyJWT, after the header check has had its say.
	if _, err := DecodeSegment(signaturePart); err != nil {
		return nil, invalid(ReasonMalformed, "signature is not base64url")
	}
	switch v := t.claims["iss"].(type) {
	case string:
		t.issuer = v
	case nil:
		return nil, invalid(ReasonIssuer, "iss missing")
	default:
		return nil, invalid(ReasonMalformed, "iss is not a string")
	}
	return t, nil
}

// checkHeader validates the JOSE header and fills in alg, kid and typ.
func checkHeader(header map[string]any, t *unverifiedJWT) error {
	var ok bool
	if _, present := header["crit"]; present {
		// We understand no extension, so any crit list must be refused
		// (RFC 7515 §4.1.11). This also refuses b64:false (RFC 7797).
		return invalid(ReasonCritical, "")
	}
	for _, name := range [...]string{"enc", "zip", "b64", "cty"} {
		if _, present := header[name]; present {
			return invalid(ReasonMalformed, "unexpected "+name+" header")
		}
	}
	if t.algorithm, ok = header["alg"].(string); !ok {
		return invalid(ReasonAlgorithm, "alg missing")
	}
	if !slices.Contains(supportedAlgorithms, t.algorithm) {
		return invalid(ReasonAlgorithm, "alg not allowed")
	}
	if v, present := header["kid"]; present {
		if t.keyID, ok = v.(string); !ok {
			return invalid(ReasonMalformed, "kid is not a string")
		}
	}
	if v, present := header["typ"]; present {
		if t.typ, ok = v.(string); !ok {
			return invalid(ReasonMalformed, "typ is not a string")
		}
		t.hasTyp = true
	}
	return nil
}

// DecodeSegment decodes unpadded base64url (a JWS segment) strictly: no padding, no
// whitespace or line breaks (which the standard decoder skips), no
// non-canonical trailing bits, so one token has exactly one spelling.
func DecodeSegment(segment string) ([]byte, error) {
	for i := 0; i < len(segment); i++ {
		if !base64URLChar[segment[i]] {
			return nil, base64.CorruptInputError(i)
		}
	}
	return strictBase64.DecodeString(segment)
}

var base64URLChar = func() (table [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		table[c] = true
	}
	return table
}()

// checkTyp applies RFC 9068 §4: typ must be at+jwt (media types compare
// case-insensitively, RFC 7515 §4.1.9). IdPs that omit typ, or send the
// generic "JWT", are accepted only when the operator says so.
func checkTyp(t *unverifiedJWT, allowMissing bool) error {
	if !t.hasTyp {
		if allowMissing {
			return nil
		}
		return invalid(ReasonType, "typ missing")
	}
	switch strings.ToLower(t.typ) {
	case "at+jwt", "application/at+jwt":
		return nil
	case "jwt", "application/jwt":
		if allowMissing {
			return nil
		}
	}
	return invalid(ReasonType, "typ is not at+jwt")
}

// verifyJWT verifies a parsed token against its issuer's server.
func (s *server) verifyJWT(ctx context.Context, token string, t *unverifiedJWT, now time.Time) (*Principal, error) {
	if err := checkJOSE(token, t, s.algorithms, accessTokenTyp(s.config.AllowMissingTyp)); err != nil {
		return nil, err
	}
	state, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	if t.issuer != state.metadata.Issuer {
		return nil, invalid(ReasonIssuer, "")
	}
	keys, lookup := state.keys.find(t.keyID, t.algorithm)
	if lookup == keyUnknown {
		state = s.refreshKeys(ctx, state)
		keys, lookup = state.keys.find(t.keyID, t.algorithm)
	}
	if err := verifySignature(token, t, keys, lookup); err != nil {
		return nil, err
	}
	return principalFromClaims(t.claims, &claimRules{
		issuer:          state.metadata.Issuer,
		audiences:       s.config.ExpectedAudiences,
		relaxedAudience: s.config.RelaxedAudience,
		expiryRequired:  true,
		skew:            s.config.ClockSkew,
		groupsClaim:     s.config.GroupsClaim,
		method:          MethodJWT,
	}, now)
}

// checkJOSE applies the rules that need neither key nor issuer: a sound
// header, a signature present, alg on the allow-list, the typ of the kind
// of token.
func checkJOSE(token string, t *unverifiedJWT, algorithms []string, typ typRule) error {
	if t.headerErr != nil {
		return t.headerErr
	}
	if strings.HasSuffix(token, ".") {
		return invalid(ReasonSignature, "signature missing")
	}
	if !slices.Contains(algorithms, t.algorithm) {
		return invalid(ReasonAlgorithm, "alg not allowed")
	}
	return typ(t)
}

// typRule is what a kind of token must say in its typ header.
type typRule func(*unverifiedJWT) error

// accessTokenTyp is the rule of access tokens: at+jwt, or with
// allowMissing also JWT or no typ.
func accessTokenTyp(allowMissing bool) typRule {
	return func(t *unverifiedJWT) error { return checkTyp(t, allowMissing) }
}

// verifySignature checks the signature with the keys a lookup found.
func verifySignature(token string, t *unverifiedJWT, keys []*verificationKey, lookup keyLookup) error {
	switch lookup {
	case keyUnknown:
		return invalid(ReasonKeyID, "no matching key")
	case keyWrongType:
		return invalid(ReasonAlgorithm, "alg does not fit the key")
	case keyAmbiguous:
		return invalid(ReasonKeyID, "no kid and several keys fit")
	}
	signed, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(t.algorithm)})
	if err != nil || len(signed.Signatures) != 1 {
		return invalid(ReasonMalformed, "not a JWS")
	}
	for _, key := range keys {
		payload, err := signed.Verify(key.public)
		if err != nil {
			continue
		}
		// The claims were decoded from our own strict decoding of the same
		// segment; insist that they are the bytes the signature covers.
		if !bytes.Equal(payload, t.payload) {
			return invalid(ReasonMalformed, "payload mismatch")
		}
		return nil
	}
	return invalid(ReasonSignature, "")
}

// Errors of UnverifiedPayload.
var (
	ErrNotJWS          = errors.New("oauth: not a JWS compact serialization")
	ErrPayloadEncoding = errors.New("oauth: payload is not base64url")
	ErrPayloadObject   = errors.New("oauth: payload is not a JSON object")
)

// UnverifiedPayload decodes the claims of a JWS compact token with the
// strict decoders (DecodeSegment, DecodeObject) and checks nothing else:
// no signature, issuer or expiry. It is for reading what a token that is
// not for this process says (an identity provider's answer, what an
// upstream received), never for deciding whether to trust it.
func UnverifiedPayload(token string) (map[string]any, error) {
	_, rest, ok := strings.Cut(token, ".")
	payloadPart, signaturePart, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(signaturePart, ".") || len(token) > MaxTokenSize {
		return nil, ErrNotJWS
	}
	payload, err := DecodeSegment(payloadPart)
	if err != nil {
		return nil, ErrPayloadEncoding
	}
	claims, err := DecodeObject(payload)
	if err != nil {
		return nil, ErrPayloadObject
	}
	return claims, nil
}
