package exchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestOAuthError(t *testing.T) {
	cause := errors.New("disk full")
	tests := []struct {
		name       string
		err        error
		is         *OAuthError
		isNot      *OAuthError
		wantJSON   string
		wantStatus int
		wantText   string
	}{
		{
			name: "described", err: ErrInvalidTarget.WithDescription("audience %q is not allowed", "https://x.example/"),
			is: ErrInvalidTarget, isNot: ErrInvalidRequest,
			wantJSON:   `{"error":"invalid_target","error_description":"audience \"https://x.example/\" is not allowed"}`,
			wantStatus: 400, wantText: `exchange: invalid_target: audience "https://x.example/" is not allowed`,
		},
		{
			name: "wrapped", err: fmt.Errorf("token endpoint: %w", ErrInvalidClient.WithDescription("unknown client")),
			is: ErrInvalidClient, isNot: ErrUnauthorizedClient,
			wantJSON: `{"error":"invalid_client","error_description":"unknown client"}`, wantStatus: 401,
			wantText: "token endpoint: exchange: invalid_client: unknown client",
		},
		{
			name: "with a cause that is not sent", err: ErrServerError.WithDescription("the token could not be issued").WithCause(cause),
			is: ErrServerError, isNot: ErrInvalidGrant,
			wantJSON: `{"error":"server_error","error_description":"the token could not be issued"}`, wantStatus: 500,
			wantText: "exchange: server_error: the token could not be issued: disk full",
		},
		{
			name: "a provider's code without status", err: &OAuthError{Code: "authorization_pending"},
			is: &OAuthError{Code: "authorization_pending"}, isNot: ErrInvalidScope,
			wantJSON: `{"error":"authorization_pending"}`, wantStatus: 400, wantText: "exchange: authorization_pending",
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if !errors.Is(test.err, test.is) || errors.Is(test.err, test.isNot) {
				t.Errorf("errors.Is(%v, %s) = %v, errors.Is(.., %s) = %v", test.err, test.is.Code, errors.Is(test.err, test.is), test.isNot.Code, errors.Is(test.err, test.isNot))
			}
			var oauthErr *OAuthError
			if !errors.As(test.err, &oauthErr) {
				t.Fatal("errors.As found no *OAuthError")
			}
			body, err := json.Marshal(oauthErr)
			if err != nil || string(body) != test.wantJSON {
				t.Errorf("json %s (%v), want %s", body, err, test.wantJSON)
			}
			if oauthErr.HTTPStatus() != test.wantStatus {
				t.Errorf("status %d, want %d", oauthErr.HTTPStatus(), test.wantStatus)
			}
			if test.err.Error() != test.wantText {
				t.Errorf("text %q, want %q", test.err.Error(), test.wantText)
			}
		})
	}
	if !errors.Is(ErrServerError.WithCause(cause), cause) {
		t.Error("the cause is not reachable with errors.Is")
	}
	if ErrInvalidRequest.WithDescription("changed"); ErrInvalidRequest.Description != "" {
		t.Error("WithDescription changed the shared value")
	}
}
