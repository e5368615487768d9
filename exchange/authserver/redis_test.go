package authserver

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
	"github.com/mcpbroker/mcpbroker/exchange"
)

// The flows that hold state across requests, run with the state in Redis
// and every request going to the next of three Servers sharing it: a code
// made on one is redeemed on another, refreshed on a third; concurrent
// redemptions of one code, or refreshes with one token, on different
// Servers yield one pair; reuse of a rotated refresh token revokes the
// grant everywhere; a revocation is seen by every Server at once; a form
// is good for one post whichever Server gets it; the throttle counts
// guesses on all of them together. On a Redis Cluster, where every
// transaction and script must stay on one slot, the flows run that use
// each kind of command the store sends.
func TestFlowsOnRedisReplicas(t *testing.T) {
	type flow struct {
		name      string
		test      func(*testing.T)
		onCluster bool
	}
	flows := []flow{
		{"code flow, refresh, reuse, revocation", TestAuthorizationCodeFlowWithPKCERefreshIntrospectionAndRevocation, true},
		{"code reuse revokes its tokens", TestCodeReuseRevokesItsTokens, false},
		{"revocation ends the grant", TestRevocationEndsTheGrantAndReportsTheJTI, false},
		{"concurrent code redemptions", TestConcurrentCodeRedemptionsIssueOnePair, true},
		{"concurrent refreshes", TestConcurrentRefreshesIssueOnePair, true},
		{"tokens of an ended grant", TestTokensMadeForAnEndedGrantAreBornRevoked, false},
		{"client credentials", TestClientCredentials, false},
		{"login form single use", TestLoginFormSingleUse, true},
		{"consent form single use", TestConsentFormSingleUse, false},
		{"throttle under concurrency", TestSignInThrottleHoldsUnderConcurrency, true},
		{"registration limits", TestRegistrationIsCapped, true},
	}
	standalone := redistest.Start(t)
	cluster, clusterClient := startCluster(t)
	for _, backend := range []struct {
		name      string
		server    *redistest.Server
		newClient func() redis.UniversalClient
		cluster   bool
	}{
		{"redis", standalone, func() redis.UniversalClient { return standalone.Client() }, false},
		{"redis cluster", cluster, clusterClient, true},
	} {
		t.Run(backend.name, func(t *testing.T) {
			onRedis = backend.newClient
			t.Cleanup(func() { onRedis = nil })
			for _, f := range flows {
				if backend.cluster && !f.onCluster {
					continue
				}
				if err := backend.server.Client().FlushAll(context.Background()).Err(); err != nil {
					t.Fatal(err)
				}
				t.Run(f.name, f.test)
			}
		})
	}
}

// startCluster runs a Redis Cluster of one node that holds every slot, and
// returns it with a maker of cluster clients of it.
func startCluster(t *testing.T) (*redistest.Server, func() redis.UniversalClient) {
	t.Helper()
	server := redistest.Start(t, redistest.Args("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-announce-ip", "127.0.0.1"))
	admin := server.Client()
	ctx := t.Context()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	// The node counts itself ok a moment after it holds the slots.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := admin.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster is not ok: %v %s", err, info)
		}
	}
	return server, func() redis.UniversalClient {
		client := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                    []string{server.Addr()},
			ContextTimeoutEnabled:    true,
			DialTimeout:              time.Second,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		t.Cleanup(func() { client.Close() })
		return client
	}
}

// Servers that start together on an empty Redis make one hmac secret and
// one flow key between them, not one each: a token or a sign-in flow made
// by one is good at the others.
func TestRedisReplicasStartedTogetherMakeOneSecret(t *testing.T) {
	server := redistest.Start(t)
	const replicas = 4
	servers := make([]*Server, replicas)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() {
			keys, err := exchange.NewKeySet(t.Context(), exchange.NewRedisKeyStore(server.Client(), "together:"), exchange.KeySetOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			minter, err := exchange.NewMinter(keys, exchange.MinterOptions{Issuer: "https://auth.example"})
			if err != nil {
				t.Error(err)
				return
			}
			opts := Options{Issuer: "https://auth.example", Audiences: []string{"https://auth.example/mcp"},
				Redis: server.Client(), RedisKeyPrefix: "together:", Keys: keys, Minter: minter,
				Logger: slog.New(slog.DiscardHandler)}
			if servers[i], err = New(t.Context(), opts); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	sealed, err := servers[0].flows.seal(&flow{CSRF: "c", Expires: time.Now().Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range servers[1:] {
		if !bytes.Equal(s.config.GlobalSecret, servers[0].config.GlobalSecret) {
			t.Errorf("server %d has another hmac secret than server 0", i+1)
		}
		if _, err := s.flows.open(sealed, time.Now()); err != nil {
			t.Errorf("server %d cannot open a flow server 0 sealed: %v", i+1, err)
		}
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
// crash: 503 temporarily_unavailable, or the page that says sign-in is
// unavailable; a token whose revocation cannot be looked up counts as
// revoked. They serve again once Redis is back, and with append-only
// persistence a restart of Redis keeps the grants.
func TestRedisOutageAndRestart(t *testing.T) {
	server := redistest.Start(t, redistest.AppendOnly())
	ts := newTestServer(t, withRedisReplicas(server, 2))
	code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
	tokens := ts.exchangeCode("agent", "", code, verifier, agentRedirect)
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	_, claims := ts.verifyJWT(tokens.str("access_token"))
	refresh := func(token string) tokenResponse {
		return ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"agent"}}, "", "")
	}
	b := newBrowser(t)
	login := b.get(ts.authorizeURL(loginRequest(ts)))
	if !isLoginPage(login) {
		t.Fatalf("want the login page, got %d: %s", login.status, login.body)
	}

	server.Stop()
	for name, answer := range map[string]func() tokenResponse{
		"refresh":    func() tokenResponse { return refresh(tokens.str("refresh_token")) },
		"introspect": func() tokenResponse { return ts.introspect(tokens.str("access_token")) },
		"revoke": func() tokenResponse {
			return ts.post("/revoke", url.Values{"token": {tokens.str("access_token")}, "client_id": {"agent"}}, "", "")
		},
		"credentials": func() tokenResponse {
			return ts.post("/token", url.Values{"grant_type": {"client_credentials"}}, "webapp", webappSecret)
		},
		"registration": func() tokenResponse {
			return ts.register(`{"redirect_uris":["https://new.example/cb"]}`, "application/json")
		},
	} {
		if got := answer(); got.status != http.StatusServiceUnavailable || got.str("error") != "temporarily_unavailable" {
			t.Errorf("%s with Redis down: %d %v, want 503 temporarily_unavailable", name, got.status, got.body)
		}
	}
	if page := b.get(ts.authorizeURL(loginRequest(ts))); page.status != http.StatusServiceUnavailable {
		t.Errorf("authorization page with Redis down: %d", page.status)
	}
	if page := b.submit(login, url.Values{"username": {"alice"}, "password": {"alice-password"}}); page.status != http.StatusServiceUnavailable {
		t.Errorf("sign-in with Redis down: %d", page.status)
	}
	if !ts.server.Revoked(t.Context(), claims["jti"].(string)) {
		t.Error("with Redis down a token whose revocation cannot be looked up is taken for live")
	}

	server.Restart()
	refreshed := refresh(tokens.str("refresh_token"))
	if refreshed.status != http.StatusOK || refreshed.str("access_token") == "" {
		t.Fatalf("refresh after Redis restarted with its append-only file: %d %v", refreshed.status, refreshed.body)
	}
	if ts.server.Revoked(t.Context(), claims["jti"].(string)) {
		t.Error("a live token is reported revoked once Redis is back")
	}
}
