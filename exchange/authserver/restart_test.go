package authserver

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func publishedKeyIDs(t *testing.T, ts *testServer) []string {
	t.Helper()
	resp, err := http.Get(ts.issuer + "/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks struct {
		Keys []struct {
			KeyID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, key := range jwks.Keys {
		ids = append(ids, key.KeyID)
	}
	slices.Sort(ids)
	return ids
}

// A restart (the database reopened, the server built again) keeps
// registered clients, signing keys, refresh tokens, revocations and
// consents; the configured clients are those of the new configuration.
func TestRestartKeepsStateAndAppliesNewConfiguration(t *testing.T) {
	removeWebapp := false
	ts := newTestServer(t, withOptions(func(o *Options) {
		if removeWebapp {
			o.Clients = slices.DeleteFunc(o.Clients, func(c Client) bool { return c.ID == "webapp" })
		}
	}))
	keysBefore := publishedKeyIDs(t, ts)

	registered := ts.register(`{"redirect_uris":["http://127.0.0.1:40000/cb"],"token_endpoint_auth_method":"none"}`, "application/json")
	clientID := registered.str("client_id")
	verifier, challenge := newPKCE()
	back := newBrowser(t).authorize(ts.authorizeURL(authorizeRequest{clientID: clientID, redirectURI: "http://127.0.0.1:40000/cb",
		scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"}), "alice", "alice-password", "allow")
	tokens := ts.exchangeCode(clientID, "", back.Query().Get("code"), verifier, "http://127.0.0.1:40000/cb")
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	webapp := ts.post("/token", url.Values{"grant_type": {"client_credentials"}}, "webapp", webappSecret)
	revokedAccess := ts.post("/token", url.Values{"grant_type": {"client_credentials"}}, "resource-server", resourceSecret)
	if webapp.status != http.StatusOK || revokedAccess.status != http.StatusOK {
		t.Fatalf("client_credentials: %v %v", webapp.body, revokedAccess.body)
	}
	_, revokedClaims := ts.verifyJWT(revokedAccess.str("access_token"))
	if got := ts.post("/revoke", url.Values{"token": {revokedAccess.str("access_token")}}, "resource-server", resourceSecret); got.status != http.StatusOK {
		t.Fatalf("revoke: %d %v", got.status, got.body)
	}

	removeWebapp = true
	ts.restart()

	if keysAfter := publishedKeyIDs(t, ts); !slices.Equal(keysBefore, keysAfter) {
		t.Errorf("signing keys changed over a restart: %v → %v", keysBefore, keysAfter)
	}
	// The access token from before still verifies and introspects.
	ts.verifyJWT(tokens.str("access_token"))
	if info := ts.introspect(tokens.str("access_token")); info.body["active"] != true {
		t.Errorf("access token after restart: %v", info.body)
	}
	if !ts.server.Revoked(t.Context(), revokedClaims["jti"].(string)) {
		t.Error("revocation forgotten over a restart")
	}
	refreshed := ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens.str("refresh_token")}, "client_id": {clientID}}, "", "")
	if refreshed.status != http.StatusOK {
		t.Fatalf("refresh after restart: %d %v", refreshed.status, refreshed.body)
	}
	// The registered client is still there and its consent remembered.
	_, challenge = newPKCE()
	p := newBrowser(t).login(ts.authorizeURL(authorizeRequest{clientID: clientID, redirectURI: "http://127.0.0.1:40000/cb",
		scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"}), "alice", "alice-password")
	if p.status != http.StatusSeeOther || p.location.Query().Get("code") == "" {
		t.Errorf("registered client after restart: %d %s", p.status, p.body)
	}
	// A client removed from the configuration is gone, with its tokens.
	if got := ts.post("/token", url.Values{"grant_type": {"client_credentials"}}, "webapp", webappSecret); got.status != http.StatusUnauthorized {
		t.Errorf("removed client: %d %v", got.status, got.body)
	}
	if info := ts.introspect(webapp.str("access_token")); info.body["active"] != false {
		t.Errorf("token of a removed client: %v", info.body)
	}
}

// Expired codes, tokens and revocations are deleted; live ones stay.
func TestSweepDeletesExpiredRecords(t *testing.T) {
	ts := newTestServer(t)
	code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
	tokens := ts.exchangeCode("agent", "", code, verifier, agentRedirect)
	unused, _ := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
	revoked := ts.post("/token", url.Values{"grant_type": {"client_credentials"}}, "webapp", webappSecret)
	_, revokedClaims := ts.verifyJWT(revoked.str("access_token"))
	ts.post("/revoke", url.Values{"token": {revoked.str("access_token")}}, "webapp", webappSecret)

	count := func() map[string]int {
		counts := map[string]int{}
		for _, bucket := range [][]byte{bucketCodes, bucketPKCE, bucketAccess, bucketRefresh, bucketRevoked, bucketEnded, bucketGrants} {
			counts[string(bucket)] = countKeys(t, ts, bucket)
		}
		return counts
	}
	before := count()
	if deleted, err := ts.server.store.sweep(time.Now()); err != nil || deleted != 0 {
		t.Fatalf("sweep now: %d deleted, %v; want nothing", deleted, err)
	}
	if after := count(); !maps.Equal(before, after) {
		t.Fatalf("sweep now changed %v → %v", before, after)
	}

	// Past the codes' lifetime: the codes and challenges go, tokens stay.
	deleted, err := ts.server.store.sweep(time.Now().Add(authorizeCodeTTL + time.Second))
	if err != nil || deleted != 3 { // two codes, one remaining challenge
		t.Errorf("sweep after the code lifetime: %d, %v; counts %v", deleted, err, count())
	}
	if got := ts.exchangeCode("agent", "", unused, verifier, agentRedirect); got.status == http.StatusOK {
		t.Error("a swept code still works")
	}
	if info := ts.introspect(tokens.str("access_token")); info.body["active"] != true {
		t.Errorf("access token swept early: %v", info.body)
	}

	// Past the access tokens' lifetime and the revocation grace.
	if _, err := ts.server.store.sweep(time.Now().Add(DefaultAccessTokenTTL + revokedGrace + time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[string(bucketAccess)] != 0 || got[string(bucketRevoked)] != 0 || got[string(bucketRefresh)] != 1 || got[string(bucketGrants)] != 1 {
		t.Errorf("after the access token lifetime: %v, want only the refresh token and its index", got)
	}
	if ts.server.Revoked(t.Context(), revokedClaims["jti"].(string)) {
		t.Error("revocation of an expired token kept")
	}
	if refreshed := ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens.str("refresh_token")}, "client_id": {"agent"}}, "", ""); refreshed.status != http.StatusOK {
		t.Errorf("refresh token swept early: %d %v", refreshed.status, refreshed.body)
	}

	// Past everything.
	if _, err := ts.server.store.sweep(time.Now().Add(DefaultRefreshTokenTTL + time.Hour)); err != nil {
		t.Fatal(err)
	}
	for bucket, n := range count() {
		if n != 0 {
			t.Errorf("%s keeps %d records", bucket, n)
		}
	}
}

func countKeys(t *testing.T, ts *testServer, bucket []byte) int {
	t.Helper()
	n := 0
	err := ts.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, _ []byte) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
