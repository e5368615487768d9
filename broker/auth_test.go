package broker_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/apps/sample"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// agentClaims are a valid access token's claims from as for resource, to
// be changed by each case; each token has its own jti.
func agentClaims(as *oauthtest.Issuer, resource, subject, client string) map[string]any {
	claims := as.Claims(time.Now())
	claims["aud"], claims["sub"], claims["client_id"] = resource, subject, client
	claims["scope"], claims["groups"], claims["jti"] = "mcp:tools ledger:read", []string{"warehouse-ops"}, randomString()
	return claims
}

func randomString() string {
	b := make([]byte, 12)
	rand.Read(b)
	return oauthtest.B64(b)
}

func b64(v any) string {
	raw, ok := v.([]byte)
	if !ok {
		raw, _ = json.Marshal(v)
	}
	return oauthtest.B64(raw)
}

// countingUpstream is a sample upstream that counts the messages posted to
// it (the GET streams a broker opens for its clients are not counted).
func countingUpstream(t *testing.T) (url string, hits *atomic.Int32) {
	t.Helper()
	hits = &atomic.Int32{}
	h := sample.Handler(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			hits.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp", hits
}

// Every bad token and every bad way of presenting one is refused with the
// status and challenge RFC 6750 and RFC 9728 call for, and none reaches
// the upstream.
func TestBadTokensAreRefused(t *testing.T) {
	as := oauthtest.NewIssuer(t, nil)
	upstreamURL, hits := countingUpstream(t)
	// The broker's address must be known before its config: the audience.
	addr := freeAddress(t)
	resource := "http://" + addr + "/mcp"
	brokerURL := startBrokerAt(t, addr, scenario(t, "auth"), as.ID, resource, upstreamURL)
	endpoint := brokerURL + "/mcp"
	metadata := brokerURL + "/.well-known/oauth-protected-resource/mcp"

	hostileHits := atomic.Int32{}
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostileHits.Add(1)
		io.WriteString(w, `{"keys":[]}`)
	}))
	defer hostile.Close()

	valid := func() map[string]any { return agentClaims(as, resource, "alice", "agent-1") }
	with := func(change func(map[string]any)) map[string]any {
		c := valid()
		change(c)
		return c
	}
	es := func(c map[string]any) string { return as.Mint(t, c) }
	// esHeader sets (or, for nil, removes) members of the header.
	esHeader := func(c map[string]any, members map[string]any) string {
		return as.EC.Token(t, c, func(h, _ map[string]any) {
			for name, value := range members {
				if value == nil {
					delete(h, name)
				} else {
					h[name] = value
				}
			}
		})
	}
	good := es(valid())
	parts := strings.Split(good, ".")

	// A key the server does not know, claiming the server's kid.
	forged := as.AttackerEC.Token(t, valid(), nil)
	rsaPublicPEM := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(as.RSA.Private.Public())
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	hs256 := func(secret []byte, header, claims any) string {
		signingInput := b64(header) + "." + b64(claims)
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(signingInput))
		return signingInput + "." + b64(mac.Sum(nil))
	}
	withAttackerJWK := as.AttackerEC.Token(t, valid(), func(h, _ map[string]any) {
		delete(h, "kid")
		h["jwk"] = jose.JSONWebKey{Key: as.AttackerEC.Private.Public()}
	})
	ecSignedAsRS256 := func() string {
		// An RS256 header naming the EC key: the signature is ES256's.
		header := map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": "ec-1"}
		return b64(header) + "." + parts[1] + "." + parts[2]
	}()

	const invalidToken = `error="invalid_token"`
	const invalidRequest = `error="invalid_request"`
	type request struct {
		method string
		url    string
		header http.Header
	}
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	post := func(h http.Header) request { return request{http.MethodPost, endpoint, h} }
	cases := []struct {
		name      string
		req       request
		status    int
		challenge string // a part the WWW-Authenticate header must hold
	}{
		{"no token", post(nil), 401, `Bearer scope="mcp:tools", resource_metadata="` + metadata + `"`},
		{"no token on GET", request{http.MethodGet, endpoint, nil}, 401, `resource_metadata="` + metadata + `"`},
		{"no token on DELETE", request{http.MethodDelete, endpoint, nil}, 401, `resource_metadata="` + metadata + `"`},
		{"no token on the legacy stream", request{http.MethodGet, brokerURL + "/mcp/sse", nil}, 401, `resource_metadata="` + brokerURL + `/.well-known/oauth-protected-resource/mcp/sse"`},
		{"basic scheme", post(http.Header{"Authorization": {"Basic YWdlbnQ6c2VjcmV0"}}), 400, invalidRequest},
		{"bearer without token", post(http.Header{"Authorization": {"Bearer"}}), 400, invalidRequest},
		{"bearer with blank token", post(http.Header{"Authorization": {"Bearer    "}}), 400, invalidRequest},
		{"token with illegal characters", post(http.Header{"Authorization": {"Bearer abc def"}}), 400, invalidRequest},
		{"token in the query string", request{http.MethodPost, endpoint + "?access_token=" + good, nil}, 400, invalidRequest},
		{"token in header and query", request{http.MethodPost, endpoint + "?access_token=" + good, bearer(good)}, 400, invalidRequest},
		{"two Authorization headers", post(http.Header{"Authorization": {"Bearer " + good, "Bearer " + good}}), 400, invalidRequest},
		{"oversized token", post(bearer(strings.Repeat("a", 20<<10))), 400, invalidRequest},
		{"forged signature", post(bearer(forged)), 401, invalidToken},
		{"signature of another token", post(bearer(parts[0] + "." + b64(with(func(c map[string]any) { c["sub"] = "mallory" })) + "." + parts[2])), 401, invalidToken},
		{"alg none", post(bearer(b64(map[string]any{"alg": "none", "typ": "at+jwt"}) + "." + b64(valid()) + ".")), 401, invalidToken},
		{"HS256 with the RSA public key as secret", post(bearer(hs256(rsaPublicPEM, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"}, valid()))), 401, invalidToken},
		{"RS256 header on the EC key", post(bearer(ecSignedAsRS256)), 401, invalidToken},
		{"unknown kid with a hostile jku", post(bearer(esHeader(valid(), map[string]any{"kid": "evil", "jku": hostile.URL}))), 401, invalidToken},
		{"embedded attacker jwk", post(bearer(withAttackerJWK)), 401, invalidToken},
		{"x5u header with unknown kid", post(bearer(esHeader(valid(), map[string]any{"kid": "evil", "x5u": hostile.URL}))), 401, invalidToken},
		{"crit header", post(bearer(esHeader(valid(), map[string]any{"crit": []string{"exp"}}))), 401, invalidToken},
		{"wrong issuer", post(bearer(es(with(func(c map[string]any) { c["iss"] = "https://evil.example" })))), 401, invalidToken},
		{"issuer with a trailing slash", post(bearer(es(with(func(c map[string]any) { c["iss"] = as.ID + "/" })))), 401, invalidToken},
		{"wrong audience", post(bearer(es(with(func(c map[string]any) { c["aud"] = "https://other.example/mcp" })))), 401, invalidToken},
		{"audience of the upstream", post(bearer(es(with(func(c map[string]any) { c["aud"] = upstreamURL })))), 401, invalidToken},
		{"no audience", post(bearer(es(with(func(c map[string]any) { delete(c, "aud") })))), 401, invalidToken},
		{"audience as a number", post(bearer(es(with(func(c map[string]any) { c["aud"] = 42 })))), 401, invalidToken},
		{"expired", post(bearer(es(with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })))), 401, invalidToken},
		{"expiry as a string", post(bearer(es(with(func(c map[string]any) { c["exp"] = "tomorrow" })))), 401, invalidToken},
		{"no expiry", post(bearer(es(with(func(c map[string]any) { delete(c, "exp") })))), 401, invalidToken},
		{"not yet valid", post(bearer(es(with(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })))), 401, invalidToken},
		{"issued in the future", post(bearer(es(with(func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() })))), 401, invalidToken},
		{"no subject", post(bearer(es(with(func(c map[string]any) { delete(c, "sub") })))), 401, invalidToken},
		{"ID token", post(bearer(esHeader(with(func(c map[string]any) {
			c["nonce"], c["at_hash"] = "n-0S6_WzA2Mj", "77QmUPtjPfzWtF2AnpK9RQ"
			delete(c, "scope")
		}), map[string]any{"typ": "JWT"}))), 401, invalidToken},
		{"typ JWT", post(bearer(esHeader(valid(), map[string]any{"typ": "JWT"}))), 401, invalidToken},
		{"no typ", post(bearer(esHeader(valid(), map[string]any{"typ": nil}))), 401, invalidToken},
		{"truncated", post(bearer(good[:len(good)-12])), 401, invalidToken},
		{"extra segment", post(bearer(good + ".AAAA")), 401, invalidToken},
		{"JWE-shaped", post(bearer("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d")), 401, invalidToken},
		{"garbage header segment", post(bearer("!!!!." + parts[1] + "." + parts[2])), 400, invalidRequest},
		{"undecodable header segment", post(bearer("AAAA." + parts[1] + "." + parts[2])), 401, invalidToken},
		{"garbage payload segment", post(bearer(parts[0] + ".AAAA." + parts[2])), 401, invalidToken},
		{"garbage signature segment", post(bearer(parts[0] + "." + parts[1] + ".AAAA")), 401, invalidToken},
		{"payload is an array", post(bearer(parts[0] + "." + b64([]any{1, 2}) + "." + parts[2])), 401, invalidToken},
		{"not a JWT at all", post(bearer("opaque-token-value")), 401, invalidToken},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			req, _ := http.NewRequest(tc.req.method, tc.req.url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range tc.req.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			challenge := resp.Header.Get("WWW-Authenticate")
			if !strings.Contains(challenge, tc.challenge) || !strings.HasPrefix(challenge, "Bearer") {
				t.Errorf("WWW-Authenticate %q, want it to hold %q", challenge, tc.challenge)
			}
			if !strings.Contains(challenge, `resource_metadata="`) {
				t.Errorf("WWW-Authenticate %q has no resource_metadata", challenge)
			}
			if tc.status == 401 && tc.challenge != invalidToken && strings.Contains(challenge, "error=") {
				t.Errorf("a request without a token got an error code: %q", challenge)
			}
			if strings.Contains(string(body), good[:20]) || strings.Contains(challenge, good[:20]) {
				t.Error("the response echoes the token")
			}
			if got := hits.Load(); got != before {
				t.Errorf("the upstream was reached %d times", got-before)
			}
		})
	}
	if hostileHits.Load() != 0 {
		t.Errorf("the broker fetched a URL named in a token header %d times", hostileHits.Load())
	}

	t.Run("valid token", func(t *testing.T) {
		c := newWireClient(t, endpoint)
		c.header = bearer(good)
		c.initialize(`{}`)
		msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`))
		if len(msgs) != 1 || msgs[0]["result"] == nil {
			t.Fatalf("call with a valid token: %v", msgs)
		}

		t.Run("missing scope", func(t *testing.T) {
			narrow := es(with(func(c map[string]any) { c["scope"] = "ledger:read" }))
			r := &wireClient{t: t, url: endpoint, session: c.session, version: c.version, header: bearer(narrow)}
			resp := r.post(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
			resp.Body.Close()
			challenge := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != 403 || !strings.Contains(challenge, `error="insufficient_scope"`) || !strings.Contains(challenge, `scope="mcp:tools"`) {
				t.Errorf("missing scope: %d %q", resp.StatusCode, challenge)
			}
		})
		hijacks := map[string]string{
			"another user":   es(agentClaims(as, resource, "mallory", "agent-1")),
			"another client": es(agentClaims(as, resource, "alice", "agent-2")),
		}
		for name, token := range hijacks {
			t.Run("session used by "+name, func(t *testing.T) {
				before := hits.Load()
				r := &wireClient{t: t, url: endpoint, session: c.session, version: c.version, header: bearer(token)}
				for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
					req, _ := http.NewRequest(method, endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":4,"method":"tools/list"}`))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					req.Header.Set("Mcp-Session-Id", r.session)
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusNotFound {
						t.Errorf("%s: %d, want 404", method, resp.StatusCode)
					}
				}
				if hits.Load() != before {
					t.Error("a hijack attempt reached the upstream")
				}
			})
		}
		// The owner's session survived the attempts.
		if msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":5,"method":"ping"}`)); len(msgs) != 1 || msgs[0]["result"] == nil {
			t.Errorf("the owner's session after hijack attempts: %v", msgs)
		}
	})

	t.Run("protected resource metadata", func(t *testing.T) {
		for _, u := range []string{metadata, brokerURL + "/.well-known/oauth-protected-resource"} {
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			json.NewDecoder(resp.Body).Decode(&doc)
			resp.Body.Close()
			if resp.StatusCode != 200 || doc["resource"] != resource {
				t.Errorf("%s: %d resource %v, want %s", u, resp.StatusCode, doc["resource"], resource)
			}
			servers, _ := doc["authorization_servers"].([]any)
			if len(servers) != 1 || servers[0] != as.ID {
				t.Errorf("%s: authorization_servers %v", u, doc["authorization_servers"])
			}
		}
	})
}
