package exchange

import (
	"cmp"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

const (
	brokerAudience = "http://localhost:8080/mcp"
	ledgerAudience = "https://ledger.example/"
	mailAudience   = "https://mail.example/"
)

// exchangeFixture is a broker's key set with tokens made at epoch.
type exchangeFixture struct {
	keys    *KeySet
	now     time.Time // the exchanger's clock
	revoked map[string]bool
}

func newExchangeFixture(t *testing.T) *exchangeFixture {
	t.Helper()
	return &exchangeFixture{
		keys:    newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: func() time.Time { return epoch }}),
		now:     epoch.Add(1500 * time.Millisecond),
		revoked: map[string]bool{},
	}
}

// mint makes a token as issuer at the given time.
func (f *exchangeFixture) mint(t *testing.T, keys *KeySet, issuer string, at time.Time, grant Grant) (string, Claims) {
	t.Helper()
	minter, err := NewMinter(keys, MinterOptions{Issuer: issuer, Algorithm: jose.EdDSA, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	token, claims, err := minter.Mint(context.Background(), grant)
	if err != nil {
		t.Fatal(err)
	}
	return token, claims
}

func (f *exchangeFixture) exchanger(t *testing.T, opts ExchangerOptions) *Exchanger {
	t.Helper()
	minter, err := NewMinter(f.keys, MinterOptions{Issuer: testIssuer, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	opts.Revoked = func(_ context.Context, id string) bool { return f.revoked[id] }
	exchanger, err := NewExchanger(minter, f.keys, opts)
	if err != nil {
		t.Fatalf("NewExchanger: %v", err)
	}
	return exchanger
}

// userGrant is alice's token for the broker, held by agent-app.
func userGrant() Grant {
	return Grant{
		Subject: "alice", ClientID: "agent-app", Audience: brokerAudience,
		Scopes: []string{"ledger:read", "ledger:write", "mail:send"}, TTL: 10 * time.Minute,
	}
}

// actorGrant is the orchestrator's own token (client credentials).
func actorGrant() Grant {
	return Grant{Subject: "orchestrator-app", ClientID: "orchestrator-app", Audience: brokerAudience, TTL: 10 * time.Minute}
}

func TestExchange(t *testing.T) {
	f := newExchangeFixture(t)
	other := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{})
	signer, _ := f.keys.Active(jose.ES256)

	subject, subjectClaims := f.mint(t, f.keys, testIssuer, epoch, userGrant())
	actor, _ := f.mint(t, f.keys, testIssuer, epoch, actorGrant())
	withGrant := func(change func(*Grant)) string {
		grant := userGrant()
		change(&grant)
		token, _ := f.mint(t, f.keys, testIssuer, epoch, grant)
		return token
	}
	delegated := withGrant(func(g *Grant) {
		g.Delegation, g.Actor = true, &oauth.Actor{Subject: "agent-7", ClientID: "agent-app", Actor: &oauth.Actor{Subject: "launcher"}}
	})
	mayAct := func(may map[string]any) string {
		return withGrant(func(g *Grant) { g.Extra = map[string]any{"may_act": may} })
	}
	// An actor token without client_id: its sub is its identity.
	actorWithoutClient := signRaw(t, signer, header(signer), map[string]any{
		"iss": testIssuer, "sub": "agent-7", "aud": brokerAudience, "iat": epoch.Unix(), "exp": epoch.Unix() + 600, "jti": "actor-no-client",
	})
	deepChain := &oauth.Actor{Subject: "a8"}
	for i := 7; i >= 1; i-- {
		deepChain = &oauth.Actor{Subject: "a", Actor: deepChain}
	}
	tooDeep := withGrant(func(g *Grant) { g.Delegation, g.Actor = true, deepChain })
	expired, _ := f.mint(t, f.keys, testIssuer, epoch.Add(-time.Hour), userGrant())
	// The exchanger's clock is at epoch+1.5s.
	expiringSoon, _ := f.mint(t, f.keys, testIssuer, epoch.Add(-10*time.Minute+31*time.Second), userGrant()) // 29.5s left
	expiringNow, _ := f.mint(t, f.keys, testIssuer, epoch.Add(-10*time.Minute+2*time.Second), userGrant())   // 0.5s left
	actorExpiringSoon, _ := f.mint(t, f.keys, testIssuer, epoch.Add(-10*time.Minute+21*time.Second), actorGrant())
	foreign, _ := f.mint(t, other, testIssuer, epoch, userGrant())
	otherIssuer, _ := f.mint(t, f.keys, "https://other.example", epoch, userGrant())
	revoked, revokedClaims := f.mint(t, f.keys, testIssuer, epoch, userGrant())
	f.revoked[revokedClaims.TokenID] = true
	revokedActor, revokedActorClaims := f.mint(t, f.keys, testIssuer, epoch, actorGrant())
	f.revoked[revokedActorClaims.TokenID] = true
	noJTI := signRaw(t, signer, header(signer), with(with(validClaims(), "jti", nil), "iss", testIssuer))
	ledgerToken := withGrant(func(g *Grant) { g.Audience = ledgerAudience })
	noClientID := signRaw(t, signer, header(signer), with(validClaims(), "client_id", nil))

	agent := ExchangeClient{ID: "agent-app", Audiences: []string{ledgerAudience, mailAudience}, SubjectAudiences: []string{brokerAudience}}
	request := func(change func(*ExchangeRequest)) ExchangeRequest {
		r := ExchangeRequest{SubjectToken: subject, SubjectTokenType: TokenTypeAccessToken, Audiences: []string{ledgerAudience}}
		change(&r)
		return r
	}
	delegation := func(change func(*ExchangeRequest)) ExchangeRequest {
		return request(func(r *ExchangeRequest) {
			r.ActorToken, r.ActorTokenType = actor, TokenTypeAccessToken
			change(r)
		})
	}
	unchanged := func(*ExchangeRequest) {}

	type want struct {
		code         string // OAuth error code; "" for success
		aud          string
		scope        string
		scopeChanged bool
		act          *oauth.Actor
		issuedType   string
		expiresIn    int64
	}
	success := func(w want) want {
		w.aud = cmp.Or(w.aud, ledgerAudience)
		w.issuedType = cmp.Or(w.issuedType, TokenTypeAccessToken)
		if w.expiresIn == 0 {
			w.expiresIn = 60
		}
		return w
	}
	refused := func(code string) want { return want{code: code} }
	orchestrator := &oauth.Actor{Subject: "orchestrator-app", ClientID: "orchestrator-app"}

	tests := []struct {
		name   string
		client ExchangeClient
		req    ExchangeRequest
		want   want
	}{
		// Impersonation and delegation.
		{"impersonation grants the subject's scopes", agent, request(unchanged),
			success(want{scope: ""})},
		{"delegation names the actor by client_id", agent, delegation(unchanged),
			success(want{scope: "", act: orchestrator})},
		{"delegation nests the subject's earlier actors", agent, delegation(func(r *ExchangeRequest) { r.SubjectToken = delegated }),
			success(want{scope: "",
				act: &oauth.Actor{Subject: "orchestrator-app", ClientID: "orchestrator-app", Actor: &oauth.Actor{Subject: "agent-7", ClientID: "agent-app", Actor: &oauth.Actor{Subject: "launcher"}}}})},
		{"an actor without client_id is named by sub", agent, delegation(func(r *ExchangeRequest) { r.ActorToken = actorWithoutClient }),
			success(want{scope: "", act: &oauth.Actor{Subject: "agent-7"}})},
		{"a chain longer than eight actors", agent, delegation(func(r *ExchangeRequest) { r.SubjectToken = tooDeep }), refused("invalid_request")},
		{"jwt token types", agent, delegation(func(r *ExchangeRequest) {
			r.SubjectTokenType, r.ActorTokenType, r.RequestedTokenType = TokenTypeJWT, TokenTypeJWT, TokenTypeJWT
		}), success(want{scope: "", act: orchestrator, issuedType: TokenTypeJWT})},
		{"access token requested", agent, request(func(r *ExchangeRequest) { r.RequestedTokenType = TokenTypeAccessToken }),
			success(want{scope: ""})},

		// may_act.
		{"may_act names the actor", agent, delegation(func(r *ExchangeRequest) {
			r.SubjectToken = mayAct(map[string]any{"sub": "orchestrator-app", "client_id": "orchestrator-app", "iss": testIssuer})
		}), success(want{scope: "", act: orchestrator})},
		{"may_act names the actor by client_id only", agent, delegation(func(r *ExchangeRequest) {
			r.SubjectToken = mayAct(map[string]any{"client_id": "orchestrator-app"})
		}), success(want{scope: "", act: orchestrator})},
		{"may_act names another sub", agent, delegation(func(r *ExchangeRequest) {
			r.SubjectToken = mayAct(map[string]any{"sub": "someone-else"})
		}), refused("invalid_request")},
		{"may_act names another client", agent, delegation(func(r *ExchangeRequest) {
			r.SubjectToken = mayAct(map[string]any{"sub": "orchestrator-app", "client_id": "other-app"})
		}), refused("invalid_request")},
		{"may_act names another issuer", agent, delegation(func(r *ExchangeRequest) {
			r.SubjectToken = mayAct(map[string]any{"sub": "orchestrator-app", "iss": "https://other.example"})
		}), refused("invalid_request")},
		{"may_act and an actor identified by sub", agent, delegation(func(r *ExchangeRequest) {
			r.SubjectToken, r.ActorToken = mayAct(map[string]any{"sub": "agent-7"}), actorWithoutClient
		}), success(want{scope: "", act: &oauth.Actor{Subject: "agent-7"}})},
		{"may_act refuses impersonation", agent, request(func(r *ExchangeRequest) {
			r.SubjectToken = mayAct(map[string]any{"sub": "orchestrator-app"})
		}), refused("invalid_request")},

		// Scope.
		{"requested scopes are granted as asked", agent, request(func(r *ExchangeRequest) { r.Scopes = []string{"ledger:read"} }),
			success(want{scope: "ledger:read"})},
		{"repeated and space-joined scopes", agent, request(func(r *ExchangeRequest) { r.Scopes = []string{"ledger:write ledger:read", "ledger:write"} }),
			success(want{scope: "ledger:write ledger:read"})},
		{"a scope the subject lacks", agent, request(func(r *ExchangeRequest) { r.Scopes = []string{"ledger:read", "ledger:admin"} }), refused("invalid_scope")},
		{"no scope requested grants none", agent, request(unchanged), success(want{scope: ""})},
		{"a scope the client may not have", ExchangeClient{ID: "agent-app", Audiences: []string{ledgerAudience}, SubjectAudiences: []string{brokerAudience}, Scopes: []string{"ledger:read"}},
			request(func(r *ExchangeRequest) { r.Scopes = []string{"ledger:write"} }), refused("invalid_scope")},
		{"a scope the client may have", ExchangeClient{ID: "agent-app", Audiences: []string{ledgerAudience}, SubjectAudiences: []string{brokerAudience}, Scopes: []string{"ledger:read"}},
			request(func(r *ExchangeRequest) { r.Scopes = []string{"ledger:read"} }), success(want{scope: "ledger:read"})},
		{"no scope requested grants none, whatever the client may have", ExchangeClient{ID: "agent-app", Audiences: []string{ledgerAudience}, SubjectAudiences: []string{brokerAudience}, Scopes: []string{"calendar:read"}},
			request(unchanged), success(want{scope: ""})},
		{"a malformed scope", agent, request(func(r *ExchangeRequest) { r.Scopes = []string{`ledger"read`} }), refused("invalid_scope")},

		// Audience and resource.
		{"resource alone", agent, request(func(r *ExchangeRequest) { r.Audiences, r.Resources = nil, []string{mailAudience} }),
			success(want{aud: mailAudience, scope: ""})},
		{"audience and resource naming one target", agent, request(func(r *ExchangeRequest) {
			r.Audiences, r.Resources = []string{ledgerAudience, ledgerAudience}, []string{ledgerAudience}
		}), success(want{scope: ""})},
		{"no target", agent, request(func(r *ExchangeRequest) { r.Audiences = nil }), refused("invalid_request")},
		{"an empty audience", agent, request(func(r *ExchangeRequest) { r.Audiences = []string{""} }), refused("invalid_request")},
		{"two audiences", agent, request(func(r *ExchangeRequest) { r.Audiences = []string{ledgerAudience, mailAudience} }), refused("invalid_target")},
		{"audience and another resource", agent, request(func(r *ExchangeRequest) { r.Resources = []string{mailAudience} }), refused("invalid_target")},
		{"an audience the client may not have", agent, request(func(r *ExchangeRequest) { r.Audiences = []string{"https://payroll.example/"} }), refused("invalid_target")},
		{"a client with no audiences", ExchangeClient{ID: "agent-app", SubjectAudiences: []string{brokerAudience}}, request(unchanged), refused("invalid_target")},
		{"a relative resource", agent, request(func(r *ExchangeRequest) { r.Audiences, r.Resources = nil, []string{"/ledger"} }), refused("invalid_target")},
		{"a resource with a fragment", agent, request(func(r *ExchangeRequest) {
			r.Audiences, r.Resources = nil, []string{ledgerAudience + "#x"}
		}), refused("invalid_target")},

		// Parameters.
		{"no subject_token", agent, request(func(r *ExchangeRequest) { r.SubjectToken = "" }), refused("invalid_request")},
		{"no subject_token_type", agent, request(func(r *ExchangeRequest) { r.SubjectTokenType = "" }), refused("invalid_request")},
		{"an id_token subject_token_type", agent, request(func(r *ExchangeRequest) { r.SubjectTokenType = "urn:ietf:params:oauth:token-type:id_token" }), refused("invalid_request")},
		{"actor_token without a type", agent, delegation(func(r *ExchangeRequest) { r.ActorTokenType = "" }), refused("invalid_request")},
		{"actor_token_type without a token", agent, request(func(r *ExchangeRequest) { r.ActorTokenType = TokenTypeAccessToken }), refused("invalid_request")},
		{"a refresh token actor_token_type", agent, delegation(func(r *ExchangeRequest) { r.ActorTokenType = "urn:ietf:params:oauth:token-type:refresh_token" }), refused("invalid_request")},
		{"a SAML requested_token_type", agent, request(func(r *ExchangeRequest) { r.RequestedTokenType = "urn:ietf:params:oauth:token-type:saml2" }), refused("invalid_request")},

		// Subject and actor tokens.
		{"an expired subject_token", agent, request(func(r *ExchangeRequest) { r.SubjectToken = expired }), refused("invalid_request")},
		{"another key set's subject_token", agent, request(func(r *ExchangeRequest) { r.SubjectToken = foreign }), refused("invalid_request")},
		{"another issuer's subject_token", agent, request(func(r *ExchangeRequest) { r.SubjectToken = otherIssuer }), refused("invalid_request")},
		{"a tampered subject_token", agent, request(func(r *ExchangeRequest) { r.SubjectToken = tamper(subject) }), refused("invalid_request")},
		{"a revoked subject_token", agent, request(func(r *ExchangeRequest) { r.SubjectToken = revoked }), refused("invalid_request")},
		{"a subject_token without jti", agent, request(func(r *ExchangeRequest) { r.SubjectToken = noJTI }), refused("invalid_request")},
		{"a subject_token for another resource", agent, request(func(r *ExchangeRequest) { r.SubjectToken = ledgerToken }), refused("invalid_request")},
		{"a subject_token for one of several resources the client may exchange",
			ExchangeClient{ID: "agent-app", Audiences: []string{mailAudience}, SubjectAudiences: []string{"https://other.example/mcp", ledgerAudience}},
			request(func(r *ExchangeRequest) { r.SubjectToken, r.Audiences = ledgerToken, []string{mailAudience} }),
			success(want{aud: mailAudience, scope: ""})},
		{"a client that may exchange no subject_token", ExchangeClient{ID: "agent-app", Audiences: []string{ledgerAudience}},
			request(unchanged), refused("invalid_request")},
		{"a subject_token without client_id", agent, request(func(r *ExchangeRequest) { r.SubjectToken = noClientID }), refused("invalid_request")},
		{"not a token", agent, request(func(r *ExchangeRequest) { r.SubjectToken = "opaque-token-value" }), refused("invalid_request")},
		{"a revoked actor_token", agent, delegation(func(r *ExchangeRequest) { r.ActorToken = revokedActor }), refused("invalid_request")},
		{"another key set's actor_token", agent, delegation(func(r *ExchangeRequest) { r.ActorToken = foreign }), refused("invalid_request")},
		{"an expired actor_token", agent, delegation(func(r *ExchangeRequest) { r.ActorToken = expired }), refused("invalid_request")},

		// Lifetime.
		{"the subject_token's remaining lifetime, in whole seconds", agent, request(func(r *ExchangeRequest) { r.SubjectToken = expiringSoon }),
			success(want{scope: "", expiresIn: 29})},
		{"the actor_token's remaining lifetime", agent, delegation(func(r *ExchangeRequest) { r.ActorToken = actorExpiringSoon }),
			success(want{scope: "", act: orchestrator, expiresIn: 19})},
		{"a subject_token with less than a second left", agent, request(func(r *ExchangeRequest) { r.SubjectToken = expiringNow }), refused("invalid_request")},
	}
	exchanger := f.exchanger(t, ExchangerOptions{})
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			response, err := exchanger.Exchange(context.Background(), test.client, test.req)
			if test.want.code != "" {
				var oauthErr *OAuthError
				if !errors.As(err, &oauthErr) || oauthErr.ErrorField != test.want.code {
					t.Fatalf("Exchange: %v, want %s", err, test.want.code)
				}
				if response != nil {
					t.Error("a response came with the error")
				}
				if oauthErr.DescriptionField == "" || oauthErr.CodeField != 400 {
					t.Errorf("error %+v lacks a description or status 400", oauthErr)
				}
				for _, token := range []string{test.req.SubjectToken, test.req.ActorToken} {
					if len(token) > 8 && strings.Contains(err.Error(), token[len(token)/2:]) {
						t.Errorf("error %q contains a token", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			checkResponse(t, f, response, test.want.aud, test.want.scope, test.want.scopeChanged, test.want.act, test.want.issuedType, test.want.expiresIn, subjectClaims)
		})
	}
}

// checkResponse verifies the issued token and its claims.
func checkResponse(t *testing.T, f *exchangeFixture, response *ExchangeResponse, aud, scope string, scopeChanged bool, act *oauth.Actor, issuedType string, expiresIn int64, subject Claims) {
	t.Helper()
	if response.TokenType != "Bearer" || response.IssuedTokenType != issuedType {
		t.Errorf("token_type %q issued_token_type %q, want Bearer %q", response.TokenType, response.IssuedTokenType, issuedType)
	}
	if response.Scope != scope || response.ScopeChanged != scopeChanged {
		t.Errorf("scope %q changed %v, want %q %v", response.Scope, response.ScopeChanged, scope, scopeChanged)
	}
	if response.ExpiresIn != expiresIn {
		t.Errorf("expires_in %d, want %d", response.ExpiresIn, expiresIn)
	}
	verified, err := f.keys.Verify(response.AccessToken, VerifyOptions{Issuer: testIssuer, Audience: aud, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatalf("the issued token does not verify: %v", err)
	}
	if verified.Subject != subject.Subject || verified.ClientID != subject.ClientID || verified.Scope != scope {
		t.Errorf("issued sub %q client_id %q scope %q", verified.Subject, verified.ClientID, verified.Scope)
	}
	if !reflect.DeepEqual(verified.Actor, act) {
		t.Errorf("issued act %+v, want %+v", verified.Actor, act)
	}
	if _, present := verified.Claims["act"]; present != (act != nil) {
		t.Errorf("act claim present %v, want %v", present, act != nil)
	}
	if got := verified.Expiry.Sub(verified.IssuedAt); got != time.Duration(expiresIn)*time.Second {
		t.Errorf("exp - iat = %s, want expires_in %ds", got, expiresIn)
	}
	if verified.TokenID == "" || verified.TokenID == subject.TokenID || verified.TokenID != response.Claims.TokenID {
		t.Errorf("jti %q, subject's %q, response claims' %q", verified.TokenID, subject.TokenID, response.Claims.TokenID)
	}
}

func TestNewExchangerChecksOptions(t *testing.T) {
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{MaxTokenTTL: 10 * time.Minute})
	minter := newTestMinter(t, keys, jose.ES256, &testClock{now: epoch})
	tests := []struct {
		name string
		opts ExchangerOptions
		ok   bool
	}{
		{"defaults", ExchangerOptions{}, true},
		{"the minter's issuer", ExchangerOptions{Issuer: testIssuer, TTL: 10 * time.Minute}, true},
		{"another issuer", ExchangerOptions{Issuer: "https://other.example"}, false},
		{"a fractional ttl", ExchangerOptions{TTL: 1500 * time.Millisecond}, false},
		{"a sub-second ttl", ExchangerOptions{TTL: 500 * time.Millisecond}, false},
		{"a ttl over the keys' maximum", ExchangerOptions{TTL: 11 * time.Minute}, false},
		{"a negative skew", ExchangerOptions{ClockSkew: -time.Second}, false},
		{"a skew over five minutes", ExchangerOptions{ClockSkew: 6 * time.Minute}, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			exchanger, err := NewExchanger(minter, keys, test.opts)
			if (err == nil) != test.ok || (exchanger != nil) != test.ok {
				t.Fatalf("NewExchanger: %v, want ok=%v", err, test.ok)
			}
		})
	}
	if _, err := NewExchanger(nil, keys, ExchangerOptions{}); err == nil {
		t.Error("NewExchanger without a minter")
	}
}
