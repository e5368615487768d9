package exchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// TestRefusal: a refusal keeps its code and status, carries its
// description on the wire and its cause only in the error chain, and
// never changes the shared values.
func TestRefusal(t *testing.T) {
	cause := errors.New("disk full")
	tests := []struct {
		name       string
		err        error
		is, isNot  *OAuthError
		wantJSON   string
		wantStatus int
	}{
		{
			name: "described", err: refusal(ErrInvalidTarget, "audience %q is not allowed", "https://x.example/"),
			is: ErrInvalidTarget, isNot: ErrInvalidRequest,
			wantJSON:   `{"error":"invalid_target","error_description":"audience 'https://x.example/' is not allowed"}`,
			wantStatus: 400,
		},
		{
			name: "wrapped", err: fmt.Errorf("token endpoint: %w", refusal(ErrInvalidClient, "unknown client")),
			is: ErrInvalidClient, isNot: ErrUnauthorizedClient,
			wantJSON: `{"error":"invalid_client","error_description":"unknown client"}`, wantStatus: 401,
		},
		{
			name: "with a cause that is not sent", err: refusal(ErrServerError, "the token could not be issued").WithWrap(cause),
			is: ErrServerError, isNot: ErrInvalidGrant,
			wantJSON: `{"error":"server_error","error_description":"the token could not be issued"}`, wantStatus: 500,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if !errors.Is(test.err, test.is) || errors.Is(test.err, test.isNot) {
				t.Errorf("errors.Is(%v, %s) = %v, errors.Is(.., %s) = %v", test.err, test.is.ErrorField, errors.Is(test.err, test.is), test.isNot.ErrorField, errors.Is(test.err, test.isNot))
			}
			var oauthErr *OAuthError
			if !errors.As(test.err, &oauthErr) {
				t.Fatal("errors.As found no *OAuthError")
			}
			body, err := json.Marshal(oauthErr)
			if err != nil || string(body) != test.wantJSON {
				t.Errorf("json %s (%v), want %s", body, err, test.wantJSON)
			}
			if oauthErr.StatusCode() != test.wantStatus {
				t.Errorf("status %d, want %d", oauthErr.StatusCode(), test.wantStatus)
			}
		})
	}
	if !errors.Is(ErrServerError.WithWrap(cause), cause) {
		t.Error("the cause is not reachable with errors.Is")
	}
	before := ErrInvalidRequest.DescriptionField
	if refusal(ErrInvalidRequest, "changed"); ErrInvalidRequest.DescriptionField != before {
		t.Error("a refusal changed the shared value")
	}
}
