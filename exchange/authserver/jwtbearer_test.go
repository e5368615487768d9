package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// jagIdP is an identity provider that signs ID-JAGs: its OpenID
// configuration and keys are served; sign makes the grants.
type jagIdP struct {
	issuer string
	key    *ecdsa.PrivateKey
}

func newJagIdP(t *testing.T) *jagIdP {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := &jagIdP{key: key}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p.issuer = srv.URL
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.issuer, "jwks_uri": p.issuer + "/jwks",
			"authorization_endpoint": p.issuer + "/authorize", "token_endpoint": p.issuer + "/token"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "jag-1", Use: "sig", Algorithm: "ES256"}}})
	})
	return p
}

func (p *jagIdP) sign(t *testing.T, key *ecdsa.PrivateKey, typ string, claims map[string]any) string {
	options := (&jose.SignerOptions{}).WithHeader("kid", "jag-1").WithType(jose.ContentType(typ))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, options)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	signed, _ := s.Sign(payload)
	token, _ := signed.CompactSerialize()
	return token
}

// Identity assertion grants from a trusted identity provider become
// access tokens for the user they name, and nothing else does: each rule
// broken is invalid_grant with a description that names it, and an audit
// event that says it.
func TestJWTBearerIDJAG(t *testing.T) {
	idp := newJagIdP(t)
	var mu sync.Mutex
	var events []Event
	ts := newTestServer(t, withOptions(func(o *Options) {
		o.IDJAGIssuers = []Federation{{DiscoveryURL: idp.issuer + "/.well-known/openid-configuration"}}
		o.Clients = append(o.Clients, Client{ID: "jag-agent", Secret: "jag-agent-secret-0123456789", GrantTypes: []string{GrantJWTBearer}, Scopes: []string{"ledger:read"}},
			Client{ID: "plain-agent", Secret: "plain-agent-secret-0123456789", GrantTypes: []string{GrantClientCredentials}})
		o.OnEvent = func(_ context.Context, e Event) error {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
			return nil
		}
	}))
	now := time.Now()
	resource := ts.issuer + "/mcp"
	valid := func() map[string]any {
		return map[string]any{"iss": idp.issuer, "sub": "alice@corp", "aud": ts.issuer, "resource": resource, "client_id": "jag-agent",
			"jti": rand.Text(), "scope": "ledger:read", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "email": "alice@corp.example"}
	}
	with := func(change func(map[string]any)) map[string]any { c := valid(); change(c); return c }
	redeem := func(client, secret, assertion string, extra url.Values) (int, map[string]any) {
		form := url.Values{"grant_type": {GrantJWTBearer}, "assertion": {assertion}}
		for k, v := range extra {
			form[k] = v
		}
		req, _ := http.NewRequest(http.MethodPost, ts.issuer+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(client, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}

	// The metadata names the grant.
	var metadata Metadata
	resp, err := http.Get(ts.issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&metadata)
	resp.Body.Close()
	if !slices.Contains(metadata.GrantTypesSupported, GrantJWTBearer) {
		t.Errorf("grant_types_supported %v lacks the JWT bearer grant", metadata.GrantTypesSupported)
	}

	replayed := idp.sign(t, idp.key, oauth.TypIDJAG, valid())
	status, body := redeem("jag-agent", "jag-agent-secret-0123456789", replayed, nil)
	if status != http.StatusOK || body["access_token"] == nil || body["refresh_token"] != nil || body["scope"] != "ledger:read" {
		t.Fatalf("a good ID-JAG: %d %v", status, body)
	}
	claims, err := oauth.UnverifiedPayload(body["access_token"].(string))
	if err != nil || claims["sub"] != idp.issuer+"|alice@corp" || claims["aud"] != resource || claims["client_id"] != "jag-agent" || claims["iss"] != ts.issuer {
		t.Fatalf("the access token says %v", claims)
	}

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name, client, secret, assertion string
		extra                           url.Values
		says                            string
	}{
		{"wrong typ", "", "", idp.sign(t, idp.key, "JWT", valid()), nil, "typ"},
		{"an access token's typ", "", "", idp.sign(t, idp.key, "at+jwt", valid()), nil, "typ"},
		{"untrusted issuer", "", "", idp.sign(t, idp.key, oauth.TypIDJAG, with(func(c map[string]any) { c["iss"] = "https://evil.example" })), nil, "issuer is not trusted"},
		{"spoofed issuer, another key", "", "", idp.sign(t, other, oauth.TypIDJAG, valid()), nil, "signature"},
		{"aud another issuer", "", "", idp.sign(t, idp.key, oauth.TypIDJAG, with(func(c map[string]any) { c["aud"] = "https://other-as.example" })), nil, "aud"},
		{"resource not ours", "", "", idp.sign(t, idp.key, oauth.TypIDJAG, with(func(c map[string]any) { c["resource"] = "https://other.example/mcp" })), nil, "resource"},
		{"client_id mismatch", "", "", idp.sign(t, idp.key, oauth.TypIDJAG, with(func(c map[string]any) { c["client_id"] = "someone-else" })), nil, "client_id"},
		{"replayed jti", "", "", replayed, nil, "used before"},
		{"expired", "", "", idp.sign(t, idp.key, oauth.TypIDJAG, with(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-4*time.Minute).Unix(), now.Add(-2*time.Minute).Unix()
		})), nil, "expired"},
		{"lifetime too long", "", "", idp.sign(t, idp.key, oauth.TypIDJAG, with(func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() })), nil, "lives longer"},
		{"scope beyond the client's", "", "", idp.sign(t, idp.key, oauth.TypIDJAG, with(func(c map[string]any) { c["scope"] = "ledger:read ledger:write" })), nil, "beyond what the client may have"},
		{"scope beyond the assertion", "", "", idp.sign(t, idp.key, oauth.TypIDJAG, valid()), url.Values{"scope": {"ledger:write"}}, "not in the identity assertion"},
		{"not a JWT", "", "", "not-a-jwt", nil, "not a JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := redeem("jag-agent", "jag-agent-secret-0123456789", tt.assertion, tt.extra)
			description, _ := body["error_description"].(string)
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" || !strings.Contains(description, tt.says) {
				t.Fatalf("%d %v; want invalid_grant saying %q", status, body, tt.says)
			}
			mu.Lock()
			last := events[len(events)-1]
			mu.Unlock()
			if last.Name != EventTokenRefused || !strings.Contains(last.Detail, tt.says) {
				t.Errorf("the audit event: %+v", last)
			}
		})
	}
	// A client not allowed the grant.
	if status, body := redeem("plain-agent", "plain-agent-secret-0123456789", idp.sign(t, idp.key, oauth.TypIDJAG, valid()), nil); status != http.StatusBadRequest || body["error"] != "unauthorized_client" {
		t.Errorf("a client without the grant: %d %v", status, body)
	}
}
