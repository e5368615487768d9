package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// loginServerOptions make a loginServer misbehave.
type loginServerOptions struct {
	challengeMethods []string // code_challenge_methods_supported; default S256
	iss              string   // the redirect's iss: default the issuer; "-" for none
	state            string   // replaces the request's state on the redirect
	deny             bool     // answer the consent with access_denied
	tokenError       string   // the token endpoint refuses every code with this error
	authorizeAt      string   // the metadata's authorization_endpoint; default the server's own
}

// loginServer is an authorization server whose pages work like the
// embedded one's: a login form, then a consent form, each with a hidden
// csrf field bound to a cookie; then a redirect with code, state and iss.
// Its token endpoint checks the client, the redirect URI and the PKCE
// verifier.
type loginServer struct {
	*httptest.Server
	t       *testing.T
	options loginServerOptions

	mu           sync.Mutex
	flows        map[string]*loginServerFlow // by cookie
	codes        map[string]*loginServerFlow
	tokenRequest url.Values // the last token request's form
	basicUser    string     // and its HTTP Basic user
}

type loginServerFlow struct {
	request  url.Values // the authorization request
	csrf     string
	signedIn bool
}

const (
	loginUser     = "alice"
	loginPassword = "correct horse"
	loginSecret   = "cli-secret"
)

var loginPages = template.Must(template.New("login").Parse(`<!doctype html><html><body>
<form method="get" action="/help"><input type="hidden" name="topic" value="sign-in"><button>Help</button></form>
{{if .Message}}<p class="error" role="alert">{{.Message}}</p>{{end}}
{{if .Consent}}<h1>Allow access?</h1>
<form method="post" action="/authorize">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="consent" value="allow">Allow</button>
<button type="submit" name="consent" value="deny">Deny</button>
</form>{{else}}<h1>Sign in</h1>
<form method="POST" action="/authorize">
<input type=hidden name=csrf value="{{.CSRF}}">
<input type="text" name="username"><input type="password" name="password">
<button type="submit">Sign in</button>
</form>{{end}}
</body></html>`))

func newLoginServer(t *testing.T, options loginServerOptions) *loginServer {
	t.Helper()
	if options.challengeMethods == nil {
		options.challengeMethods = []string{"S256"}
	}
	s := &loginServer{t: t, options: options, flows: map[string]*loginServerFlow{}, codes: map[string]*loginServerFlow{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		authorize := s.URL + "/authorize"
		if s.options.authorizeAt != "" {
			authorize = s.options.authorizeAt
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": s.URL, "authorization_endpoint": authorize, "token_endpoint": s.URL + "/token",
			"code_challenge_methods_supported":               s.options.challengeMethods,
			"authorization_response_iss_parameter_supported": true,
		})
	})
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("POST /authorize", s.form)
	mux.HandleFunc("POST /token", s.token)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *loginServer) authorize(w http.ResponseWriter, r *http.Request) {
	query := r.URL.Query()
	redirectURI, err := url.Parse(query.Get("redirect_uri"))
	switch {
	case query.Get("response_type") != "code",
		query.Get("client_id") != "cli" && query.Get("client_id") != "public-cli",
		err != nil || redirectURI.Scheme != "http" || redirectURI.Hostname() != "127.0.0.1" || redirectURI.Port() == "0" || redirectURI.Path != "/callback",
		query.Get("code_challenge_method") != "S256", len(query.Get("code_challenge")) != 43,
		query.Get("state") == "":
		s.t.Errorf("authorization request %v", query)
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	cookie := randomString(16)
	flow := &loginServerFlow{request: query, csrf: randomString(16)}
	s.mu.Lock()
	s.flows[cookie] = flow
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "flow", Value: cookie, Path: "/authorize", HttpOnly: true})
	s.render(w, flow, "")
}

func (s *loginServer) render(w http.ResponseWriter, flow *loginServerFlow, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = loginPages.Execute(w, map[string]any{"CSRF": flow.csrf, "Consent": flow.signedIn, "Message": message})
}

// form takes the login and consent forms, in a flow the cookie names.
func (s *loginServer) form(w http.ResponseWriter, r *http.Request) {
	cookie, err := r.Cookie("flow")
	if err != nil {
		http.Error(w, "no flow cookie", http.StatusForbidden)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	flow := s.flows[cookie.Value]
	if flow == nil || r.PostFormValue("csrf") != flow.csrf {
		http.Error(w, "bad csrf", http.StatusForbidden)
		return
	}
	flow.csrf = randomString(16)
	if !flow.signedIn {
		if r.PostFormValue("username") != loginUser || r.PostFormValue("password") != loginPassword {
			s.render(w, flow, "Invalid username & password.")
			return
		}
		flow.signedIn = true
		s.render(w, flow, "")
		return
	}
	if r.PostFormValue("consent") != "allow" {
		http.Error(w, "want consent=allow", http.StatusBadRequest)
		return
	}
	delete(s.flows, cookie.Value)
	answer := url.Values{"state": {flow.request.Get("state")}, "iss": {s.URL}}
	if s.options.deny {
		answer.Set("error", "access_denied")
		answer.Set("error_description", "The user denied the request.")
	} else {
		code := randomString(16)
		s.codes[code] = flow
		answer.Set("code", code)
	}
	switch s.options.iss {
	case "":
	case "-":
		answer.Del("iss")
	default:
		answer.Set("iss", s.options.iss)
	}
	if s.options.state != "" {
		answer.Set("state", s.options.state)
	}
	http.Redirect(w, r, flow.request.Get("redirect_uri")+"?"+answer.Encode(), http.StatusSeeOther)
}

func (s *loginServer) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenRequest = r.PostForm
	user, password, hasBasic := r.BasicAuth()
	s.basicUser = user
	refuse := func(code, description string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
	}
	if s.options.tokenError != "" {
		refuse(s.options.tokenError, "the code was already used")
		return
	}
	flow := s.codes[r.PostForm.Get("code")]
	delete(s.codes, r.PostForm.Get("code"))
	if flow == nil || r.PostForm.Get("grant_type") != "authorization_code" {
		refuse("invalid_grant", "unknown code")
		return
	}
	clientID := flow.request.Get("client_id")
	if clientID == "cli" && (!hasBasic || user != "cli" || password != loginSecret || r.PostForm.Has("client_id")) ||
		clientID == "public-cli" && (hasBasic || r.PostForm.Get("client_id") != "public-cli") {
		refuse("invalid_client", "client authentication failed")
		return
	}
	verified := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(verified[:]) != flow.request.Get("code_challenge") {
		refuse("invalid_grant", "PKCE verification failed")
		return
	}
	if r.PostForm.Get("redirect_uri") != flow.request.Get("redirect_uri") {
		refuse("invalid_grant", "redirect_uri differs")
		return
	}
	response := map[string]any{"access_token": "access-" + clientID, "token_type": "Bearer", "expires_in": 3600,
		"scope": flow.request.Get("scope"), "refresh_token": "refresh-" + clientID}
	if clientID == "public-cli" {
		response["expires_in"] = "3600" // as some servers send it
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(response)
}

func TestTokenLogin(t *testing.T) {
	signIn := []string{"--port", "0", "--username", loginUser, "--password-stdin"}
	confidential := slices.Concat([]string{"--client-id", "cli", "--client-secret", loginSecret}, signIn)
	tests := []struct {
		name       string
		options    loginServerOptions
		stdin      string // default: the password
		args       []string
		wantCode   int
		wantOutput *tokenResponse
		wantError  string
	}{
		{name: "a confidential client", args: slices.Concat(confidential, []string{"--scope", "ledger:read", "--scope", "mail:send", "--resource", "https://ledger.example/"}),
			wantOutput: &tokenResponse{AccessToken: "access-cli", TokenType: "Bearer", ExpiresIn: 3600, Scope: "ledger:read mail:send", RefreshToken: "refresh-cli"}},
		{name: "a public client", args: slices.Concat([]string{"--client-id", "public-cli"}, signIn),
			wantOutput: &tokenResponse{AccessToken: "access-public-cli", TokenType: "Bearer", ExpiresIn: 3600, RefreshToken: "refresh-public-cli"}},
		{name: "a wrong password", stdin: "wrong\n", args: confidential, wantCode: 1, wantError: "sign in refused: Invalid username & password."},
		{name: "another issuer's iss", options: loginServerOptions{iss: "https://evil.example"}, args: confidential, wantCode: 1, wantError: `iss "https://evil.example" is not the issuer`},
		{name: "no iss", options: loginServerOptions{iss: "-"}, args: confidential, wantCode: 1, wantError: "has no iss"},
		{name: "another request's state", options: loginServerOptions{state: "forged"}, args: confidential, wantCode: 1, wantError: "state is not this login's"},
		{name: "access denied", options: loginServerOptions{deny: true}, args: confidential, wantCode: 1, wantError: "the authorization server refused: access_denied: The user denied the request."},
		{name: "the code refused", options: loginServerOptions{tokenError: "invalid_grant"}, args: confidential, wantCode: 1, wantError: "the token endpoint refused the code: invalid_grant: the code was already used"},
		{name: "a sign-in page at another origin", options: loginServerOptions{authorizeAt: "https://elsewhere.example/authorize"}, args: confidential, wantCode: 1, wantError: "is not at the issuer's origin"},
		{name: "no S256", options: loginServerOptions{challengeMethods: []string{"plain"}}, args: confidential, wantCode: 1, wantError: "does not support PKCE with S256"},
		{name: "a username without a password", args: []string{"--client-id", "cli", "--port", "0", "--username", loginUser}, wantCode: 2, wantError: "--username and --password-stdin go together"},
		{name: "an empty password", stdin: "\n", args: confidential, wantCode: 1, wantError: "the password on standard input is empty"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			server := newLoginServer(t, test.options)
			stdin := test.stdin
			if stdin == "" {
				stdin = loginPassword + "\n"
			}
			stdout, stderr, code := runToken(t, stdin, append([]string{"login", "--issuer", server.URL}, test.args...)...)
			if code != test.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, test.wantCode, stdout, stderr)
			}
			if !strings.Contains(stderr, test.wantError) {
				t.Errorf("stderr lacks %q:\n%s", test.wantError, stderr)
			}
			if strings.Contains(stderr, loginPassword) || strings.Contains(stderr, loginSecret) {
				t.Errorf("stderr shows the password or the client secret:\n%s", stderr)
			}
			if test.wantOutput == nil {
				if stdout != "" {
					t.Errorf("stdout %q, want nothing", stdout)
				}
				return
			}
			var printed tokenResponse
			decoder := json.NewDecoder(strings.NewReader(stdout))
			decoder.DisallowUnknownFields()
			if err := decoder.Decode(&printed); err != nil {
				t.Fatalf("stdout is not a token response: %v\n%s", err, stdout)
			}
			if printed != *test.wantOutput {
				t.Errorf("printed %+v, want %+v", printed, *test.wantOutput)
			}
			if !strings.Contains(stderr, server.URL+"/authorize?") {
				t.Errorf("stderr lacks the authorization URL:\n%s", stderr)
			}
			if resource := server.tokenRequest.Get("resource"); strings.Contains(strings.Join(test.args, " "), "--resource") && resource != "https://ledger.example/" {
				t.Errorf("token request resource %q", resource)
			}
		})
	}
}

// TestTokenLoginCallback checks the redirect listener alone, as a browser
// reaches it: the first redirect decides, later ones are refused.
func TestTokenLoginCallback(t *testing.T) {
	flow := &codeFlow{metadata: &loginMetadata{Issuer: "https://as.example", IssParameterSupported: true}, state: "the-state"}
	results := make(chan callbackResult, 1)
	handler := flow.callbackHandler(results)
	get := func(query string) *httptest.ResponseRecorder {
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, httptest.NewRequest(http.MethodGet, "/callback?"+query, nil))
		return recorder
	}
	if got := get("code=c&state=the-state&iss=https%3A%2F%2Fas.example"); got.Code != http.StatusOK || !strings.Contains(got.Body.String(), "signed in") {
		t.Errorf("first redirect: %d %q", got.Code, got.Body.String())
	}
	if result := <-results; result.err != nil || result.code != "c" {
		t.Errorf("result %+v", result)
	}
	if got := get("code=d&state=the-state&iss=https%3A%2F%2Fas.example"); got.Code != http.StatusConflict {
		t.Errorf("second redirect: %d, want %d", got.Code, http.StatusConflict)
	}
	if len(results) != 0 {
		t.Error("the second redirect was taken")
	}

	for query, want := range map[string]string{
		"code=c&state=the-state": "has no iss",
		"code=c&state=the-state&iss=https%3A%2F%2Fas.example&iss=https%3A%2F%2Fx":                     "is not the issuer",
		"code=c&iss=https%3A%2F%2Fas.example":                                                         "state is not this login's",
		"state=the-state&iss=https%3A%2F%2Fas.example":                                                "neither code nor error",
		"error=invalid_scope&error_description=%1b%5b2J&state=the-state&iss=https%3A%2F%2Fas.example": "invalid_scope: ?[2J",
	} {
		if _, err := flow.checkCallback(mustQuery(t, query)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", query, err, want)
		}
	}
}

func mustQuery(t *testing.T, query string) url.Values {
	t.Helper()
	values, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	return values
}

func FuzzParsePage(f *testing.F) {
	var page strings.Builder
	_ = loginPages.Execute(&page, map[string]any{"CSRF": "c&amp;x", "Message": "Invalid <b>password</b>"})
	f.Add(page.String())
	page.Reset()
	_ = loginPages.Execute(&page, map[string]any{"CSRF": "c", "Consent": true})
	f.Add(page.String())
	f.Add(`<form method=post><input type=hidden name=csrf value=1><input name=username><input name=password`)
	f.Fuzz(func(t *testing.T, page string) {
		forms, alert := parsePage([]byte(page))
		for _, form := range forms {
			if form.fields == nil {
				t.Fatal("a form without fields")
			}
		}
		if strings.ContainsAny(alert, "\n\t") {
			t.Fatalf("alert %q is not one line", alert)
		}
		_ = fmt.Sprint(pickForm(forms))
	})
}
