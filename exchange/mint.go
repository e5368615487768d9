package exchange

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Grant is what one token is minted for.
type Grant struct {
	Subject  string        // sub: the user
	ClientID string        // client_id: the agent's OAuth client
	Audience string        // aud: the upstream app, a single string
	Scopes   []string      // scope: the tool's scopes, scope tokens (RFC 6749 §3.3); may be empty
	TTL      time.Duration // lifetime, whole seconds in [1s, the keys' MaxTokenTTL]
	// Actor is the act chain, outermost (current) actor first. It is put
	// in the token only for delegation; impersonation ignores it.
	Actor      *oauth.Actor
	Delegation bool
	// Extra claims, optional; they may not set a claim the minter sets.
	Extra map[string]any
}

// Claims are the claims of a minted token. Actor and Extra are the
// grant's own, not copies.
type Claims struct {
	Issuer   string
	Subject  string
	Audience string
	Scope    string // space-separated
	ClientID string
	Actor    *oauth.Actor // nil for impersonation
	Expiry   time.Time
	IssuedAt time.Time
	TokenID  string // jti: 128 random bits, base64url
	Extra    map[string]any
}

// claimsJSON is Claims as encoded: a struct, so that encoding needs no map
// and the field order is fixed. nbf is omitted; it would equal iat.
type claimsJSON struct {
	Issuer   string       `json:"iss"`
	Subject  string       `json:"sub"`
	Audience string       `json:"aud"`
	Scope    string       `json:"scope,omitempty"`
	ClientID string       `json:"client_id"`
	Actor    *oauth.Actor `json:"act,omitempty"`
	Expiry   int64        `json:"exp"`
	IssuedAt int64        `json:"iat"`
	TokenID  string       `json:"jti"`
}

// registeredClaims are the claims Extra may not set: the ones Mint writes,
// and nbf, which Mint leaves out on purpose.
var registeredClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "scope": true, "client_id": true,
	"act": true, "exp": true, "iat": true, "nbf": true, "jti": true,
}

// MinterOptions configure a [Minter].
type MinterOptions struct {
	// Issuer is the iss of every token: the authProvider issuer. Required.
	Issuer string
	// Algorithm is EdDSA or ES256; default ES256, which more JWT libraries
	// verify than EdDSA.
	Algorithm jose.SignatureAlgorithm
	// Now: default time.Now.
	Now func() time.Time
}

// Minter makes RFC 9068 access tokens in process, signed with the active
// key of a [KeySet]. It is safe for concurrent use.
type Minter struct {
	keys      *KeySet
	issuer    string
	algorithm jose.SignatureAlgorithm
	now       func() time.Time
}

// NewMinter returns a Minter for keys.
func NewMinter(keys *KeySet, options MinterOptions) (*Minter, error) {
	if options.Issuer == "" {
		return nil, errors.New("exchange: minter needs an issuer")
	}
	if options.Algorithm == "" {
		options.Algorithm = jose.ES256
	}
	if _, err := keys.Active(options.Algorithm); err != nil {
		return nil, err
	}
	if options.Now == nil {
		options.Now = time.Now
	}
	return &Minter{keys: keys, issuer: options.Issuer, algorithm: options.Algorithm, now: options.Now}, nil
}

// Issuer is the iss of the tokens m mints.
func (m *Minter) Issuer() string { return m.issuer }

// Mint validates grant and returns a signed access token and its claims.
// ctx is unused: minting is in-process CPU work that finishes in
// microseconds.
func (m *Minter) Mint(_ context.Context, grant Grant) (string, Claims, error) {
	if err := m.validate(&grant); err != nil {
		return "", Claims{}, fmt.Errorf("exchange: mint for %q: %w", grant.Audience, err)
	}
	signer, err := m.keys.Active(m.algorithm)
	if err != nil {
		return "", Claims{}, err
	}
	issuedAt := m.now().Unix()
	expiry := issuedAt + int64(grant.TTL/time.Second)
	wire := claimsJSON{
		Issuer:   m.issuer,
		Subject:  grant.Subject,
		Audience: grant.Audience,
		Scope:    strings.Join(grant.Scopes, " "),
		ClientID: grant.ClientID,
		Expiry:   expiry,
		IssuedAt: issuedAt,
		TokenID:  newTokenID(),
	}
	if grant.Delegation {
		wire.Actor = grant.Actor
	}
	payload, err := encodeClaims(&wire, grant.Extra)
	if err != nil {
		return "", Claims{}, fmt.Errorf("exchange: mint for %q: %w", grant.Audience, err)
	}
	token, err := signer.Sign(TypeAccessToken, payload)
	if err != nil {
		return "", Claims{}, err
	}
	return token, Claims{
		Issuer:   wire.Issuer,
		Subject:  wire.Subject,
		Audience: wire.Audience,
		Scope:    wire.Scope,
		ClientID: wire.ClientID,
		Actor:    wire.Actor,
		Expiry:   time.Unix(expiry, 0),
		IssuedAt: time.Unix(issuedAt, 0),
		TokenID:  wire.TokenID,
		Extra:    grant.Extra,
	}, nil
}

func (m *Minter) validate(grant *Grant) error {
	// Whole seconds keep exp - iat equal to the TTL asked for; a fraction
	// would be rounded one way or the other without anyone noticing.
	if grant.TTL < time.Second || grant.TTL > m.keys.MaxTokenTTL() || grant.TTL%time.Second != 0 {
		return fmt.Errorf("%w: %s", ErrTTL, grant.TTL)
	}
	if grant.Subject == "" {
		return ErrNoSubject
	}
	if grant.Audience == "" {
		return ErrNoAudience
	}
	if grant.ClientID == "" {
		return ErrNoClientID
	}
	for _, scope := range grant.Scopes {
		if !IsScopeToken(scope) {
			return fmt.Errorf("%w: %q", ErrScope, scope)
		}
	}
	if grant.Delegation {
		if grant.Actor == nil {
			return ErrActor
		}
		for depth, actor := 1, grant.Actor; actor != nil; depth, actor = depth+1, actor.Actor {
			if depth > oauth.MaxActorDepth || (actor.Subject == "" && actor.ClientID == "") {
				return ErrActor
			}
		}
	}
	for name := range grant.Extra {
		if registeredClaims[name] {
			return fmt.Errorf("%w: %q", ErrExtraClaim, name)
		}
	}
	return nil
}

// IsScopeToken reports whether s is a scope-token: 1*( %x21 / %x23-5B / %x5D-7E ),
// printable ASCII except space, double quote and backslash.
func IsScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// encodeClaims encodes the registered claims from the struct and, when
// there are extra claims, splices their members in after them.
func encodeClaims(wire *claimsJSON, extra map[string]any) ([]byte, error) {
	payload, err := json.Marshal(wire)
	if err != nil || len(extra) == 0 {
		return payload, err
	}
	members, err := json.Marshal(extra)
	if err != nil {
		return nil, fmt.Errorf("extra claims: %w", err)
	}
	// payload ends in '}', members is "{...}" and not empty.
	payload = append(payload[:len(payload)-1], ',')
	return append(payload, members[1:]...), nil
}

// newTokenID returns 128 random bits, base64url: a jti that never repeats.
func newTokenID() string {
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails; it crashes the program instead
	return base64url.EncodeToString(id[:])
}
