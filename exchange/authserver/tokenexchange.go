package authserver

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// tokenExchangeHandler serves the token-exchange grant (RFC 8693) at the
// token endpoint. fosite has authenticated the client; the handler admits
// confidential clients allowed the grant and leaves the exchange itself,
// limited to the client's audiences and scopes and to subject tokens for
// its subject audiences, to the exchanger.
type tokenExchangeHandler struct {
	server    *Server
	exchanger TokenExchanger
	// audiences are the server's: the subject audiences of a client that
	// names none, the resources agents get tokens for.
	audiences []string
}

var _ fosite.TokenEndpointHandler = (*tokenExchangeHandler)(nil)

func (h *tokenExchangeHandler) CanHandleTokenEndpointRequest(_ context.Context, request fosite.AccessRequester) bool {
	return request.GetGrantTypes().ExactOne(GrantTokenExchange)
}

func (h *tokenExchangeHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

func (h *tokenExchangeHandler) HandleTokenEndpointRequest(ctx context.Context, request fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, request) {
		return fosite.ErrUnknownRequest
	}
	c := request.GetClient()
	if c.IsPublic() {
		return fosite.ErrUnauthorizedClient.WithHint("Public clients may not use the token-exchange grant.")
	}
	if !c.GetGrantTypes().Has(GrantTokenExchange) {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not allowed the token-exchange grant.")
	}
	return nil
}

func (h *tokenExchangeHandler) PopulateTokenEndpointResponse(ctx context.Context, request fosite.AccessRequester, response fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, request) {
		return fosite.ErrUnknownRequest
	}
	form := request.GetRequestForm()
	if form.Get("requested_token_type") == TokenTypeIDJAG {
		return h.server.issueIDJAG(ctx, request, response)
	}
	c := request.GetClient()
	subjectAudiences := h.audiences
	if stored, ok := c.(*client); ok && len(stored.SubjectAudiences) > 0 {
		subjectAudiences = stored.SubjectAudiences
	}
	var lifetime time.Duration
	if raw := form.Get(exchange.ParamRequestedLifetime); raw != "" {
		seconds, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || seconds < 1 || seconds > int64(exchange.MaxTTL/time.Second) {
			return fosite.ErrInvalidRequest.WithHintf("%s must be a whole number of seconds from 1 to %d.", exchange.ParamRequestedLifetime, int64(exchange.MaxTTL/time.Second))
		}
		lifetime = time.Duration(seconds) * time.Second
	}
	result, err := h.exchanger.Exchange(ctx, exchange.ExchangeClient{
		ID:               c.GetID(),
		Audiences:        c.GetAudience(),
		SubjectAudiences: subjectAudiences,
		Scopes:           c.GetScopes(),
	}, exchange.ExchangeRequest{
		SubjectToken:       form.Get("subject_token"),
		SubjectTokenType:   form.Get("subject_token_type"),
		ActorToken:         form.Get("actor_token"),
		ActorTokenType:     form.Get("actor_token_type"),
		RequestedTokenType: form.Get("requested_token_type"),
		Audiences:          form["audience"],
		Resources:          form["resource"],
		Scopes:             strings.Fields(form.Get("scope")),
		Lifetime:           lifetime,
	})
	if refusal := (*fosite.RFC6749Error)(nil); errors.As(err, &refusal) {
		// The exchanger refuses in fosite's terms, written as they are.
		return refusal
	} else if err != nil {
		// Anything else is a server error whose detail stays in the logs.
		return fosite.ErrServerError.WithWrap(err)
	}
	response.SetAccessToken(result.AccessToken)
	response.SetTokenType(result.TokenType)
	response.SetExtra("issued_token_type", result.IssuedTokenType)
	if result.ExpiresIn > 0 {
		response.SetExtra("expires_in", result.ExpiresIn)
	}
	if result.ScopeChanged {
		response.SetExtra("scope", result.Scope)
	}
	return nil
}
