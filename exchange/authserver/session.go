package authserver

import (
	"maps"
	"slices"
	"time"

	"github.com/ory/fosite"
)

// session is what fosite carries from the authorization to every token of
// a grant: who the subject is and when each token expires. It is stored
// with every code and token record as JSON.
type session struct {
	Subject  string   `json:"sub"`
	Username string   `json:"username,omitempty"`
	Name     string   `json:"name,omitempty"`
	Email    string   `json:"email,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	// AuthTime is when the user signed in; zero for client credentials.
	AuthTime time.Time `json:"auth_time,omitzero"`
	// Local marks the grant of a local user, which ends when the user is
	// no longer configured.
	Local bool `json:"local,omitempty"`
	// Nonce is the OpenID Connect nonce of the authorization request,
	// repeated in the ID token.
	Nonce     string                         `json:"nonce,omitempty"`
	ExpiresAt map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
	// TokenID is the jti of the access token minted last under this
	// session: for an access-token record, that token's.
	TokenID string `json:"jti,omitempty"`
}

var _ fosite.Session = (*session)(nil)

func (s *session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = make(map[fosite.TokenType]time.Time)
	}
	s.ExpiresAt[key] = exp
}

func (s *session) GetExpiresAt(key fosite.TokenType) time.Time {
	return s.ExpiresAt[key]
}

func (s *session) GetUsername() string {
	if s == nil {
		return ""
	}
	return s.Username
}

func (s *session) GetSubject() string {
	if s == nil {
		return ""
	}
	return s.Subject
}

func (s *session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	clone := *s
	clone.Groups = slices.Clone(s.Groups)
	clone.ExpiresAt = maps.Clone(s.ExpiresAt)
	return &clone
}

// extraClaims are the access token's claims beyond RFC 9068's: the user's
// name, email and groups, for policies that decide on them.
func (s *session) extraClaims() map[string]any {
	extra := map[string]any{}
	if s.Name != "" {
		extra["name"] = s.Name
	}
	if s.Email != "" {
		extra["email"] = s.Email
	}
	if len(s.Groups) > 0 {
		extra["groups"] = s.Groups
	}
	if len(extra) == 0 {
		return nil
	}
	return extra
}
