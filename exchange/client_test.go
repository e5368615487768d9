package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

const (
	idpClientID     = "mcp broker:app"
	idpClientSecret = "s3cr=t&+/é"
	idpSubject      = "eyJhbGciOiJFUzI1NiJ9.c3ViamVjdA.c2lnbmF0dXJl"
	idpActor        = "eyJhbGciOiJFUzI1NiJ9.YWN0b3I.c2lnbmF0dXJl"
)

func testClientRequest() ClientRequest {
	return ClientRequest{
		SubjectToken: idpSubject, ActorToken: idpActor,
		Audience: "https://ledger.example/", Resource: "https://ledger.example/api",
		Scopes: []string{"ledger:read", "ledger:write"},
	}
}

// respond answers with status and body as JSON when it is not a string.
func respond(status int, body any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		payload, ok := body.(string)
		if !ok {
			encoded, _ := json.Marshal(body)
			payload = string(encoded)
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, payload)
	}
}

var goodResponse = map[string]any{
	"access_token": "issued-access-token", "issued_token_type": TokenTypeAccessToken,
	"token_type": "Bearer", "expires_in": 300, "scope": "ledger:read",
}

func withMember(document map[string]any, name string, value any) map[string]any {
	copied := make(map[string]any, len(document))
	for k, v := range document {
		copied[k] = v
	}
	if value == nil {
		delete(copied, name)
	} else {
		copied[name] = value
	}
	return copied
}

func TestClientExchange(t *testing.T) {
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		request   func(*ClientRequest)
		want      *IssuedToken
		oauthCode string // the *OAuthError expected
		status    int    // its Status
		sentinel  error  // or an error matching this
	}{
		{name: "issued", handler: respond(200, goodResponse),
			want: &IssuedToken{AccessToken: "issued-access-token", IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer", ExpiresIn: 300 * time.Second, Scope: []string{"ledger:read"}}},
		{name: "no scope means the requested one", handler: respond(200, withMember(goodResponse, "scope", nil)),
			want: &IssuedToken{AccessToken: "issued-access-token", IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer", ExpiresIn: 300 * time.Second, Scope: []string{"ledger:read", "ledger:write"}}},
		{name: "N_A, lower-case bearer spellings and string expires_in", handler: respond(200, withMember(withMember(goodResponse, "token_type", "n_a"), "expires_in", "60")),
			want: &IssuedToken{AccessToken: "issued-access-token", IssuedTokenType: TokenTypeAccessToken, TokenType: "N_A", ExpiresIn: time.Minute, Scope: []string{"ledger:read"}}},
		{name: "no expires_in", handler: respond(200, withMember(withMember(goodResponse, "token_type", "bearer"), "expires_in", nil)),
			want: &IssuedToken{AccessToken: "issued-access-token", IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer", Scope: []string{"ledger:read"}}},

		{name: "invalid_target echoing the token", handler: respond(400, map[string]any{"error": "invalid_target", "error_description": "no audience for " + idpSubject}),
			oauthCode: "invalid_target", status: 400},
		{name: "invalid_client", handler: respond(401, map[string]any{"error": "invalid_client"}), oauthCode: "invalid_client", status: 401},
		{name: "server_error", handler: respond(500, map[string]any{"error": "server_error", "error_description": "try later"}), oauthCode: "server_error", status: 500},
		{name: "500 without an oauth error", handler: respond(500, "<html>oops</html>"), sentinel: ErrTokenResponse},
		{name: "400 without an oauth error", handler: respond(400, map[string]any{"message": "bad"}), sentinel: ErrTokenResponse},
		{name: "an error code with a quote", handler: respond(400, map[string]any{"error": `bad"code`}), sentinel: ErrTokenResponse},
		{name: "200 not json", handler: respond(200, "access_token=x"), sentinel: ErrTokenResponse},
		{name: "200 json array", handler: respond(200, []any{goodResponse}), sentinel: ErrTokenResponse},
		{name: "no access_token", handler: respond(200, withMember(goodResponse, "access_token", nil)), sentinel: ErrTokenResponse},
		{name: "empty access_token", handler: respond(200, withMember(goodResponse, "access_token", "")), sentinel: ErrTokenResponse},
		{name: "no issued_token_type", handler: respond(200, withMember(goodResponse, "issued_token_type", nil)), sentinel: ErrTokenResponse},
		{name: "no token_type", handler: respond(200, withMember(goodResponse, "token_type", nil)), sentinel: ErrTokenResponse},
		{name: "DPoP token_type", handler: respond(200, withMember(goodResponse, "token_type", "DPoP")), sentinel: ErrTokenResponse},
		{name: "negative expires_in", handler: respond(200, withMember(goodResponse, "expires_in", -1)), sentinel: ErrTokenResponse},
		{name: "fractional expires_in", handler: respond(200, withMember(goodResponse, "expires_in", 1.5)), sentinel: ErrTokenResponse},
		{name: "scope not a string", handler: respond(200, withMember(goodResponse, "scope", []string{"a"})), sentinel: ErrTokenResponse},
		{name: "oversized", handler: respond(200, withMember(goodResponse, "padding", strings.Repeat("x", maxTokenResponseSize))), sentinel: ErrTokenResponse},
		{name: "redirect", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/token", http.StatusTemporaryRedirect)
		}, sentinel: oauth.ErrRedirect},
		{name: "timeout", handler: func(w http.ResponseWriter, r *http.Request) {
			// Reading the body lets the server notice the client leaving.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, sentinel: context.DeadlineExceeded},

		{name: "no subject token", handler: respond(200, goodResponse), request: func(r *ClientRequest) { r.SubjectToken = "" }, sentinel: ErrClientRequest},
		{name: "no target", handler: respond(200, goodResponse), request: func(r *ClientRequest) { r.Audience, r.Resource = "", "" }, sentinel: ErrClientRequest},
		{name: "actor type without actor", handler: respond(200, goodResponse), request: func(r *ClientRequest) { r.ActorToken, r.ActorTokenType = "", TokenTypeJWT }, sentinel: ErrClientRequest},
		{name: "a malformed scope", handler: respond(200, goodResponse), request: func(r *ClientRequest) { r.Scopes = []string{"a b"} }, sentinel: ErrClientRequest},
	}
	transports := map[string]func(*ClientOptions){
		"fetcher":     func(*ClientOptions) {},
		"http client": func(o *ClientOptions) { o.HTTPClient = &http.Client{} },
	}
	for transport, configure := range transports {
		for _, test := range tests {
			t.Run(transport+"/"+test.name, func(t *testing.T) {
				server := httptest.NewServer(test.handler)
				defer server.Close()
				options := ClientOptions{TokenEndpoint: server.URL + "/token", ClientID: idpClientID, ClientSecret: idpClientSecret, Timeout: 200 * time.Millisecond}
				configure(&options)
				client, err := NewClient(options)
				if err != nil {
					t.Fatal(err)
				}
				request := testClientRequest()
				if test.request != nil {
					test.request(&request)
				}
				issued, err := client.Exchange(context.Background(), request)
				if test.want != nil {
					if err != nil {
						t.Fatalf("Exchange: %v", err)
					}
					if !reflect.DeepEqual(issued, test.want) {
						t.Errorf("Exchange:\n got %+v\nwant %+v", issued, test.want)
					}
					return
				}
				if issued != nil {
					t.Error("a token came with the error")
				}
				var oauthErr *OAuthError
				switch {
				case test.oauthCode != "":
					if !errors.As(err, &oauthErr) || oauthErr.ErrorField != test.oauthCode || oauthErr.CodeField != test.status {
						t.Fatalf("Exchange: %v (%+v), want %s with status %d", err, oauthErr, test.oauthCode, test.status)
					}
				case !errors.Is(err, test.sentinel) || errors.As(err, &oauthErr):
					t.Fatalf("Exchange: %v, want %v and no *OAuthError", err, test.sentinel)
				}
				for _, secret := range []string{idpSubject, idpActor, idpClientSecret, "issued-access-token"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q contains %q", err, secret)
					}
				}
			})
		}
	}
}

func TestClientSendsTheRequest(t *testing.T) {
	tests := []struct {
		name       string
		secret     string
		request    func(*ClientRequest)
		wantForm   url.Values
		wantBasic  bool
		wantHeader string
	}{
		{
			name: "delegation with basic authentication", secret: idpClientSecret, request: func(*ClientRequest) {},
			wantForm: url.Values{
				"grant_type":    {GrantTypeTokenExchange},
				"subject_token": {idpSubject}, "subject_token_type": {TokenTypeAccessToken},
				"actor_token": {idpActor}, "actor_token_type": {TokenTypeAccessToken},
				"audience": {"https://ledger.example/"}, "resource": {"https://ledger.example/api"},
				"scope": {"ledger:read ledger:write"},
			},
			wantBasic: true,
			// RFC 6749 §2.3.1: form-urlencode each part, then Basic.
			wantHeader: "Basic bWNwK2Jyb2tlciUzQWFwcDpzM2NyJTNEdCUyNiUyQiUyRiVDMyVBOQ==",
		},
		{
			name: "impersonation by a public client with explicit types", secret: "",
			request: func(r *ClientRequest) {
				r.ActorToken, r.Resource, r.Scopes = "", "", nil
				r.SubjectTokenType, r.RequestedTokenType = TokenTypeJWT, TokenTypeAccessToken
			},
			wantForm: url.Values{
				"grant_type":    {GrantTypeTokenExchange},
				"subject_token": {idpSubject}, "subject_token_type": {TokenTypeJWT},
				"requested_token_type": {TokenTypeAccessToken},
				"audience":             {"https://ledger.example/"},
				"client_id":            {idpClientID},
			},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var got *http.Request
			var gotForm url.Values
			server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r
				if err := r.ParseForm(); err != nil {
					t.Errorf("ParseForm: %v", err)
				}
				gotForm = r.PostForm
				respond(200, goodResponse)(w, r)
			}))
			defer server.Close()
			client, err := NewClient(ClientOptions{TokenEndpoint: server.URL + "/token", ClientID: idpClientID, ClientSecret: test.secret})
			if err != nil {
				t.Fatal(err)
			}
			request := testClientRequest()
			test.request(&request)
			if _, err := client.Exchange(context.Background(), request); err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if got.Method != http.MethodPost || got.URL.Path != "/token" || got.URL.RawQuery != "" {
				t.Errorf("request %s %s", got.Method, got.URL)
			}
			if ct := got.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type %q", ct)
			}
			if !reflect.DeepEqual(gotForm, test.wantForm) {
				t.Errorf("form:\n got %v\nwant %v", gotForm, test.wantForm)
			}
			user, password, basic := got.BasicAuth()
			if basic != test.wantBasic || got.Header.Get("Authorization") != test.wantHeader {
				t.Errorf("Authorization %q, want %q", got.Header.Get("Authorization"), test.wantHeader)
			}
			if basic {
				if id, _ := url.QueryUnescape(user); id != idpClientID {
					t.Errorf("basic user %q decodes to %q", user, id)
				}
				if secret, _ := url.QueryUnescape(password); secret != idpClientSecret {
					t.Errorf("basic password decodes to %q", secret)
				}
			}
		})
	}
}

func TestNewClientRefuses(t *testing.T) {
	tests := []struct {
		name    string
		options ClientOptions
	}{
		{"no endpoint", ClientOptions{ClientID: "broker"}},
		{"http to a remote host", ClientOptions{TokenEndpoint: "http://idp.example/token", ClientID: "broker"}},
		{"userinfo", ClientOptions{TokenEndpoint: "https://user:pass@idp.example/token", ClientID: "broker"}},
		{"a fragment", ClientOptions{TokenEndpoint: "https://idp.example/token#x", ClientID: "broker"}},
		{"a relative url", ClientOptions{TokenEndpoint: "/token", ClientID: "broker"}},
		{"no client id", ClientOptions{TokenEndpoint: "https://idp.example/token"}},
		{"a negative timeout", ClientOptions{TokenEndpoint: "https://idp.example/token", ClientID: "broker", Timeout: -time.Second}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if client, err := NewClient(test.options); err == nil || client != nil {
				t.Fatalf("NewClient: %v, want an error", err)
			}
		})
	}
	for _, endpoint := range []string{"https://idp.example/token", "http://localhost:9000/token", "http://127.0.0.1/token", "http://[::1]:8080/token"} {
		if _, err := NewClient(ClientOptions{TokenEndpoint: endpoint, ClientID: "broker"}); err != nil {
			t.Errorf("NewClient(%s): %v", endpoint, err)
		}
	}
}

// metadataServer serves documents by path; {{issuer}} in them becomes
// the server's URL.
func metadataServer(t *testing.T, documents map[string]string) *httptest.Server {
	t.Helper()
	var server *httptest.Server
	server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		document, ok := documents[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, strings.ReplaceAll(document, "{{issuer}}", server.URL))
	}))
	t.Cleanup(server.Close)
	return server
}

func TestDiscover(t *testing.T) {
	const good = `{"issuer":"{{issuer}}","token_endpoint":"{{issuer}}/token","jwks_uri":"{{issuer}}/jwks",
		"grant_types_supported":["authorization_code","urn:ietf:params:oauth:grant-type:token-exchange"]}`
	tests := []struct {
		name      string
		path      string // of the metadata URL
		documents map[string]string
		want      func(issuer string) *ServerMetadata
	}{
		{"RFC 8414", wellKnownOAuth, map[string]string{wellKnownOAuth: good}, func(issuer string) *ServerMetadata {
			return &ServerMetadata{Issuer: issuer, TokenEndpoint: issuer + "/token", JWKSURI: issuer + "/jwks",
				GrantTypesSupported: []string{"authorization_code", GrantTypeTokenExchange}}
		}},
		{"OIDC with a tenant path", "/tenant" + wellKnownOIDC, map[string]string{
			"/tenant" + wellKnownOIDC: `{"issuer":"{{issuer}}/tenant","token_endpoint":"{{issuer}}/tenant/token"}`,
		}, func(issuer string) *ServerMetadata {
			return &ServerMetadata{Issuer: issuer + "/tenant", TokenEndpoint: issuer + "/tenant/token"}
		}},
		{"RFC 8414 with a tenant path and a trailing slash on the issuer", wellKnownOAuth + "/tenant", map[string]string{
			wellKnownOAuth + "/tenant": `{"issuer":"{{issuer}}/tenant/"}`,
		}, func(issuer string) *ServerMetadata { return &ServerMetadata{Issuer: issuer + "/tenant/"} }},
		{"another issuer", wellKnownOAuth, map[string]string{wellKnownOAuth: `{"issuer":"https://other.example"}`}, nil},
		{"no issuer", wellKnownOAuth, map[string]string{wellKnownOAuth: `{"token_endpoint":"{{issuer}}/token"}`}, nil},
		{"an http token endpoint elsewhere", wellKnownOAuth, map[string]string{wellKnownOAuth: `{"issuer":"{{issuer}}","token_endpoint":"http://idp.example/token"}`}, nil},
		{"a token endpoint that is a number", wellKnownOAuth, map[string]string{wellKnownOAuth: `{"issuer":"{{issuer}}","token_endpoint":7}`}, nil},
		{"grant types as a string", wellKnownOAuth, map[string]string{wellKnownOAuth: `{"issuer":"{{issuer}}","grant_types_supported":"password"}`}, nil},
		{"not json", wellKnownOAuth, map[string]string{wellKnownOAuth: `<html>`}, nil},
		{"not a well-known path", "/metadata", map[string]string{"/metadata": good}, nil},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			server := metadataServer(t, test.documents)
			got, err := Discover(context.Background(), nil, server.URL+test.path)
			if test.want == nil {
				if !errors.Is(err, ErrMetadata) || got != nil {
					t.Fatalf("Discover: %+v, %v; want ErrMetadata", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if want := test.want(server.URL); !reflect.DeepEqual(got, want) {
				t.Errorf("Discover:\n got %+v\nwant %+v", got, want)
			}
		})
	}

	t.Run("a missing document", func(t *testing.T) {
		server := metadataServer(t, nil)
		if _, err := Discover(context.Background(), nil, server.URL+wellKnownOAuth); !errors.Is(err, oauth.ErrHTTPStatus) {
			t.Errorf("Discover: %v, want ErrHTTPStatus", err)
		}
	})
}

func TestDiscoverIssuer(t *testing.T) {
	tests := []struct {
		name      string
		path      string // of the issuer
		documents map[string]string
		wantToken string // token endpoint path; "" for an error
	}{
		{"RFC 8414 first", "", map[string]string{
			wellKnownOAuth: `{"issuer":"{{issuer}}","token_endpoint":"{{issuer}}/oauth"}`,
			wellKnownOIDC:  `{"issuer":"{{issuer}}","token_endpoint":"{{issuer}}/oidc"}`,
		}, "/oauth"},
		{"OIDC when RFC 8414 is missing", "/realms/corp", map[string]string{
			"/realms/corp" + wellKnownOIDC: `{"issuer":"{{issuer}}/realms/corp","token_endpoint":"{{issuer}}/realms/corp/token"}`,
		}, "/realms/corp/token"},
		{"RFC 8414 with a path", "/realms/corp", map[string]string{
			wellKnownOAuth + "/realms/corp": `{"issuer":"{{issuer}}/realms/corp","token_endpoint":"{{issuer}}/t"}`,
		}, "/t"},
		{"neither", "", map[string]string{}, ""},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			server := metadataServer(t, test.documents)
			got, err := DiscoverIssuer(context.Background(), nil, server.URL+test.path)
			if test.wantToken == "" {
				if err == nil {
					t.Fatalf("DiscoverIssuer: %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("DiscoverIssuer: %v", err)
			}
			if got.TokenEndpoint != server.URL+test.wantToken || !got.SupportsTokenExchange() {
				t.Errorf("DiscoverIssuer: %+v", got)
			}
		})
	}
}

func FuzzTokenResponse(f *testing.F) {
	good, _ := json.Marshal(goodResponse)
	f.Add(good, 200)
	f.Add([]byte(`{"error":"invalid_grant","error_description":"`+idpSubject+`"}`), 400)
	f.Add([]byte(`{"access_token":"a","token_type":"n_a","issued_token_type":"x","expires_in":"7"}`), 200)
	client, err := NewClient(ClientOptions{TokenEndpoint: "https://idp.example/token", ClientID: idpClientID, ClientSecret: idpClientSecret})
	if err != nil {
		f.Fatal(err)
	}
	request := testClientRequest()
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status == http.StatusOK {
			issued, err := parseTokenResponse(body, request.Scopes)
			if err == nil && (issued.AccessToken == "" || issued.IssuedTokenType == "" ||
				(issued.TokenType != "Bearer" && issued.TokenType != "N_A") || issued.ExpiresIn < 0) {
				t.Fatalf("accepted %+v", issued)
			}
			return
		}
		err := client.errorResponse(body, status, &request)
		var oauthErr *OAuthError
		if errors.As(err, &oauthErr) {
			if !isErrorCode(oauthErr.ErrorField) || len(oauthErr.DescriptionField) > maxErrorDescription ||
				strings.Contains(oauthErr.DescriptionField, idpSubject) || strings.Contains(oauthErr.DescriptionField, idpClientSecret) {
				t.Fatalf("error %+v", oauthErr)
			}
		} else if !errors.Is(err, ErrTokenResponse) {
			t.Fatalf("error %v is neither an *OAuthError nor ErrTokenResponse", err)
		}
	})
}
