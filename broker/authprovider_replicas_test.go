package broker_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// Three replicas are one Auth Provider: a user signs in on the first, the
// code is redeemed on the second, the tokens refreshed on the third;
// replaying the spent refresh token on the first revokes the grant
// everywhere; a token revoked on one is refused by the MCP endpoint of the
// others at once. Discovery and keys go through the balancer in front,
// which is the issuer.
func TestAuthProviderAcrossReplicas(t *testing.T) {
	server := redistest.Start(t)
	upstream, _ := countingUpstream(t)
	issuer, backends := roundRobin(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var replicas []string
	var urls []*url.URL
	for range 3 {
		replica := startBroker(t, scenario(t, "replica-auth"), server.Addr(), issuer, demoPasswordHash, base64.StdEncoding.EncodeToString(key), upstream)
		replicas = append(replicas, replica)
		u, _ := url.Parse(replica)
		urls = append(urls, u)
	}
	backends(urls)

	const redirect = "https://agent.example/cb"
	resource := issuer + "/mcp"
	signIn := func(replica string) (code, verifier string) {
		t.Helper()
		verifier = base64.RawURLEncoding.EncodeToString(key) + "verifier-verifier"
		sum := sha256.Sum256([]byte(verifier))
		query := url.Values{"response_type": {"code"}, "client_id": {"agent"}, "redirect_uri": {redirect}, "scope": {"mcp ledger:read"},
			"state": {"s"}, "resource": {resource}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
		back := browserLogin(t, replica+"/authorize?"+query.Encode(), "demo", "demo-password", "allow")
		if code = back.Query().Get("code"); code == "" {
			t.Fatalf("no code: %s", back)
		}
		return code, verifier
	}
	token := func(replica string, form url.Values) (int, map[string]any) {
		t.Helper()
		form.Set("client_id", "agent")
		resp, err := http.PostForm(replica+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	redeem := func(replica, code, verifier string) map[string]any {
		t.Helper()
		status, body := token(replica, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirect}, "resource": {resource}})
		if status != http.StatusOK {
			t.Fatalf("redeem on %s: %d %v", replica, status, body)
		}
		return body
	}
	refresh := func(replica string, refreshToken any) (int, map[string]any) {
		return token(replica, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken.(string)}, "resource": {resource}})
	}

	// Sign in on one, redeem on another, refresh on a third.
	code, verifier := signIn(replicas[0])
	first := redeem(replicas[1], code, verifier)
	status, second := refresh(replicas[2], first["refresh_token"])
	if status != http.StatusOK {
		t.Fatalf("refresh on the third replica: %d %v", status, second)
	}
	// The spent refresh token played again on the first: refused, and the
	// grant's newer refresh token with it, on every replica.
	if status, body := refresh(replicas[0], first["refresh_token"]); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("replayed refresh token: %d %v, want invalid_grant", status, body)
	}
	if status, body := refresh(replicas[1], second["refresh_token"]); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("the grant's newer refresh token after the replay: %d %v, want invalid_grant", status, body)
	}

	// A token revoked on one replica is refused by the others at once.
	code, verifier = signIn(replicas[2])
	tokens := redeem(replicas[0], code, verifier)
	access := tokens["access_token"].(string)
	mcp := func(replica string) int {
		t.Helper()
		c := newWireClient(t, replica+"/mcp")
		c.header.Set("Accept", "application/json")
		c.header.Set("Authorization", "Bearer "+access)
		resp := c.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, replica := range replicas {
		if status := mcp(replica); status != http.StatusOK {
			t.Fatalf("the fresh token at replica %d: %d", i, status)
		}
	}
	resp, err := http.PostForm(replicas[1]+"/revoke", url.Values{"token": {access}, "client_id": {"agent"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	for _, i := range []int{0, 2} {
		if status := mcp(replicas[i]); status != http.StatusUnauthorized {
			t.Errorf("the revoked token at replica %d: %d, want 401", i, status)
		}
	}
	if !strings.HasPrefix(issuer, "http://127.0.0.1:") {
		t.Fatalf("issuer %s is not the local balancer", issuer)
	}
}

// roundRobin is a balancer that sends each request to the next of the
// backends it is given; until then it refuses, as a balancer without
// backends does (replicas asking their issuer while they start).
func roundRobin(t *testing.T) (base string, serve func([]*url.URL)) {
	var backends atomic.Pointer[[]*url.URL]
	var turn atomic.Int64
	balancer := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		list := backends.Load()
		if list == nil {
			r.SetURL(&url.URL{Scheme: "http", Host: "127.0.0.1:1"})
			return
		}
		r.SetURL((*list)[turn.Add(1)%int64(len(*list))])
		r.Out.Host = r.In.Host
	}})
	t.Cleanup(balancer.Close)
	return balancer.URL, func(list []*url.URL) { backends.Store(&list) }
}
