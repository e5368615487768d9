package exchange

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A token the broker minted for one upstream (aud ledger) must not be
// exchangeable into a token for another audience: the audience restriction
// of outbound tokens, which is what "no passthrough" relies on, would be
// undone by whoever holds a token-exchange client.
func TestSubjectTokenAudienceMustBeAllowed(t *testing.T) {
	f := newExchangeFixture(t)
	toolToken, _ := f.mint(t, f.keys, testIssuer, epoch, Grant{
		Subject: "alice", ClientID: "agent-app", Audience: ledgerAudience,
		Scopes: []string{"mail:send"}, TTL: 10 * time.Minute,
	})
	exchanger := f.exchanger(t, ExchangerOptions{})
	got, err := exchanger.Exchange(context.Background(),
		ExchangeClient{ID: "mail-gateway", Audiences: []string{mailAudience}, SubjectAudiences: []string{brokerAudience}},
		ExchangeRequest{SubjectToken: toolToken, SubjectTokenType: TokenTypeAccessToken, Audiences: []string{mailAudience}})
	if err == nil {
		t.Fatalf("a token minted for %s was exchanged for one for %s (sub %s, scope %q)",
			ledgerAudience, got.Claims.Audience, got.Claims.Subject, got.Scope)
	}
	var oauthErr *OAuthError
	if !errors.As(err, &oauthErr) || oauthErr.ErrorField != "invalid_request" {
		t.Errorf("Exchange: %v, want invalid_request", err)
	}
}

// Nor does a token minted for an upstream name an actor: the actor token
// must be for a resource the client may exchange too.
func TestActorTokenAudienceMustBeAllowed(t *testing.T) {
	f := newExchangeFixture(t)
	grant := Grant{Subject: "alice", ClientID: "agent-app", Audience: brokerAudience, Scopes: []string{"mail:send"}, TTL: 10 * time.Minute}
	subject, _ := f.mint(t, f.keys, testIssuer, epoch, grant)
	grant.Subject, grant.Audience = "agent-app", ledgerAudience
	toolToken, _ := f.mint(t, f.keys, testIssuer, epoch, grant)
	exchanger := f.exchanger(t, ExchangerOptions{})
	_, err := exchanger.Exchange(context.Background(),
		ExchangeClient{ID: "mail-gateway", Audiences: []string{mailAudience}, SubjectAudiences: []string{brokerAudience}},
		ExchangeRequest{SubjectToken: subject, SubjectTokenType: TokenTypeAccessToken,
			ActorToken: toolToken, ActorTokenType: TokenTypeAccessToken, Audiences: []string{mailAudience}})
	var oauthErr *OAuthError
	if !errors.As(err, &oauthErr) || oauthErr.ErrorField != "invalid_request" {
		t.Errorf("Exchange with an actor token for %s: %v, want invalid_request", ledgerAudience, err)
	}
}

// A subject authenticated by another issuer stays apart from this issuer's
// users of the same sub through an exchange: sub_iss is carried over, and
// a token without it gets none.
func TestExchangeKeepsTheSubjectIssuer(t *testing.T) {
	f := newExchangeFixture(t)
	exchanger := f.exchanger(t, ExchangerOptions{})
	client := ExchangeClient{ID: "agent-app", Audiences: []string{ledgerAudience}, SubjectAudiences: []string{brokerAudience}}
	for _, test := range []struct {
		name  string
		extra map[string]any
		want  any // the issued token's sub_iss; nil for none
		ok    bool
	}{
		{"a user of this issuer", nil, nil, true},
		{"a user of another issuer", map[string]any{SubjectIssuerClaim: "https://idp.example"}, "https://idp.example", true},
		{"a sub_iss that is not a string", map[string]any{SubjectIssuerClaim: 7}, nil, false},
		{"an empty sub_iss", map[string]any{SubjectIssuerClaim: ""}, nil, false},
	} {
		t.Run(test.name, func(t *testing.T) {
			grant := userGrant()
			grant.Extra = test.extra
			subject, _ := f.mint(t, f.keys, testIssuer, epoch, grant)
			response, err := exchanger.Exchange(context.Background(), client,
				ExchangeRequest{SubjectToken: subject, SubjectTokenType: TokenTypeAccessToken, Audiences: []string{ledgerAudience}})
			if !test.ok {
				var oauthErr *OAuthError
				if !errors.As(err, &oauthErr) || oauthErr.ErrorField != "invalid_request" {
					t.Fatalf("Exchange: %v, want invalid_request", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			verified, err := f.keys.Verify(response.AccessToken, VerifyOptions{Issuer: testIssuer, Now: func() time.Time { return f.now }})
			if err != nil {
				t.Fatal(err)
			}
			if got := verified.Claims[SubjectIssuerClaim]; got != test.want {
				t.Errorf("sub_iss %v, want %v", got, test.want)
			}
		})
	}
}
