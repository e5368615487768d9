package exchange

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// OAuthError is an OAuth 2.0 error response (RFC 6749 §5.2): what the
// token endpoint answers when [Exchanger.Exchange] refuses a request, and
// what [Client.Exchange] returns when an identity provider refuses one.
//
// Code and Description are for the wire; Description is fixed text written
// by the broker (or, from a client, the provider's text with the request's
// tokens removed) and never contains a token. Cause is for logs only and
// is never sent.
type OAuthError struct {
	Code        string // error: invalid_request, invalid_target, ...
	Description string // error_description, may be empty
	Status      int    // HTTP status of the response
	Cause       error  // what went wrong inside, for server_error; not sent
}

// The error codes the token-exchange grant answers with (RFC 6749 §5.2,
// RFC 8693 §2.2.2). Compare with errors.Is, which matches on Code:
//
//	errors.Is(err, exchange.ErrInvalidTarget)
//
// and read the description with errors.As. Derive a response with
// [OAuthError.WithDescription]; never change these values.
var (
	ErrInvalidRequest     = &OAuthError{Code: "invalid_request", Status: http.StatusBadRequest}
	ErrInvalidTarget      = &OAuthError{Code: "invalid_target", Status: http.StatusBadRequest}
	ErrInvalidScope       = &OAuthError{Code: "invalid_scope", Status: http.StatusBadRequest}
	ErrInvalidGrant       = &OAuthError{Code: "invalid_grant", Status: http.StatusBadRequest}
	ErrUnauthorizedClient = &OAuthError{Code: "unauthorized_client", Status: http.StatusBadRequest}
	ErrInvalidClient      = &OAuthError{Code: "invalid_client", Status: http.StatusUnauthorized}
	ErrServerError        = &OAuthError{Code: "server_error", Status: http.StatusInternalServerError}
)

// WithDescription returns a copy of e with the description set from
// format and args. Arguments must never be tokens or token content.
func (e *OAuthError) WithDescription(format string, args ...any) *OAuthError {
	copied := *e
	copied.Description = fmt.Sprintf(format, args...)
	return &copied
}

// WithCause returns a copy of e that records cause for logs.
func (e *OAuthError) WithCause(cause error) *OAuthError {
	copied := *e
	copied.Cause = cause
	return &copied
}

func (e *OAuthError) Error() string {
	message := "exchange: " + e.Code
	if e.Description != "" {
		message += ": " + e.Description
	}
	if e.Cause != nil {
		message += ": " + e.Cause.Error()
	}
	return message
}

// Unwrap returns the cause, if any.
func (e *OAuthError) Unwrap() error { return e.Cause }

// Is matches another *OAuthError with the same code, so that the code
// variables above work with errors.Is.
func (e *OAuthError) Is(target error) bool {
	t, ok := target.(*OAuthError)
	return ok && t.Code == e.Code
}

// HTTPStatus is Status, or 400 when it is not set.
func (e *OAuthError) HTTPStatus() int {
	if e.Status == 0 {
		return http.StatusBadRequest
	}
	return e.Status
}

// MarshalJSON encodes the response body: error and, when set,
// error_description. Status and Cause are not part of it.
func (e *OAuthError) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Code        string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
}
