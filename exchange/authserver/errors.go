package authserver

import (
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// errInvalidTarget is RFC 8707 §2's error for a resource the client may not
// have a token for; fosite has no such error.
var errInvalidTarget = &fosite.RFC6749Error{
	ErrorField:       "invalid_target",
	DescriptionField: "The requested resource is invalid, unknown, or not allowed for this client.",
	CodeField:        http.StatusBadRequest,
}

// oauthErrorToFosite turns the exchanger's refusal into the error fosite
// writes: the same code, description and status, and nothing else. Any
// other error is a server error whose detail stays in the logs.
func oauthErrorToFosite(err error) *fosite.RFC6749Error {
	var refusal *exchange.OAuthError
	if !errors.As(err, &refusal) {
		return fosite.ErrServerError.WithWrap(err)
	}
	rfc := &fosite.RFC6749Error{
		ErrorField:       refusal.Code,
		DescriptionField: refusal.Description,
		CodeField:        refusal.HTTPStatus(),
	}
	if refusal.Cause != nil {
		rfc = rfc.WithWrap(refusal.Cause)
	}
	return rfc
}
