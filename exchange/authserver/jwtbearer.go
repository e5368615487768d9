package authserver

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// The JWT bearer grant (RFC 7523) with Identity Assertion JWT
// Authorization Grants (ID-JAG, draft-ietf-oauth-identity-assertion-authz-
// grant, MCP's enterprise-managed authorization): a client that holds an
// ID-JAG a trusted identity provider issued for this server redeems it for
// an access token for the user it names, without a sign-in here.

// GrantJWTBearer is the grant type.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// DefaultIDJAGMaxLifetime bounds exp - iat of the ID-JAGs taken.
const DefaultIDJAGMaxLifetime = 5 * time.Minute

// bucketIDJAGSeen: issuer, 0, jti → until when (unix seconds, big endian)
// the ID-JAG would be good; a jti seen before is a replay.
var bucketIDJAGSeen = []byte("authserver_idjag_seen")

// jwtBearerHandler takes ID-JAGs at the token endpoint.
type jwtBearerHandler struct {
	s       *Server
	issuers []*federation
	helper  *oauth2.HandleHelper
	maxLife time.Duration
}

var _ fosite.TokenEndpointHandler = (*jwtBearerHandler)(nil)

func (h *jwtBearerHandler) CanHandleTokenEndpointRequest(_ context.Context, request fosite.AccessRequester) bool {
	return request.GetGrantTypes().ExactOne(GrantJWTBearer)
}

func (h *jwtBearerHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

// badAssertion is the invalid_grant of a rule the assertion breaks.
func badAssertion(description string) error {
	return fosite.ErrInvalidGrant.WithHint(description)
}

func (h *jwtBearerHandler) HandleTokenEndpointRequest(ctx context.Context, request fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, request) {
		return fosite.ErrUnknownRequest
	}
	c := request.GetClient()
	if !c.GetGrantTypes().Has(GrantJWTBearer) {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not allowed the JWT bearer grant.")
	}
	assertion := request.GetRequestForm().Get("assertion")
	if assertion == "" {
		return fosite.ErrInvalidRequest.WithHint("The assertion parameter is required.")
	}
	unverified, err := oauth.UnverifiedPayload(assertion)
	if err != nil {
		return badAssertion("The assertion is not a JWT.")
	}
	iss, _ := unverified["iss"].(string)
	f, idp := h.issuer(ctx, iss)
	if f == nil {
		return badAssertion("The assertion's issuer is not trusted for identity assertion grants.")
	}
	rules := oauth.IDJAGRules{Issuer: iss, Audience: h.s.issuer, Resources: h.s.audiences, ClientID: c.GetID(), MaxLifetime: h.maxLife}
	now := h.s.now()
	g, err := oauth.VerifyIDJAG(assertion, f.verificationKeys(ctx, idp, false), rules, now)
	if oauth.ReasonOf(err) == oauth.ReasonKeyID {
		g, err = oauth.VerifyIDJAG(assertion, f.verificationKeys(ctx, idp, true), rules, now)
	}
	if err != nil {
		var invalid *oauth.InvalidTokenError
		if errors.As(err, &invalid) {
			return badAssertion("The identity assertion is not acceptable: " + strings.TrimPrefix(invalid.Error(), "oauth: invalid token: ") + ".")
		}
		return badAssertion("The identity assertion is not acceptable.")
	}
	scopes := g.Scopes
	if requested := request.GetRequestedScopes(); len(requested) > 0 {
		// The client may ask for less than the assertion grants, not more.
		for _, scope := range requested {
			if !slices.Contains(g.Scopes, scope) {
				return badAssertion("The scope '" + scope + "' is not in the identity assertion.")
			}
		}
		scopes = requested
	}
	for _, scope := range scopes {
		if !slices.Contains(c.GetScopes(), scope) {
			return badAssertion("The scope '" + scope + "' is beyond what the client may have.")
		}
	}
	if fresh, err := h.s.store.spendAssertion(iss, g.ID, g.Expiry.Add(time.Minute)); err != nil {
		return err
	} else if !fresh {
		return badAssertion("The identity assertion was used before (its jti was seen).")
	}
	sess, _ := request.GetSession().(*session)
	if sess == nil {
		return fosite.ErrServerError.WithHint("No session for the grant.")
	}
	// The user is the issuer's: qualified by it, as the broker qualifies
	// users of other issuers ("<iss>|<sub>"), so that two trusted
	// identity providers' users of the same name stay apart.
	sess.Subject, sess.Username = iss+"|"+g.Subject, g.Subject
	if name, ok := g.Claims["name"].(string); ok {
		sess.Name = name
	}
	if email, ok := g.Claims["email"].(string); ok {
		sess.Email = email
	}
	for _, scope := range scopes {
		request.GrantScope(scope)
	}
	request.GrantAudience(g.Resource)
	return nil
}

func (h *jwtBearerHandler) PopulateTokenEndpointResponse(ctx context.Context, request fosite.AccessRequester, response fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, request) {
		return fosite.ErrUnknownRequest
	}
	// An access token only: no refresh token.
	_, err := h.helper.IssueAccessToken(ctx, h.s.config.GetAccessTokenLifespan(ctx), request, response)
	return err
}

// issuer is the trusted identity provider whose issuer is iss, with its
// metadata; nil when none is.
func (h *jwtBearerHandler) issuer(ctx context.Context, iss string) (*federation, *idpMetadata) {
	if iss == "" {
		return nil, nil
	}
	for _, f := range h.issuers {
		idp, err := f.metadata(ctx)
		if err != nil {
			h.s.logger.Warn("authserver: an identity assertion issuer cannot be reached", "discovery", f.config.DiscoveryURL, "error", err)
			continue
		}
		if idp.Issuer == iss {
			return f, idp
		}
	}
	return nil, nil
}

// spendAssertion records that the ID-JAG iss issued as jti was used; false
// when it had been before. Kept until until.
func (st *store) spendAssertion(iss, jti string, until time.Time) (bool, error) {
	key := iss + "\x00" + jti
	fresh := false
	err := st.kv.update(func(tx kvTx) error {
		seen, err := tx.get(bucketIDJAGSeen, key)
		if err != nil {
			return err
		}
		if seen != nil {
			fresh = false
			return nil
		}
		fresh = true
		return tx.put(bucketIDJAGSeen, key, binary.BigEndian.AppendUint64(nil, uint64(until.Unix())), until)
	})
	return fresh, err
}
