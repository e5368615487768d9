package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// introspect asks the server's introspection endpoint about token (RFC
// 7662) and applies the same claim checks as for JWTs, except that iss,
// aud and exp are checked only when the response has them. It returns how
// long a positive answer may be cached: IntrospectionCacheTTL, never past
// exp.
func (s *server) introspect(ctx context.Context, token string, now time.Time) (*Principal, time.Time, error) {
	state, err := s.ready(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	body, status, err := s.verifier.fetcher.PostForm(ctx, state.metadata.IntrospectionEndpoint, form, s.config.ClientID, s.config.ClientSecret)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("oauth: introspection failed", "issuer", state.metadata.Issuer, "error", err)
		}
		return nil, time.Time{}, s.unavailable(err)
	}
	if status != http.StatusOK {
		// 401/403 mean our own client credentials are wrong: an operator
		// problem, not a verdict on the token.
		err := fmt.Errorf("introspection: %w %d", ErrHTTPStatus, status)
		s.logger.Warn("oauth: introspection failed", "issuer", state.metadata.Issuer, "error", err)
		return nil, time.Time{}, s.unavailable(err)
	}
	response, err := DecodeObject(body)
	if err != nil {
		err = fmt.Errorf("introspection response: %w", err)
		s.logger.Warn("oauth: introspection failed", "issuer", state.metadata.Issuer, "error", err)
		return nil, time.Time{}, s.unavailable(err)
	}
	active, ok := response["active"].(bool)
	if !ok {
		err := errors.New("introspection response: active is not a boolean")
		s.logger.Warn("oauth: introspection failed", "issuer", state.metadata.Issuer, "error", err)
		return nil, time.Time{}, s.unavailable(err)
	}
	if !active {
		return nil, time.Time{}, invalid(ReasonInactive, "")
	}
	if err := checkIntrospectedTokenType(response); err != nil {
		return nil, time.Time{}, err
	}
	principal, err := principalFromClaims(response, &claimRules{
		issuer:           state.metadata.Issuer,
		audiences:        s.config.ExpectedAudiences,
		relaxedAudience:  s.config.RelaxedAudience,
		audienceOptional: true,
		skew:             s.config.ClockSkew,
		groupsClaim:      s.config.GroupsClaim,
		method:           MethodIntrospection,
	}, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	var until time.Time
	if s.config.IntrospectionCacheTTL > 0 {
		until = now.Add(s.config.IntrospectionCacheTTL)
		if !principal.Expiry.IsZero() && principal.Expiry.Before(until) {
			until = principal.Expiry
		}
	}
	return principal, until, nil
}

// checkIntrospectedTokenType refuses refresh tokens and other non-access
// tokens an AS may report as active. token_type is optional (RFC 7662
// §2.2); when present it is a token_type (RFC 6749 §7.1, "Bearer") or a
// token type URI.
func checkIntrospectedTokenType(response map[string]any) error {
	v, present := response["token_type"]
	if !present {
		return nil
	}
	tokenType, ok := v.(string)
	if !ok {
		return invalid(ReasonMalformed, "token_type is not a string")
	}
	switch strings.ToLower(tokenType) {
	case "bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token":
		return nil
	}
	return invalid(ReasonTokenType, "introspection says this is not a bearer access token")
}
