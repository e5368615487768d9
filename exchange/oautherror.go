package exchange

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ory/fosite"
)

// OAuthError is an OAuth 2.0 error response (RFC 6749 §5.2): what the
// token endpoint answers when [Exchanger.Exchange] refuses a request, and
// what [Client.Exchange] returns when an identity provider refuses one. It
// is fosite's error, so the embedded authorization server writes the
// exchanger's refusals as they are.
//
// ErrorField and DescriptionField are for the wire; the description is
// fixed text written by the broker (or, from a client, the provider's text
// with the request's tokens removed) and never contains a token. A wrapped
// cause (WithWrap) is for logs only and is never sent.
type OAuthError = fosite.RFC6749Error

// The error codes the token-exchange grant answers with (RFC 6749 §5.2,
// RFC 8693 §2.2.2). Compare with errors.Is, which matches on code and
// status:
//
//	errors.Is(err, exchange.ErrInvalidTarget)
//
// and read the description with errors.As. Derive a response with
// [refusal] or the error's With methods; never change these values.
var (
	ErrInvalidRequest = fosite.ErrInvalidRequest
	// ErrInvalidTarget is RFC 8707 §2's error for a resource the client
	// may not have a token for; fosite has no such error.
	ErrInvalidTarget = &fosite.RFC6749Error{
		ErrorField:       "invalid_target",
		DescriptionField: "The requested resource is invalid, unknown, or not allowed for this client.",
		CodeField:        http.StatusBadRequest,
	}
	ErrInvalidScope       = fosite.ErrInvalidScope
	ErrInvalidGrant       = fosite.ErrInvalidGrant
	ErrUnauthorizedClient = fosite.ErrUnauthorizedClient
	ErrInvalidClient      = fosite.ErrInvalidClient
	ErrServerError        = fosite.ErrServerError
)

// refusal is base described by format and args, which must never be
// tokens or token content.
func refusal(base *OAuthError, format string, args ...any) *OAuthError {
	return base.WithDescription(fmt.Sprintf(format, args...))
}

// Describe is err's text for logs and the command line. An OAuth error's
// own text is its code alone; Describe adds its description.
func Describe(err error) string {
	var refused *OAuthError
	if errors.As(err, &refused) && refused.DescriptionField != "" {
		return refused.ErrorField + ": " + refused.GetDescription()
	}
	return err.Error()
}
