package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/sample"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// federatedLedger starts the sample ledger upstream and a broker at
// brokerAddress whose authorization server signs users in at idp (its
// relying party broker-login, through connector "corp") instead of with
// local passwords, and serves the ledger with delegated tool tokens. The
// agent is the public client "agent" with redirect URI agentRedirect.
// It returns the broker's URL and the ledger's audience.
func federatedLedger(t *testing.T, brokerAddress string, idp *testIDP, agentRedirect string) (brokerURL, audience string) {
	t.Helper()
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	issuer := "http://" + brokerAddress
	ledgerAddress := freeAddress(t)
	audience = "http://" + ledgerAddress + "/mcp"
	startProcess(t, ledgerAddress, bin, "upstream", "sample", "--listen", ledgerAddress,
		"--issuer", issuer, "--audience", audience)
	brokerURL = startBrokerAt(t, brokerAddress, scenario(t, "federated-ledger"), filepath.Join(t.TempDir(), "broker.db"), issuer, idp.Issuer, agentRedirect, audience)
	return brokerURL, audience
}

// browser is a user agent with a cookie jar that follows redirects itself,
// across origins, and keeps a trail of what it requested.
type browser struct {
	t      *testing.T
	client *http.Client
	trail  []string
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a GET (form nil) or a form POST and returns the response with
// its body read.
func (b *browser) do(target *url.URL, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var resp *http.Response
	var err error
	method := http.MethodGet
	if form == nil {
		resp, err = b.client.Get(target.String())
	} else {
		method = http.MethodPost
		resp, err = b.client.PostForm(target.String(), form)
	}
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.trail = append(b.trail, fmt.Sprintf("%s %s://%s%s %d", method, target.Scheme, target.Host, target.Path, resp.StatusCode))
	return resp, string(body)
}

// signIn plays the user from start: it follows redirects on any origin,
// signs in on the identity provider's login form (fields login and
// password), allows on the broker's consent page, and stops before
// requesting a URL stop accepts, which it returns. When the login form
// comes back after signing in (wrong credentials) or a page has no form
// to answer, it returns nil and that page.
func (b *browser) signIn(start, login, password string, stop func(*url.URL) bool) (*url.URL, string) {
	b.t.Helper()
	page, err := url.Parse(start)
	if err != nil {
		b.t.Fatal(err)
	}
	var form url.Values
	signedIn := false
	for step := 0; step < 12; step++ {
		if stop(page) {
			return page, ""
		}
		resp, body := b.do(page, form)
		form = nil
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			next, err := page.Parse(resp.Header.Get("Location"))
			if err != nil {
				b.t.Fatal(err)
			}
			page = next
			continue
		}
		tag := formTag.FindString(body)
		if resp.StatusCode != http.StatusOK || tag == "" {
			return nil, body
		}
		action, err := page.Parse(tagAttributes(tag)["action"])
		if err != nil {
			b.t.Fatal(err)
		}
		form = url.Values{}
		for _, input := range inputTag.FindAllString(body, -1) {
			a := tagAttributes(input)
			if strings.EqualFold(a["type"], "hidden") && a["name"] != "" {
				form.Add(a["name"], a["value"])
			}
		}
		switch {
		case strings.Contains(body, `name="login"`) && strings.Contains(body, `name="password"`):
			if signedIn {
				return nil, body
			}
			signedIn = true
			form.Set("login", login)
			form.Set("password", password)
		case strings.Contains(body, `name="consent"`):
			form.Set("consent", "allow")
		default:
			return nil, body
		}
		page = action
	}
	b.t.Fatalf("sign-in did not end; requests:\n%s", strings.Join(b.trail, "\n"))
	return nil, ""
}

// missed is the first of the steps, in order, that the browser's trail
// does not have (a step is the beginning of a line: "GET <url> <status>");
// "" when it has them all.
func (b *browser) missed(steps []string) string {
	next := 0
	for _, step := range b.trail {
		if next < len(steps) && strings.HasPrefix(step, steps[next]) {
			next++
		}
	}
	if next < len(steps) {
		return steps[next]
	}
	return ""
}

// agentAuthorizeURL is the agent's authorization request at the broker, with
// PKCE S256 and state; it returns the URL and the code verifier.
func agentAuthorizeURL(brokerURL, redirect, state string) (string, string) {
	verifier := "federated-sign-in-verifier-0123456789-abcdefghijklmnop"
	sum := sha256.Sum256([]byte(verifier))
	query := url.Values{
		"response_type":         {"code"},
		"client_id":             {"agent"},
		"redirect_uri":          {redirect},
		"scope":                 {"ledger:read"},
		"state":                 {state},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	return brokerURL + "/authorize?" + query.Encode(), verifier
}

// A user signs in at a real OpenID Provider (panva's oidc-provider) for an
// agent: the broker's /authorize sends the browser to the provider, the
// provider's login form takes the password, its code comes back to the
// broker's /callback, the broker verifies the ID token and asks consent,
// and the agent redeems its code at the broker. The user is the ID
// token's sub (carol-7d1f), not the login name: the broker's access token
// and the upstream's delegated token both carry sub = carol-7d1f, with the
// provider's groups in the access token, and act.sub = the agent.
func TestFederatedSignIn(t *testing.T) {
	brokerAddress := freeAddress(t)
	brokerIssuer := "http://" + brokerAddress
	idp := startIDPArgs(t, "--login-redirect", brokerIssuer+"/callback")
	agentRedirect := "http://" + freeAddress(t) + "/cb"
	brokerURL, audience := federatedLedger(t, brokerAddress, idp, agentRedirect)
	idpURL, _ := url.Parse(idp.Issuer)
	atCallback := func(u *url.URL) bool { return u.Host == brokerAddress && u.Path == "/callback" }
	atAgent := func(u *url.URL) bool { return strings.HasPrefix(u.String(), agentRedirect) }

	t.Run("wrong password", func(t *testing.T) {
		b := newBrowser(t)
		start, _ := agentAuthorizeURL(brokerURL, agentRedirect, "state-wrong")
		back, page := b.signIn(start, "carol", "not-carols-password", atCallback)
		if back != nil || !strings.Contains(page, "Wrong login or password") {
			t.Fatalf("wrong password reached %v; page:\n%s\nrequests:\n%s", back, page, strings.Join(b.trail, "\n"))
		}
		for _, step := range b.trail {
			if !strings.Contains(step, idpURL.Host) && !strings.Contains(step, brokerAddress+"/authorize ") {
				t.Errorf("request %q: only the broker's /authorize and the IdP may be reached", step)
			}
		}
	})

	t.Run("tampered state at the callback", func(t *testing.T) {
		b := newBrowser(t)
		start, _ := agentAuthorizeURL(brokerURL, agentRedirect, "state-tampered")
		callback, page := b.signIn(start, "carol", "carol-password", atCallback)
		if callback == nil {
			t.Fatalf("the IdP did not send the browser back: %s\nrequests:\n%s", page, strings.Join(b.trail, "\n"))
		}
		query := callback.Query()
		if query.Get("code") == "" || query.Get("state") == "" {
			t.Fatalf("callback %s: want code and state", callback)
		}
		tampered := *callback
		query.Set("state", query.Get("state")+"x")
		tampered.RawQuery = query.Encode()
		resp, body := b.do(&tampered, nil)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
			t.Fatalf("tampered state: %d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		// Without the browser's federation cookie the callback is refused too.
		resp, body = newBrowser(t).do(callback, nil)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Fatalf("callback without the cookie: %d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
	})

	b := newBrowser(t)
	start, verifier := agentAuthorizeURL(brokerURL, agentRedirect, "state-ok")
	back, page := b.signIn(start, "carol", "carol-password", atAgent)
	if back == nil {
		t.Fatalf("sign-in did not return to the agent: %s\nrequests:\n%s", page, strings.Join(b.trail, "\n"))
	}
	t.Logf("requests:\n%s", strings.Join(b.trail, "\n"))
	// The way there: the broker, the IdP's login form, the broker's
	// callback and consent page.
	want := []string{
		"GET " + brokerURL + "/authorize 303",
		"GET " + idp.Issuer + "/auth 303",
		"POST " + idp.Issuer + "/interaction/",
		"GET " + brokerURL + "/callback 200",
		"POST " + brokerURL + "/authorize 303",
	}
	if missed := b.missed(want); missed != "" {
		t.Fatalf("the flow missed %q; requests:\n%s", missed, strings.Join(b.trail, "\n"))
	}
	query := back.Query()
	code := query.Get("code")
	if code == "" || query.Get("state") != "state-ok" || query.Get("iss") != brokerURL || query.Get("error") != "" {
		t.Fatalf("authorization response %s: want a code, state-ok and iss %s", back, brokerURL)
	}

	// The agent redeems the code at the broker (public client, PKCE).
	resp, err := http.PostForm(brokerURL+"/token", url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {agentRedirect},
		"client_id":     {"agent"},
		"code_verifier": {verifier},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := readBody(t, resp)
	var tokens struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(raw, &tokens); err != nil || resp.StatusCode != http.StatusOK || tokens.AccessToken == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, raw)
	}
	_, claims := oauthtest.Decode(t, tokens.AccessToken)
	for k, want := range map[string]any{
		"iss":       brokerURL,
		"sub":       "carol-7d1f",
		"client_id": "agent",
		"groups":    []any{"finance"},
	} {
		if !reflect.DeepEqual(claims[k], want) {
			t.Errorf("access token %s = %#v, want %#v (all: %v)", k, claims[k], want, claims)
		}
	}

	// An MCP call through the broker: the upstream sees a delegated token
	// for the federated user, acted by the agent.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, brokerURL+"/mcp", tokens.AccessToken)
	res := callTool(t, ctx, session, "ledger_whoami", nil)
	raw, _ = json.Marshal(res.StructuredContent)
	var seen sample.Identity
	if err := json.Unmarshal(raw, &seen); err != nil || res.IsError {
		t.Fatalf("whoami: %v: %s", err, raw)
	}
	upstream := seen.VerifiedClaims
	if !seen.Verified || upstream == nil || upstream.Subject != "carol-7d1f" || !slices.Equal(upstream.Audience, []string{audience}) || upstream.Scope != "ledger:read" {
		t.Fatalf("upstream saw %s, want a verified token for carol-7d1f with aud %s and scope ledger:read", raw, audience)
	}
	if upstream.Actor["sub"] != "agent" {
		t.Errorf("upstream saw act %v, want sub agent", upstream.Actor)
	}
}

// Strata's connector redirects are honoured: the identity provider sends
// the browser back to oauthLoginRedirect's URL, which the broker serves;
// /logout sends the browser through the identity provider's RP-initiated
// logout to an oauthLogoutRedirect URL, and to no other.
func TestFederatedLoginAndLogoutRedirects(t *testing.T) {
	brokerAddress := freeAddress(t)
	brokerIssuer := "http://" + brokerAddress
	idp := startIDPArgs(t, "--login-redirect", brokerIssuer+"/oidc-callback")
	agentRedirect := "http://" + freeAddress(t) + "/cb"
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	ledgerAddress := freeAddress(t)
	audience := "http://" + ledgerAddress + "/mcp"
	startProcess(t, ledgerAddress, bin, "upstream", "sample", "--listen", ledgerAddress, "--issuer", brokerIssuer, "--audience", audience)
	signedOut := "http://" + freeAddress(t) + "/signed-out"
	brokerURL := startBrokerAt(t, brokerAddress, scenario(t, "federated-redirects"), filepath.Join(t.TempDir(), "broker.db"),
		brokerIssuer, idp.Issuer, agentRedirect, audience, signedOut)

	b := newBrowser(t)
	start, _ := agentAuthorizeURL(brokerURL, agentRedirect, "state-redirects")
	back, page := b.signIn(start, "carol", "carol-password", func(u *url.URL) bool { return strings.HasPrefix(u.String(), agentRedirect) })
	if back == nil || back.Query().Get("code") == "" {
		t.Fatalf("sign-in did not return to the agent: %s\nrequests:\n%s", page, strings.Join(b.trail, "\n"))
	}
	callback := false
	for _, step := range b.trail {
		callback = callback || strings.HasPrefix(step, "GET "+brokerURL+"/oidc-callback ")
	}
	if !callback {
		t.Errorf("the identity provider did not send the browser to the configured callback:\n%s", strings.Join(b.trail, "\n"))
	}

	logout, _ := url.Parse(brokerURL + "/logout")
	resp, body := b.do(logout, nil)
	location, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || location == nil || !strings.HasPrefix(location.String(), idp.Issuer) ||
		location.Query().Get("client_id") != "broker-login" || location.Query().Get("post_logout_redirect_uri") != signedOut {
		t.Errorf("logout: %d to %q, want the identity provider's end_session_endpoint with client_id and the first logout URL\n%s", resp.StatusCode, location, body)
	}
	chosen, _ := url.Parse(brokerURL + "/logout?post_logout_redirect_uri=" + url.QueryEscape("https://console.example/signed-out"))
	if resp, _ := b.do(chosen, nil); resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), url.QueryEscape("https://console.example/signed-out")) {
		t.Errorf("logout to the second configured URL: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	elsewhere, _ := url.Parse(brokerURL + "/logout?post_logout_redirect_uri=" + url.QueryEscape("https://attacker.example/"))
	if resp, _ := b.do(elsewhere, nil); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("logout to an address not configured: %d %q, want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
}
