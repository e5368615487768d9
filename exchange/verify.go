package exchange

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

const (
	// MaxTokenSize is the largest token Verify looks at; the broker's own
	// tokens are a few hundred bytes.
	MaxTokenSize = oauth.MaxTokenSize
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
	Issuer    string
	Subject   string
	ClientID  string       // empty when the token has none
	Scope     string       // the scope claim as written, space-separated
	Scopes    []string     // Scope split on spaces
	Audience  []string     // aud, a string or an array in the token
	Actor     *oauth.Actor // act: the current actor, earlier ones nested inside
	MayAct    *MayAct      // may_act
	Expiry    time.Time
	IssuedAt  time.Time // zero when the token has no iat
	NotBefore time.Time // zero when the token has no nbf
	TokenID   string    // jti, empty when the token has none
	Claims    map[string]any
}

// verifyAlgorithms are the algorithms the broker mints with; no other
// verifies one of its tokens.
var verifyAlgorithms = []string{string(jose.EdDSA), string(jose.ES256)}

// Verify checks that token is an access token minted with one of these
// keys, active or retired, and returns its claims. Refusals are
// provider/oauth's *InvalidTokenError (errors.Is oauth.ErrInvalidToken,
// oauth.ReasonOf gives the reason, oauth.ReasonExpired when exp has
// passed); their text never contains any part of the token.
//
// The token must pass the rules of oauth.VerifyJWT, the rules the broker
// applies to every access token it accepts, with these keys, alg EdDSA or
// ES256, a kid, iss opts.Issuer exactly and, when opts.Audience is set, an aud
// that contains it. A may_act claim, when present, must name sub or
// client_id.
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
	rules := oauth.JWTRules{
		Issuer:       opts.Issuer,
		AnyAudience:  opts.Audience == "",
		Algorithms:   verifyAlgorithms,
		RequireKeyID: true,
		ClockSkew:    opts.ClockSkew,
	}
	if opts.Audience != "" {
		rules.Audiences = []string{opts.Audience}
	}
	principal, err := oauth.VerifyJWT(token, s.ring.Load().verify, rules, opts.Now())
	// A kid not known here may be of a key another broker sharing the
	// store just made.
	if oauth.ReasonOf(err) == oauth.ReasonKeyID && s.reloadIfStale(context.Background()) {
		principal, err = oauth.VerifyJWT(token, s.ring.Load().verify, rules, opts.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: verify: %w", err)
	}
	v := &VerifiedToken{
		Issuer:   principal.Issuer,
		Subject:  principal.Subject,
		ClientID: principal.ClientID,
		Audience: principal.Audience,
		Actor:    principal.Actor,
		Expiry:   principal.Expiry,
		IssuedAt: principal.IssuedAt,
		TokenID:  principal.TokenID,
		Claims:   principal.Claims,
	}
	// VerifyJWT has checked the types of scope and nbf already.
	v.Scope, _ = principal.Claims["scope"].(string)
	v.Scopes = strings.Fields(v.Scope)
	v.NotBefore, _ = oauth.NumericDate(principal.Claims, "nbf")
	if raw, present := principal.Claims["may_act"]; present {
		if v.MayAct, err = mayActClaim(raw); err != nil {
			return nil, fmt.Errorf("exchange: verify: %w", err)
		}
	}
	return v, nil
}

func mayActClaim(raw any) (*MayAct, error) {
	object, ok := raw.(map[string]any)
	if !ok {
		return nil, &oauth.InvalidTokenError{Reason: oauth.ReasonMalformed, Detail: "may_act is not an object"}
	}
	mayAct := &MayAct{}
	var err error
	if mayAct.Subject, err = oauth.StringClaim(object, "sub"); err != nil {
		return nil, err
	}
	if mayAct.ClientID, err = oauth.StringClaim(object, "client_id"); err != nil {
		return nil, err
	}
	if mayAct.Issuer, err = oauth.StringClaim(object, "iss"); err != nil {
		return nil, err
	}
	if mayAct.Subject == "" && mayAct.ClientID == "" {
		return nil, &oauth.InvalidTokenError{Reason: oauth.ReasonMalformed, Detail: "may_act names neither sub nor client_id"}
	}
	return mayAct, nil
}
