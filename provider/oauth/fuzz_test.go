package oauth

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// FuzzVerifyJWT throws mutated tokens at a verifier backed by a real fake
// AS. It must never panic, every failure must be one of the package's
// errors, and nothing but an original valid token may ever verify.
func FuzzVerifyJWT(f *testing.F) {
	as := oauthtest.NewIssuer(f, nil)
	as.Publish(as.EC, as.RSA, as.Ed)
	clock := newClock()
	v := newTestVerifier(f, as, clock, func(c *ServerConfig) { c.AllowMissingTyp = true }, func(o *Options) { o.CacheSize = -1 })
	now := clock.Now()
	valid := map[string]bool{}
	for _, key := range []*oauthtest.Key{as.EC, as.RSA, as.Ed} {
		token := as.Token(f, now, key, nil)
		valid[token] = true
		f.Add(token)
	}
	withAct := as.Token(f, now, as.EC, func(h, c map[string]any) {
		c["act"] = map[string]any{"sub": "agent", "act": map[string]any{"client_id": "x"}}
		c["groups"] = []string{"g"}
	})
	valid[withAct] = true
	f.Add(withAct)
	for _, seed := range []string{
		"",
		"a.b.c",
		"a.b.c.d.e",
		as.Token(f, now, as.AttackerEC, nil),
		as.Token(f, now, as.EC, func(h, c map[string]any) { h["alg"] = "none" }),
		as.Token(f, now, as.EC, func(h, c map[string]any) { h["crit"] = []string{"x"} }),
		as.Token(f, now, as.EC, func(h, c map[string]any) { c["exp"] = "soon" }),
		oauthtest.B64([]byte(`{"alg":"none"}`)) + "." + oauthtest.B64([]byte(`{"iss":"`+as.ID+`","sub":"a"}`)) + ".",
		oauthtest.B64([]byte(`{"alg":"ES256","kid":"ec-1","kid":"rsa-1"}`)) + ".e30.AAAA",
		strings.Repeat("A", MaxTokenSize+1),
	} {
		f.Add(seed)
	}
	// Discover once so that fuzzing does not wait on the network.
	if _, err := v.Verify(context.Background(), as.Token(f, now, as.EC, nil)); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(context.Background(), token)
		if err == nil {
			if !valid[token] {
				t.Fatalf("a token that was never issued verified: %q", token)
			}
			if p == nil || p.Subject == "" {
				t.Fatal("nil or empty principal without an error")
			}
			return
		}
		if p != nil {
			t.Fatal("principal returned with an error")
		}
		if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("unexpected error type: %v", err)
		}
		if errors.Is(err, ErrInvalidToken) && ReasonOf(err) == "" {
			t.Fatalf("invalid token without a reason: %v", err)
		}
	})
}

func FuzzDecodeObject(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":1}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1,"a":2}`, `[]`, `{"a":1}x`, "{\"a\":\"\xff\"}", strings.Repeat("[", 100)} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		object, err := DecodeObject(data)
		if err == nil && object == nil {
			t.Fatal("nil object without an error")
		}
	})
}
