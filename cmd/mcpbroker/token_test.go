package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
	"golang.org/x/crypto/bcrypt"
)

// runToken runs "mcpbroker token args..." with stdin and returns what it
// printed and its exit code.
func runToken(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCommand(t, tokenCommand(), stdin, args...)
}

// newIssuer starts an authorization server whose tokens are for the
// ledger.
func newIssuer(t *testing.T) *oauthtest.Issuer {
	t.Helper()
	return oauthtest.NewIssuer(t, &oauthtest.Options{Audience: "https://ledger.example/"})
}

// hs256Token is a token signed with a shared secret, which inspect must
// never accept.
func hs256Token(issuer string) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt"}`))
	claims := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"iss":%q,"sub":"alice","exp":%d}`, issuer, time.Now().Add(time.Hour).Unix())))
	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write([]byte(header + "." + claims))
	return header + "." + claims + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestTokenInspect(t *testing.T) {
	server, other := newIssuer(t), newIssuer(t)
	otherKey := oauthtest.NewKey(t, "other-1", "ES256")
	other.Publish(otherKey)
	now := time.Now()
	good := server.Token(t, now, server.EC, nil)
	eddsa := server.Token(t, now, server.Ed, nil)
	expired := server.Token(t, now.Add(-2*time.Hour), server.EC, nil)
	foreign := other.Token(t, now, otherKey, nil)
	parts := strings.Split(good, ".")
	_, claims := oauthtest.Decode(t, good)
	claims["sub"] = "mallory"
	tampered := parts[0] + "." + oauthtest.B64(oauthtest.JSON(t, claims)) + "." + parts[2]
	jwks := server.URL + "/jwks"

	tests := []struct {
		name      string
		stdin     string
		args      []string
		wantCode  int
		wantOut   []string
		wantError string
	}{
		{name: "decode only", args: []string{good}, wantOut: []string{`"sub": "alice"`, `"typ": "at+jwt"`, "exp: ", "iat: ", "expired: no", "signature: not verified"}},
		{name: "from standard input", stdin: good + "\n", args: []string{"-"}, wantOut: []string{`"client_id": "agent-app"`}},
		{name: "verified with the JWKS", args: []string{"--jwks", jwks, good}, wantOut: []string{"signature: valid (ES256", "verified: yes"}},
		{name: "EdDSA verified with the JWKS", args: []string{"--jwks", jwks, eddsa}, wantOut: []string{"signature: valid (EdDSA", "verified: yes"}},
		{name: "verified through the issuer's metadata", args: []string{"--issuer", server.ID, "--audience", "https://ledger.example/", good}, wantOut: []string{"signature: valid", "verified: yes"}},
		{name: "tampered", args: []string{"--jwks", jwks, tampered}, wantCode: 1, wantOut: []string{`"sub": "mallory"`, "signature: INVALID"}, wantError: "bad signature"},
		{name: "another issuer's key", args: []string{"--jwks", jwks, foreign}, wantCode: 1, wantError: "kid: no matching key"},
		{name: "another issuer", args: []string{"--issuer", other.ID, good}, wantCode: 1, wantError: "invalid token: issuer"},
		{name: "expired", args: []string{"--jwks", jwks, expired}, wantCode: 1, wantOut: []string{"expired: yes"}, wantError: "invalid token: expired"},
		{name: "expired, decode only", args: []string{expired}, wantOut: []string{"expired: yes"}},
		{name: "audience missing", args: []string{"--audience", "https://mail.example/", good}, wantCode: 1, wantError: "aud does not contain"},
		{name: "HS256", args: []string{"--jwks", jwks, hs256Token(server.ID)}, wantCode: 1, wantError: "invalid token: alg"},
		{name: "not a JWT", args: []string{"opaque-token"}, wantCode: 1, wantError: "not a JWT"},
		{name: "no token", args: nil, wantCode: 2, wantError: "want one argument"},
		{name: "both key sources", args: []string{"--jwks", jwks, "--issuer", server.ID, good}, wantCode: 2, wantError: "exclude each other"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			stdout, stderr, code := runToken(t, test.stdin, append([]string{"inspect"}, test.args...)...)
			if code != test.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, test.wantCode, stdout, stderr)
			}
			for _, want := range test.wantOut {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			if !strings.Contains(stderr, test.wantError) {
				t.Errorf("stderr lacks %q:\n%s", test.wantError, stderr)
			}
			for _, arg := range append(test.args, test.stdin) {
				if len(arg) > 100 && (strings.Contains(stdout, arg[len(arg)-40:]) || strings.Contains(stderr, arg[len(arg)-40:])) {
					t.Error("the token was printed")
				}
			}
		})
	}
}

func TestTokenHashPassword(t *testing.T) {
	tests := []struct {
		name     string
		stdin    string
		password string // what the hash must match; "" for a refusal
	}{
		{"a line", "correct horse battery staple\n", "correct horse battery staple"},
		{"a CRLF line", "pässword\r\n", "pässword"},
		{"no line break, 72 bytes", strings.Repeat("p", 72), strings.Repeat("p", 72)},
		{"empty", "\n", ""},
		{"nothing", "", ""},
		{"73 bytes", strings.Repeat("p", 73) + "\n", ""},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			stdout, stderr, code := runToken(t, test.stdin, "hash-password")
			if test.password == "" {
				if code == 0 || stdout != "" {
					t.Fatalf("exit %d, stdout %q; want a refusal", code, stdout)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			hash := []byte(strings.TrimSuffix(stdout, "\n"))
			if err := bcrypt.CompareHashAndPassword(hash, []byte(test.password)); err != nil {
				t.Errorf("the hash does not match the password: %v", err)
			}
			if err := bcrypt.CompareHashAndPassword(hash, []byte("X"+test.password[1:])); err == nil {
				t.Error("the hash matches another password")
			}
			if cost, err := bcrypt.Cost(hash); err != nil || cost != passwordCost {
				t.Errorf("cost %d (%v), want %d", cost, err, passwordCost)
			}
		})
	}
}

func TestTokenExchange(t *testing.T) {
	server := newIssuer(t)
	issued := server.Token(t, time.Now(), server.EC, nil)
	const secret = "connector-secret"
	var form map[string][]string
	var user, password string
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		form = r.PostForm
		user, password, _ = r.BasicAuth()
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": "http://" + r.Host, "token_endpoint": "http://" + r.Host + "/token"})
		case "/token":
			if r.PostForm.Get("audience") == "https://refused.example/" {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"error":"invalid_target","error_description":"audience not allowed"}`)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": issued, "issued_token_type": exchange.TokenTypeAccessToken,
				"token_type": "Bearer", "expires_in": 3600, "scope": "ledger:read"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer endpoint.Close()
	configFile := filepath.Join(t.TempDir(), "mcpbroker.yaml")
	config := fmt.Sprintf(`version: 1
connectors:
  - name: corp-idp
    type: oidc
    oidcWellKnownURL: %s/.well-known/openid-configuration
    oauthClientID: mcpbroker
    oauthClientSecret: %s
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
apps:
  - name: ledger
    type: mcpProxy
    upstream:
      transport: stream
      stream:
        url: http://127.0.0.1:9000/mcp
`, endpoint.URL, secret)
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		stdin     string
		args      []string
		wantCode  int
		wantOut   []string
		wantRaw   bool
		wantUser  string
		wantError string
	}{
		{name: "a connector", args: []string{"--config", configFile, "--idp", "corp-idp", "--subject-token", "subject-token-value", "--audience", "https://ledger.example/", "--scope", "ledger:read"},
			wantOut: []string{"issued_token_type: " + exchange.TokenTypeAccessToken, "token_type: Bearer", "expires_in: 1h0m0s", "scope: ledger:read", `"sub": "alice"`}, wantUser: "mcpbroker"},
		{name: "a token endpoint, raw", stdin: "subject-token-value\n", args: []string{"--token-endpoint", endpoint.URL + "/token", "--client-id", "cli", "--client-secret", "s", "--subject-token", "-", "--audience", "https://ledger.example/", "--raw"},
			wantOut: []string{`"sub": "alice"`}, wantRaw: true, wantUser: "cli"},
		{name: "refused", args: []string{"--token-endpoint", endpoint.URL + "/token", "--client-id", "cli", "--client-secret", "s", "--subject-token", "subject-token-value", "--audience", "https://refused.example/"},
			wantCode: 1, wantError: "invalid_target: audience not allowed", wantUser: "cli"},
		{name: "an unknown connector", args: []string{"--config", configFile, "--idp", "other", "--subject-token", "x", "--audience", "a"}, wantCode: 1, wantError: "have: embedded, corp-idp"},
		{name: "no provider", args: []string{"--subject-token", "x", "--audience", "a"}, wantCode: 2, wantError: "give --idp"},
		{name: "a connector with its own credentials", args: []string{"--config", configFile, "--idp", "corp-idp", "--client-id", "x", "--subject-token", "x", "--audience", "a"}, wantCode: 2, wantError: "brings its own client"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			form, user, password = nil, "", ""
			stdout, stderr, code := runToken(t, test.stdin, append([]string{"exchange"}, test.args...)...)
			if code != test.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, test.wantCode, stdout, stderr)
			}
			for _, want := range test.wantOut {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			if strings.Contains(stdout, issued) != test.wantRaw {
				t.Errorf("the issued token printed: %v, want %v", !test.wantRaw, test.wantRaw)
			}
			if !strings.Contains(stderr, test.wantError) || strings.Contains(stderr, "subject-token-value") {
				t.Errorf("stderr %q, want %q and no token", stderr, test.wantError)
			}
			if test.wantUser == "" {
				return
			}
			if user != test.wantUser || form["subject_token"][0] != "subject-token-value" || form["grant_type"][0] != exchange.GrantTypeTokenExchange {
				t.Errorf("request by %q with form %v", user, form)
			}
			if test.wantUser == "mcpbroker" && password != secret {
				t.Errorf("the connector's secret was not sent")
			}
		})
	}
}
