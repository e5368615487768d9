package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// idTokenAlgorithm signs ID tokens: ES256, which every OpenID Connect
// library verifies, whatever algorithm the access tokens use.
const idTokenAlgorithm = string(jose.ES256)

// scopeOpenID asks for an ID token (OpenID Connect Core §3.1.2.1).
const scopeOpenID = "openid"

// idTokenHandler adds an ID token to the response of an authorization
// code exchange whose grant includes the openid scope. The claims come
// from the session fixed at sign-in: sub, name, email, groups, auth_time
// and the request's nonce; at_hash binds it to the access token beside it.
type idTokenHandler struct {
	keys   *exchange.KeySet
	issuer string
	now    func() time.Time
}

var _ fosite.TokenEndpointHandler = (*idTokenHandler)(nil)

type idTokenClaims struct {
	Issuer          string   `json:"iss"`
	Subject         string   `json:"sub"`
	Audience        string   `json:"aud"`
	Expiry          int64    `json:"exp"`
	IssuedAt        int64    `json:"iat"`
	AuthTime        int64    `json:"auth_time,omitempty"`
	Nonce           string   `json:"nonce,omitempty"`
	AccessTokenHash string   `json:"at_hash,omitempty"`
	Name            string   `json:"name,omitempty"`
	Email           string   `json:"email,omitempty"`
	Groups          []string `json:"groups,omitempty"`
}

func (h *idTokenHandler) CanHandleTokenEndpointRequest(_ context.Context, request fosite.AccessRequester) bool {
	return request.GetGrantTypes().ExactOne(GrantAuthorizationCode)
}

func (h *idTokenHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

// HandleTokenEndpointRequest leaves the request to the authorization code
// handler.
func (h *idTokenHandler) HandleTokenEndpointRequest(context.Context, fosite.AccessRequester) error {
	return fosite.ErrUnknownRequest
}

func (h *idTokenHandler) PopulateTokenEndpointResponse(_ context.Context, request fosite.AccessRequester, response fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(context.Background(), request) || !request.GetGrantedScopes().Has(scopeOpenID) {
		return fosite.ErrUnknownRequest
	}
	sess, ok := request.GetSession().(*session)
	if !ok {
		return fosite.ErrServerError.WithDebugf("unexpected session type %T", request.GetSession())
	}
	now := h.now()
	claims := idTokenClaims{
		Issuer:   h.issuer,
		Subject:  sess.Subject,
		Audience: request.GetClient().GetID(),
		Expiry:   now.Add(idTokenTTL).Unix(),
		IssuedAt: now.Unix(),
		Nonce:    sess.Nonce,
		Name:     sess.Name,
		Email:    sess.Email,
		Groups:   sess.Groups,
	}
	if !sess.AuthTime.IsZero() {
		claims.AuthTime = sess.AuthTime.Unix()
	}
	if access := response.GetAccessToken(); access != "" {
		sum := sha256.Sum256([]byte(access))
		claims.AccessTokenHash = base64.RawURLEncoding.EncodeToString(sum[:sha256.Size/2])
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	signer, err := h.keys.Active(jose.ES256)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	token, err := signer.Sign("JWT", payload)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	response.SetExtra("id_token", token)
	return nil
}
