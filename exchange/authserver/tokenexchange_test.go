package authserver

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// The token-exchange grant over HTTP, with the real exchanger: the broker
// trades an agent's token for one scoped to an upstream.
func TestTokenExchangeGrant(t *testing.T) {
	ts := newTestServer(t, withExchanger(), withOptions(func(o *Options) {
		// resource-server is a confidential client that may not exchange.
		o.Clients[4].GrantTypes = []string{GrantClientCredentials}
	}))
	code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp ledger:read", "")
	subject := ts.exchangeCode("agent", "", code, verifier, agentRedirect).str("access_token")
	if subject == "" {
		t.Fatal("no subject token")
	}
	exchangeForm := func(extra url.Values) url.Values {
		form := url.Values{
			"grant_type":         {GrantTokenExchange},
			"subject_token":      {subject},
			"subject_token_type": {exchange.TokenTypeAccessToken},
			"resource":           {ledgerAudience},
		}
		for name, list := range extra {
			form[name] = list
		}
		return form
	}

	t.Run("a requested lifetime shortens the token, within bounds", func(t *testing.T) {
		got := ts.post("/token", exchangeForm(url.Values{"scope": {"ledger:read"}, exchange.ParamRequestedLifetime: {"7"}}), "exchanger", exchangerSecret)
		if got.status != http.StatusOK || got.body["expires_in"] != float64(7) {
			t.Errorf("requested_lifetime 7: %d %v", got.status, got.body)
		}
		for _, bad := range []string{"0", "-1", "x", "3601", "1.5"} {
			got := ts.post("/token", exchangeForm(url.Values{exchange.ParamRequestedLifetime: {bad}}), "exchanger", exchangerSecret)
			if got.status != http.StatusBadRequest || got.str("error") != "invalid_request" {
				t.Errorf("requested_lifetime %q: %d %v, want invalid_request", bad, got.status, got.body)
			}
		}
	})

	t.Run("exchanged", func(t *testing.T) {
		got := ts.post("/token", exchangeForm(url.Values{"scope": {"ledger:read"}}), "exchanger", exchangerSecret)
		assertNoStore(t, got.header)
		if got.status != http.StatusOK {
			t.Fatalf("%d %v", got.status, got.body)
		}
		if got.str("issued_token_type") != exchange.TokenTypeAccessToken || got.str("token_type") != "Bearer" || got.body["expires_in"] == nil {
			t.Errorf("response %v", got.body)
		}
		if _, present := got.body["scope"]; present {
			t.Errorf("scope in the response although granted as requested: %v", got.body)
		}
		if got.body["refresh_token"] != nil {
			t.Errorf("a refresh token from token exchange: %v", got.body)
		}
		_, claims := ts.verifyJWT(got.str("access_token"))
		if claims["sub"] != "alice" || claims["aud"] != ledgerAudience || claims["scope"] != "ledger:read" || claims["client_id"] != "agent" {
			t.Errorf("claims %v", claims)
		}
	})
	t.Run("no scope asked, none granted", func(t *testing.T) {
		got := ts.post("/token", exchangeForm(nil), "exchanger", exchangerSecret)
		if got.status != http.StatusOK {
			t.Fatalf("%d %v", got.status, got.body)
		}
		if _, claims := ts.verifyJWT(got.str("access_token")); claims["scope"] != nil || got.body["scope"] != nil {
			t.Errorf("response %v, claims %v; want no scope", got.body, claims)
		}
	})

	// A subject token that names who may act for alice (RFC 8693 §4.4),
	// and an actor token for another agent.
	mint := func(subject, clientID string, extra map[string]any) string {
		token, _, err := ts.minter.Mint(context.Background(), exchange.Grant{
			Subject: subject, ClientID: clientID, Audience: ts.issuer + "/mcp",
			Scopes: []string{"mcp", "ledger:read"}, TTL: time.Minute, Extra: extra,
		})
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	mayAct := mint("alice", "agent", map[string]any{"may_act": map[string]any{"sub": "agent"}})
	otherAgent := mint("other-agent", "other-agent", nil)
	agentActor := mint("agent", "agent", nil)

	t.Run("delegation", func(t *testing.T) {
		got := ts.post("/token", exchangeForm(url.Values{"subject_token": {mayAct},
			"actor_token": {agentActor}, "actor_token_type": {exchange.TokenTypeAccessToken}}), "exchanger", exchangerSecret)
		if got.status != http.StatusOK {
			t.Fatalf("%d %v", got.status, got.body)
		}
		_, claims := ts.verifyJWT(got.str("access_token"))
		if act, _ := claims["act"].(map[string]any); claims["sub"] != "alice" || act["sub"] != "agent" {
			t.Errorf("claims %v, want sub alice acted on by agent", claims)
		}
	})
	t.Run("impersonation has no act", func(t *testing.T) {
		got := ts.post("/token", exchangeForm(nil), "exchanger", exchangerSecret)
		if _, claims := ts.verifyJWT(got.str("access_token")); claims["act"] != nil {
			t.Errorf("claims %v", claims)
		}
	})

	tests := []struct {
		name     string
		form     url.Values
		clientID string
		secret   string
		status   int
		errCode  string
	}{
		{"resource the client may not target", exchangeForm(url.Values{"resource": {ts.issuer + "/mcp"}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_target"},
		{"two targets", exchangeForm(url.Values{"audience": {"https://other.example/"}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_target"},
		{"scope beyond the subject token", exchangeForm(url.Values{"scope": {"ledger:write"}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_scope"},
		{"actor_token_type without actor_token", exchangeForm(url.Values{"actor_token_type": {exchange.TokenTypeAccessToken}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_request"},
		{"actor_token without actor_token_type", exchangeForm(url.Values{"actor_token": {agentActor}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_request"},
		{"may_act names another actor", exchangeForm(url.Values{"subject_token": {mayAct}, "actor_token": {otherAgent}, "actor_token_type": {exchange.TokenTypeAccessToken}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_request"},
		{"unknown subject_token_type", exchangeForm(url.Values{"subject_token_type": {"urn:ietf:params:oauth:token-type:saml2"}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_request"},
		{"no audience", url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {subject}, "subject_token_type": {exchange.TokenTypeAccessToken}}, "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_request"},
		{"no subject token", exchangeForm(url.Values{"subject_token": {""}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_request"},
		{"forged subject token", exchangeForm(url.Values{"subject_token": {subject[:len(subject)-4] + "AAAA"}}), "exchanger", exchangerSecret, http.StatusBadRequest, "invalid_request"},
		{"wrong secret", exchangeForm(nil), "exchanger", "wrong", http.StatusUnauthorized, "invalid_client"},
		{"public client", exchangeForm(url.Values{"client_id": {"agent"}}), "", "", http.StatusBadRequest, "unauthorized_client"},
		{"client without the grant", exchangeForm(nil), "resource-server", resourceSecret, http.StatusBadRequest, "unauthorized_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ts.post("/token", tt.form, tt.clientID, tt.secret)
			assertNoStore(t, got.header)
			if got.status != tt.status || got.str("error") != tt.errCode || got.body["access_token"] != nil {
				t.Errorf("%d %v, want %d %q", got.status, got.body, tt.status, tt.errCode)
			}
		})
	}

	t.Run("revoked subject token", func(t *testing.T) {
		if got := ts.post("/revoke", url.Values{"token": {subject}, "client_id": {"agent"}}, "", ""); got.status != http.StatusOK {
			t.Fatalf("revoke: %d %v", got.status, got.body)
		}
		got := ts.post("/token", exchangeForm(nil), "exchanger", exchangerSecret)
		if got.status != http.StatusBadRequest || got.str("error") != "invalid_request" {
			t.Errorf("%d %v, want invalid_request", got.status, got.body)
		}
	})
}

// refusingExchanger is an exchanger that refuses with a fixed error, to
// check how refusals are rendered.
type refusingExchanger struct{ err error }

func (e refusingExchanger) Exchange(context.Context, exchange.ExchangeClient, exchange.ExchangeRequest) (*exchange.ExchangeResponse, error) {
	return nil, e.err
}

func TestTokenExchangeRefusalsKeepTheirCodeAndStatus(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		status  int
		errCode string
	}{
		{"invalid_target", exchange.ErrInvalidTarget.WithDescription("no"), http.StatusBadRequest, "invalid_target"},
		{"invalid_client", exchange.ErrInvalidClient, http.StatusUnauthorized, "invalid_client"},
		{"server error hides its cause", exchange.ErrServerError.WithWrap(context.DeadlineExceeded), http.StatusInternalServerError, "server_error"},
		{"plain error", context.Canceled, http.StatusInternalServerError, "server_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, withOptions(func(o *Options) { o.Exchanger = refusingExchanger{tt.err} }))
			got := ts.post("/token", url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {"x"}, "subject_token_type": {exchange.TokenTypeAccessToken}}, "exchanger", exchangerSecret)
			if got.status != tt.status || got.str("error") != tt.errCode {
				t.Errorf("%d %v, want %d %s", got.status, got.body, tt.status, tt.errCode)
			}
			if description := got.str("error_description"); description != "" && tt.status >= 500 && description != "The authorization server encountered an unexpected condition that prevented it from fulfilling the request." {
				t.Errorf("server error description %q leaks detail", description)
			}
		})
	}
}

// The subject tokens a client may exchange are those for its subject
// audiences, by default the server's audiences: a token minted for an
// upstream is not turned into one for another.
func TestTokenExchangeSubjectAudiences(t *testing.T) {
	const upstream, elsewhere = "https://upstream.example/", "https://elsewhere.example/"
	ts := newTestServer(t, withExchanger(), withOptions(func(o *Options) {
		o.Clients = append(o.Clients, Client{ID: "narrow-exchanger", Secret: exchangerSecret,
			GrantTypes: []string{GrantTokenExchange}, Audiences: []string{ledgerAudience}, SubjectAudiences: []string{elsewhere}})
	}))
	mint := func(audience string) string {
		token, _, err := ts.minter.Mint(t.Context(), exchange.Grant{
			Subject: "alice", ClientID: "agent", Audience: audience, Scopes: []string{"ledger:read"}, TTL: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	tests := []struct {
		name     string
		clientID string
		audience string
		status   int
	}{
		{"a token for the broker, by default", "exchanger", ts.issuer + "/mcp", http.StatusOK},
		{"a token for an upstream, by default", "exchanger", upstream, http.StatusBadRequest},
		{"a token for the broker, not among the client's", "narrow-exchanger", ts.issuer + "/mcp", http.StatusBadRequest},
		{"a token for the client's subject audience", "narrow-exchanger", elsewhere, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ts.post("/token", url.Values{
				"grant_type":         {GrantTokenExchange},
				"subject_token":      {mint(tt.audience)},
				"subject_token_type": {exchange.TokenTypeAccessToken},
				"resource":           {ledgerAudience},
			}, tt.clientID, exchangerSecret)
			if got.status != tt.status || (tt.status != http.StatusOK && got.str("error") != "invalid_request") {
				t.Errorf("%d %v, want %d", got.status, got.body, tt.status)
			}
		})
	}
}
