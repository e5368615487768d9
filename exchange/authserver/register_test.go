package authserver

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// register posts client metadata to /register.
func (ts *testServer) register(body string, contentType string) tokenResponse {
	ts.t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.issuer+"/register", strings.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	answer := tokenResponse{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	if err := json.Unmarshal(raw, &answer.body); err != nil {
		ts.t.Fatalf("register: %d, not JSON: %s", resp.StatusCode, raw)
	}
	return answer
}

func TestDynamicClientRegistration(t *testing.T) {
	ts := newTestServer(t)
	tests := []struct {
		name        string
		body        string
		contentType string
		status      int
		errCode     string
		public      bool
		grants      []string
		scope       string
	}{
		{"public client", `{"client_name":"Claude","redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none",
			"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"logo_uri":"https://x.example/logo.png"}`,
			"application/json", http.StatusCreated, "", true, []string{"authorization_code", "refresh_token"}, ""},
		{"confidential by default", `{"redirect_uris":["https://app.example/callback"],"scope":"mcp ledger:read"}`,
			"application/json; charset=utf-8", http.StatusCreated, "", false, []string{"authorization_code", "refresh_token"}, "mcp ledger:read"},
		{"client_secret_post, code only", `{"redirect_uris":["http://localhost:8000/cb"],"token_endpoint_auth_method":"client_secret_post","grant_types":["authorization_code"]}`,
			"", http.StatusCreated, "", false, []string{"authorization_code"}, ""},
		{"no redirect_uris", `{"client_name":"x"}`, "application/json", http.StatusBadRequest, "invalid_redirect_uri", false, nil, ""},
		{"plain http", `{"redirect_uris":["http://app.example/cb"]}`, "application/json", http.StatusBadRequest, "invalid_redirect_uri", false, nil, ""},
		{"fragment", `{"redirect_uris":["https://app.example/cb#x"]}`, "application/json", http.StatusBadRequest, "invalid_redirect_uri", false, nil, ""},
		{"relative", `{"redirect_uris":["/cb"]}`, "application/json", http.StatusBadRequest, "invalid_redirect_uri", false, nil, ""},
		{"custom scheme", `{"redirect_uris":["myapp://cb"]}`, "application/json", http.StatusBadRequest, "invalid_redirect_uri", false, nil, ""},
		{"javascript", `{"redirect_uris":["javascript:alert(1)"]}`, "application/json", http.StatusBadRequest, "invalid_redirect_uri", false, nil, ""},
		{"client_credentials", `{"redirect_uris":["https://app.example/cb"],"grant_types":["client_credentials"]}`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"refresh only", `{"redirect_uris":["https://app.example/cb"],"grant_types":["refresh_token"]}`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"implicit", `{"redirect_uris":["https://app.example/cb"],"response_types":["token"]}`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"private_key_jwt", `{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"unknown scope", `{"redirect_uris":["https://app.example/cb"],"scope":"mcp admin"}`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"wrong type", `{"redirect_uris":"https://app.example/cb"}`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"not an object", `["https://app.example/cb"]`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"trailing data", `{"redirect_uris":["https://app.example/cb"]} {}`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"form encoded", `redirect_uris=https://app.example/cb`, "application/x-www-form-urlencoded", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
		{"too large", `{"client_name":"` + strings.Repeat("x", 70<<10) + `","redirect_uris":["https://app.example/cb"]}`, "application/json", http.StatusBadRequest, "invalid_client_metadata", false, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ts.register(tt.body, tt.contentType)
			assertNoStore(t, got.header)
			if got.status != tt.status || got.str("error") != tt.errCode {
				t.Fatalf("%d %v, want %d %q", got.status, got.body, tt.status, tt.errCode)
			}
			if tt.status != http.StatusCreated {
				if got.body["client_id"] != nil {
					t.Errorf("a refusal with a client_id: %v", got.body)
				}
				return
			}
			if got.str("client_id") == "" || got.body["client_id_issued_at"] == nil {
				t.Errorf("no client_id or client_id_issued_at: %v", got.body)
			}
			_, hasSecret := got.body["client_secret"]
			_, hasExpiry := got.body["client_secret_expires_at"]
			if hasSecret == tt.public || hasExpiry == tt.public || (hasExpiry && got.body["client_secret_expires_at"] != float64(0)) {
				t.Errorf("public %v, response %v", tt.public, got.body)
			}
			if grants := stringList(got.body["grant_types"]); !slices.Equal(grants, tt.grants) {
				t.Errorf("grant_types %v, want %v", grants, tt.grants)
			}
			if got.str("scope") != tt.scope || got.body["logo_uri"] != nil {
				t.Errorf("response metadata %v", got.body)
			}
			stored, err := ts.server.store.GetClient(t.Context(), got.str("client_id"))
			if err != nil || stored.IsPublic() != tt.public {
				t.Errorf("stored client %v, %v", stored, err)
			}
		})
	}
}

// A registered client goes through the whole flow: public with PKCE
// alone, confidential with its generated secret.
func TestRegisteredClientsCompleteTheCodeFlow(t *testing.T) {
	ts := newTestServer(t)
	tests := []struct {
		name   string
		method string
		basic  bool
	}{
		{"public", "none", false},
		{"client_secret_basic", "client_secret_basic", true},
		{"client_secret_post", "client_secret_post", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redirect := "http://127.0.0.1:40000/" + tt.name
			registered := ts.register(`{"client_name":"Agent `+tt.name+`","redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"`+tt.method+`"}`, "application/json")
			if registered.status != http.StatusCreated {
				t.Fatalf("register: %d %v", registered.status, registered.body)
			}
			clientID, secret := registered.str("client_id"), registered.str("client_secret")
			verifier, challenge := newPKCE()
			b := newBrowser(t)
			consent := b.login(ts.authorizeURL(authorizeRequest{clientID: clientID, redirectURI: redirect, scope: "mcp",
				state: "state-12345", challenge: challenge, method: "S256"}), "alice", "alice-password")
			if !isConsentPage(consent) || !strings.Contains(consent.body, "not verified") || !strings.Contains(consent.body, redirect) {
				t.Fatalf("consent page for a registered client: %d %s", consent.status, consent.body)
			}
			back := b.submit(consent, url.Values{"consent": {"allow"}})
			form := url.Values{"grant_type": {"authorization_code"}, "code": {back.location.Query().Get("code")},
				"code_verifier": {verifier}, "redirect_uri": {redirect}, "client_id": {clientID}}
			var tokens tokenResponse
			switch {
			case tt.basic:
				form.Del("client_id")
				tokens = ts.post("/token", form, clientID, secret)
			default:
				if secret != "" {
					form.Set("client_secret", secret)
				}
				tokens = ts.post("/token", form, "", "")
			}
			if tokens.status != http.StatusOK || tokens.str("refresh_token") == "" {
				t.Fatalf("token: %d %v", tokens.status, tokens.body)
			}
			if _, claims := ts.verifyJWT(tokens.str("access_token")); claims["client_id"] != clientID || claims["sub"] != "alice" {
				t.Errorf("claims %v", claims)
			}
			if secret != "" {
				form.Set("client_secret", "wrong")
				form.Set("client_id", clientID)
				if wrong := ts.post("/token", form, "", ""); wrong.status != http.StatusUnauthorized {
					t.Errorf("wrong secret: %d %v", wrong.status, wrong.body)
				}
			}
		})
	}
}

func TestRegistrationOffServesNoEndpoint(t *testing.T) {
	ts := newTestServer(t, withOptions(func(o *Options) { o.Registration = false }))
	resp, err := http.Post(ts.issuer+"/register", "application/json", bytes.NewReader([]byte(`{"redirect_uris":["https://app.example/cb"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /register: %d, want 404", resp.StatusCode)
	}
}

func TestRegistrationIsCapped(t *testing.T) {
	ts := newTestServer(t)
	registered := func() error {
		c, _, problem := ts.server.newRegisteredClient(&registrationRequest{RedirectURIs: []string{"https://app.example/cb"}})
		if problem != "" {
			t.Fatal(problem)
		}
		return ts.server.store.registerClient(c, 2)
	}
	for i := 0; i < 2; i++ {
		if err := registered(); err != nil {
			t.Fatalf("registration %d: %v", i+1, err)
		}
	}
	if err := registered(); err != errTooManyClients {
		t.Errorf("third registration past a cap of 2: %v, want errTooManyClients", err)
	}
}

// FuzzRegistrationMetadata: whatever a client posts, registration answers
// without panicking, and what it accepts is a client the server can serve.
func FuzzRegistrationMetadata(f *testing.F) {
	f.Add([]byte(`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"none"}`))
	f.Add([]byte(`{"redirect_uris":["http://[::1]:80/cb"],"grant_types":["authorization_code"],"scope":"mcp"}`))
	f.Add([]byte(`{"redirect_uris":["http://localhost/cb#"],"client_name":"\u0000"}`))
	f.Add([]byte(`{"redirect_uris":null,"scope":7}`))
	server := &Server{scopes: []string{"mcp", "ledger:read"}, now: func() time.Time { return time.Unix(0, 0) }}
	f.Fuzz(func(t *testing.T, body []byte) {
		var metadata registrationRequest
		if decodeJSONObject(body, &metadata) != nil {
			return
		}
		c, code, problem := server.newRegisteredClient(&metadata)
		if problem != "" {
			if code != "invalid_client_metadata" && code != "invalid_redirect_uri" {
				t.Fatalf("error code %q", code)
			}
			return
		}
		if len(c.RedirectURIs) == 0 || !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
			t.Fatalf("accepted %+v", c)
		}
		for _, redirect := range c.RedirectURIs {
			if err := checkRedirectURI(redirect); err != nil {
				t.Fatalf("accepted redirect %q: %v", redirect, err)
			}
		}
		for _, scope := range c.Scopes {
			if !slices.Contains(server.scopes, scope) {
				t.Fatalf("accepted scope %q", scope)
			}
		}
	})
}
