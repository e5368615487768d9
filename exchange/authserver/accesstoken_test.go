package authserver

import (
	"errors"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/mcpbroker/mcpbroker/exchange"
)

func TestAccessTokenStrategy(t *testing.T) {
	ts := newTestServer(t)
	ctx := t.Context()
	now := time.Now()
	strategy := &tokenStrategy{minter: ts.minter, keys: ts.keys, issuer: ts.issuer, ttl: time.Minute, now: func() time.Time { return now }}

	grant := func(audiences ...string) *fosite.Request {
		return &fosite.Request{
			ID: "grant", Client: &client{ID: "agent"}, Session: &session{Subject: "alice", Groups: []string{"ops"}},
			GrantedScope: fosite.Arguments{"mcp"}, GrantedAudience: fosite.Arguments(audiences),
		}
	}
	request := grant(ledgerAudience)
	token, signature, err := strategy.GenerateAccessToken(ctx, request)
	if err != nil {
		t.Fatal(err)
	}
	sess := request.Session.(*session)
	if signature != strategy.AccessTokenSignature(ctx, token) || signature == "" || sess.TokenID == "" ||
		sess.GetExpiresAt(fosite.AccessToken).Unix() != now.Add(time.Minute).Unix() {
		t.Fatalf("signature %q, session %+v", signature, sess)
	}

	otherKeys, err := exchange.NewKeySet(ctx, &exchange.MemoryKeyStore{}, exchange.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherMinter, _ := exchange.NewMinter(otherKeys, exchange.MinterOptions{Issuer: ts.issuer})
	foreign, _, err := otherMinter.Mint(ctx, exchange.Grant{Subject: "alice", ClientID: "agent", Audience: ledgerAudience, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	expired := grant(ledgerAudience)
	expired.Session.(*session).SetExpiresAt(fosite.AccessToken, now.Add(-time.Second))
	tests := []struct {
		name      string
		requester fosite.Requester
		token     string
		want      error
	}{
		{"valid", request, token, nil},
		{"expired by the record", expired, token, fosite.ErrTokenExpired},
		{"signed by another key", request, foreign, fosite.ErrTokenSignatureMismatch},
		{"not a JWT", request, "a.b", fosite.ErrTokenSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := strategy.ValidateAccessToken(ctx, tt.requester, tt.token)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("ValidateAccessToken: %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("exactly one audience", func(t *testing.T) {
		for _, audiences := range [][]string{nil, {ledgerAudience, ts.issuer + "/mcp"}} {
			if _, _, err := strategy.GenerateAccessToken(ctx, grant(audiences...)); err == nil {
				t.Errorf("audiences %v: minted", audiences)
			}
		}
	})
	if got := strategy.AccessTokenSignature(ctx, "opaque.refresh"); got != "" {
		t.Errorf("signature of a non-JWT %q", got)
	}
}
