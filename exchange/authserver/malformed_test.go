package authserver

import (
	"net/http"
	"strings"
	"testing"
)

// Malformed input to every endpoint gets a 4xx, never a 5xx or a dropped
// connection (a handler panic), and token-bearing endpoints say no-store
// on errors too.
func TestMalformedInputIsRefusedCleanly(t *testing.T) {
	ts := newTestServer(t, withExchanger())
	type probe struct {
		method, path, contentType, body string
		basicUser, basicPass            string
		authorization                   string
	}
	form := "application/x-www-form-urlencoded"
	long := strings.Repeat("A", 70<<10)
	probes := []probe{
		{method: "POST", path: "/token", contentType: form, body: "%zz"},
		{method: "POST", path: "/token", contentType: form, body: "grant_type=authorization_code&code=x&code=y"},
		{method: "POST", path: "/token", contentType: form, body: "grant_type="},
		{method: "POST", path: "/token", contentType: form, body: "grant_type=authorization_code&code=%00&client_id=agent&code_verifier=" + strings.Repeat("a", 200)},
		{method: "POST", path: "/token", contentType: form, body: "grant_type=refresh_token&refresh_token=a.b.c&client_id=agent"},
		{method: "POST", path: "/token", contentType: form, body: "grant_type=client_credentials", basicUser: "%zz", basicPass: "x"},
		{method: "POST", path: "/token", contentType: form, body: "grant_type=client_credentials", authorization: "Basic !!!"},
		{method: "POST", path: "/token", contentType: form, body: "grant_type=client_credentials&client_id=agent"},
		{method: "POST", path: "/token", contentType: form, body: "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token=a.b.c&subject_token_type=urn:ietf:params:oauth:token-type:access_token&audience=" + ledgerAudience, basicUser: "exchanger", basicPass: exchangerSecret},
		{method: "POST", path: "/token", contentType: form, body: "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token=" + long, basicUser: "exchanger", basicPass: exchangerSecret},
		{method: "POST", path: "/token", contentType: "application/json", body: `{"grant_type":"client_credentials"}`, basicUser: "webapp", basicPass: webappSecret},
		{method: "POST", path: "/introspect", contentType: form, body: "token=a.b.c&token_type_hint=%ff", basicUser: "resource-server", basicPass: resourceSecret},
		{method: "POST", path: "/revoke", contentType: form, body: "token=a.b.c&client_id=agent"},
		{method: "POST", path: "/register", contentType: "application/json", body: `{"redirect_uris":["https://x/"],"client_name":"` + strings.Repeat("\u202e", 150) + `"}`},
		{method: "POST", path: "/register", contentType: "application/json", body: `[]`},
		{method: "POST", path: "/register", contentType: "application/json", body: `{"redirect_uris":"https://x/"}`},
		{method: "POST", path: "/register", contentType: "application/json", body: `{"redirect_uris":["javascript:alert(1)//"]}`},
		{method: "GET", path: "/authorize?client_id=agent&redirect_uri=%zz"},
		{method: "GET", path: "/authorize?client_id=agent&client_id=webapp"},
		{method: "GET", path: "/authorize?" + strings.Repeat("a=b&", 600)},
		{method: "GET", path: "/authorize?client_id=agent&response_type=code&code_challenge_method=S256&code_challenge=" + strings.Repeat("a", 43) + "&resource=%23&scope=mcp"},
		{method: "GET", path: "/authorize?client_id=agent&response_type=code&code_challenge_method=S256&code_challenge=" + strings.Repeat("a", 43) + "&request=e30.e30.&scope=mcp"},
		{method: "POST", path: "/authorize", contentType: form, body: "csrf=x&username=a&password=b"},
		{method: "POST", path: "/authorize", contentType: form, body: long},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range probes {
		req, err := http.NewRequest(p.method, ts.issuer+p.path, strings.NewReader(p.body))
		if err != nil {
			t.Fatal(err)
		}
		if p.contentType != "" {
			req.Header.Set("Content-Type", p.contentType)
		}
		if p.basicUser != "" {
			req.SetBasicAuth(p.basicUser, p.basicPass)
		}
		if p.authorization != "" {
			req.Header.Set("Authorization", p.authorization)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s %.80s: %v (handler panic?)", p.method, p.path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Errorf("%s %.80s %.80q: status %d", p.method, p.path, p.body, resp.StatusCode)
		}
		if p.path == "/token" || p.path == "/introspect" || p.path == "/revoke" || p.path == "/register" {
			assertNoStore(t, resp.Header)
		}
	}
}
