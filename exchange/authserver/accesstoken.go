package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// tokenStrategy makes the codes and tokens fosite hands out: access tokens
// are RFC 9068 JWTs from the minter, so that resource servers verify them
// with the published keys alone; refresh tokens and authorization codes
// are fosite's HMAC tokens, meaningful only here.
type tokenStrategy struct {
	*oauth2.HMACSHAStrategyUnPrefixed
	minter *exchange.Minter
	keys   *exchange.KeySet
	issuer string
	ttl    time.Duration
	now    func() time.Time
}

var _ oauth2.CoreStrategy = (*tokenStrategy)(nil)

// AccessTokenSignature is what access tokens are stored under: the
// SHA-256 of the JWT, so that the database holds nothing a token can be
// rebuilt from. Anything that is not a JWT has none.
func (t *tokenStrategy) AccessTokenSignature(_ context.Context, token string) string {
	if strings.Count(token, ".") != 2 {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// GenerateAccessToken mints the access token for requester's grant: its
// subject, client, single granted audience and granted scopes, with the
// subject's name, email and groups as extra claims. The session's access
// token expiry and jti become the token's.
func (t *tokenStrategy) GenerateAccessToken(ctx context.Context, requester fosite.Requester) (string, string, error) {
	sess, ok := requester.GetSession().(*session)
	if !ok {
		return "", "", fmt.Errorf("authserver: unexpected session type %T", requester.GetSession())
	}
	audiences := requester.GetGrantedAudience()
	if len(audiences) != 1 {
		return "", "", fmt.Errorf("authserver: a token has exactly one audience, the grant has %d", len(audiences))
	}
	token, claims, err := t.minter.Mint(ctx, exchange.Grant{
		Subject:  sess.Subject,
		ClientID: requester.GetClient().GetID(),
		Audience: audiences[0],
		Scopes:   requester.GetGrantedScopes(),
		TTL:      t.ttl,
		Extra:    sess.extraClaims(),
	})
	if err != nil {
		return "", "", err
	}
	sess.SetExpiresAt(fosite.AccessToken, claims.Expiry.UTC())
	sess.TokenID = claims.TokenID
	return token, t.AccessTokenSignature(ctx, token), nil
}

// ValidateAccessToken checks a stored access token: still unexpired by the
// record, and a JWT that verifies with the published keys.
func (t *tokenStrategy) ValidateAccessToken(_ context.Context, requester fosite.Requester, token string) error {
	if exp := requester.GetSession().GetExpiresAt(fosite.AccessToken); !exp.IsZero() && exp.Before(t.now()) {
		return fosite.ErrTokenExpired.WithHintf("Access token expired at '%s'.", exp)
	}
	if _, err := t.keys.Verify(token, exchange.VerifyOptions{Issuer: t.issuer, Now: t.now}); err != nil {
		if oauth.ReasonOf(err) == oauth.ReasonExpired {
			return fosite.ErrTokenExpired.WithWrap(err)
		}
		return fosite.ErrTokenSignatureMismatch.WithWrap(err)
	}
	return nil
}
