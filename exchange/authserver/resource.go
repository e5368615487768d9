package authserver

import (
	"context"
	"github.com/mcpbroker/mcpbroker/exchange"
	"slices"

	"github.com/ory/fosite"
)

// resourceHandler applies resource indicators (RFC 8707) at the token
// endpoint and completes the client_credentials grant. It runs after
// fosite's own handlers have checked the request.
//
//   - authorization_code, refresh_token: the token's audience was fixed
//     at authorization; a resource the request names must be that one
//     (invalid_target otherwise).
//   - client_credentials: the audience is the resource named, which the
//     client must be allowed, else the default; the client is the subject,
//     with its configured groups, and gets the scopes it asked for.
type resourceHandler struct {
	audiences []string
}

var _ fosite.TokenEndpointHandler = (*resourceHandler)(nil)

func (h *resourceHandler) CanHandleTokenEndpointRequest(_ context.Context, request fosite.AccessRequester) bool {
	grants := request.GetGrantTypes()
	return grants.ExactOne(GrantAuthorizationCode) || grants.ExactOne(GrantRefreshToken) || grants.ExactOne(GrantClientCredentials)
}

func (h *resourceHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

func (h *resourceHandler) HandleTokenEndpointRequest(_ context.Context, request fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(context.Background(), request) {
		return fosite.ErrUnknownRequest
	}
	requested := targets(request.GetRequestForm())
	if request.GetGrantTypes().ExactOne(GrantClientCredentials) {
		audience, err := resolveAudience(requested, request.GetClient().GetAudience(), h.audiences[0])
		if err != nil {
			return err
		}
		request.GrantAudience(audience)
		for _, scope := range request.GetRequestedScopes() {
			request.GrantScope(scope)
		}
		sess, ok := request.GetSession().(*session)
		if !ok {
			return fosite.ErrServerError.WithDebugf("unexpected session type %T", request.GetSession())
		}
		sess.Subject = request.GetClient().GetID()
		if c, ok := request.GetClient().(*client); ok {
			sess.Groups = slices.Clone(c.Groups)
		}
		return nil
	}

	// The audience of the grant: on a code, what the authorization asked
	// for; on a refresh, what the grant holds.
	granted := request.GetGrantedAudience()
	if request.GetGrantTypes().ExactOne(GrantAuthorizationCode) {
		granted = request.GetRequestedAudience()
	}
	for _, target := range requested {
		if !slices.Contains(granted, target) {
			return exchange.ErrInvalidTarget.WithHint("The resource is not the one this grant was authorized for.")
		}
	}
	return nil
}

func (h *resourceHandler) PopulateTokenEndpointResponse(context.Context, fosite.AccessRequester, fosite.AccessResponder) error {
	return fosite.ErrUnknownRequest
}
