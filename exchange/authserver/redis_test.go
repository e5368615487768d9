package authserver

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// The flows that hold state across requests, run with the state in Redis
// and every request going to the next of three Servers sharing it: a code
// made on one is redeemed on another, refreshed on a third; concurrent
// redemptions of one code on different Servers yield one pair; reuse of
// a rotated refresh token revokes the grant everywhere; a revocation is
// seen by every Server at once; a form is good for one post whichever
// Server gets it; the throttle counts guesses on all of them together.
func TestFlowsOnRedisReplicas(t *testing.T) {
	server := redistest.Start(t)
	onRedis = server
	t.Cleanup(func() { onRedis = nil })
	for name, test := range map[string]func(*testing.T){
		"code flow, refresh, reuse, revocation": TestAuthorizationCodeFlowWithPKCERefreshIntrospectionAndRevocation,
		"code reuse revokes its tokens":         TestCodeReuseRevokesItsTokens,
		"revocation ends the grant":             TestRevocationEndsTheGrantAndReportsTheJTI,
		"concurrent code redemptions":           TestConcurrentCodeRedemptionsIssueOnePair,
		"client credentials":                    TestClientCredentials,
		"login form single use":                 TestLoginFormSingleUse,
		"consent form single use":               TestConsentFormSingleUse,
		"throttle under concurrency":            TestSignInThrottleHoldsUnderConcurrency,
		"registration limits":                   TestRegistrationIsCapped,
	} {
		if err := server.Client().FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		t.Run(name, test)
	}
}

// Servers sharing Redis make the same secrets however they start, and a
// revocation on one is reported by the others at once.
func TestRedisReplicasShareSecretsAndRevocations(t *testing.T) {
	ts := newTestServer(t, withRedisReplicas(redistest.Start(t), 3))
	sealed, err := ts.server.flows.seal(&flow{CSRF: "c", Expires: time.Now().Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range ts.servers[1:] {
		if _, err := s.flows.open(sealed, time.Now()); err != nil {
			t.Errorf("server %d cannot open a flow server 0 sealed: %v", i+1, err)
		}
	}
	code, verifier := ts.codeFor(t, "webapp", webappRedirect, "mcp", "")
	tokens := ts.exchangeCode("webapp", webappSecret, code, verifier, webappRedirect)
	_, claims := ts.verifyJWT(tokens.str("access_token"))
	jti := claims["jti"].(string)
	if revoked := ts.post("/revoke", url.Values{"token": {tokens.str("access_token")}}, "webapp", webappSecret); revoked.status != http.StatusOK {
		t.Fatalf("revoke: %d %v", revoked.status, revoked.body)
	}
	for i, s := range ts.servers {
		if !s.Revoked(t.Context(), jti) {
			t.Errorf("server %d does not report the revoked token", i)
		}
	}
}

// With Redis down the endpoints answer clear errors, not a hang or a
// crash, and serve again once it is back; with append-only persistence a
// restart of Redis keeps the grants.
func TestRedisOutageAndRestart(t *testing.T) {
	server := redistest.Start(t, redistest.AppendOnly())
	ts := newTestServer(t, withRedisReplicas(server, 2))
	code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
	tokens := ts.exchangeCode("agent", "", code, verifier, agentRedirect)
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	refresh := func(token string) tokenResponse {
		return ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"agent"}}, "", "")
	}

	server.Stop()
	down := refresh(tokens.str("refresh_token"))
	if down.status < 500 || down.str("error") == "" {
		t.Errorf("refresh with Redis down: %d %v, want a 5xx OAuth error", down.status, down.body)
	}
	page := newBrowser(t).get(ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp", state: "s", challenge: "c", method: "S256"}))
	if page.status != http.StatusServiceUnavailable {
		t.Errorf("authorization page with Redis down: %d", page.status)
	}

	server.Restart()
	refreshed := refresh(tokens.str("refresh_token"))
	if refreshed.status != http.StatusOK || refreshed.str("access_token") == "" {
		t.Fatalf("refresh after Redis restarted with its append-only file: %d %v", refreshed.status, refreshed.body)
	}
}
