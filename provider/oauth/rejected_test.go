package oauth_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// TestSharedRefusalTable holds the inbound verifier, and VerifyJWT with the
// issuer's keys in hand, to the shared refusal table that other readers of
// tokens are tested against too: both give the same reason for each token.
func TestSharedRefusalTable(t *testing.T) {
	issuer := oauthtest.NewIssuer(t, nil)
	now := time.Now()
	verifier, err := oauth.NewVerifier([]oauth.ServerConfig{{
		MetadataURL:       issuer.MetadataURL(),
		ExpectedAudiences: []string{oauthtest.Audience},
	}}, oauth.Options{CacheSize: -1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	response, err := http.Get(issuer.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(response.Body)
	response.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := oauth.ParseJWKS(body)
	if err != nil {
		t.Fatal(err)
	}
	rules := oauth.JWTRules{Issuer: issuer.ID, Audiences: []string{oauthtest.Audience}}
	ctx := context.Background()

	valid := issuer.Token(t, now, issuer.EC, nil)
	if _, err := verifier.Verify(ctx, valid); err != nil {
		t.Fatalf("Verify refused the valid token: %v", err)
	}
	if _, err := oauth.VerifyJWT(valid, keys, rules, now); err != nil {
		t.Fatalf("VerifyJWT refused the valid token: %v", err)
	}
	for _, test := range oauthtest.RejectedTokens(t, issuer, now) {
		t.Run(test.Name, func(t *testing.T) {
			principal, err := verifier.Verify(ctx, test.Token)
			if principal != nil || oauth.ReasonOf(err) != oauth.Reason(test.Reason) {
				t.Fatalf("Verify = %v, %v; want reason %q", principal, err, test.Reason)
			}
			principal, err = oauth.VerifyJWT(test.Token, keys, rules, now)
			if principal != nil || oauth.ReasonOf(err) != oauth.Reason(test.Reason) {
				t.Fatalf("VerifyJWT = %v, %v; want reason %q", principal, err, test.Reason)
			}
		})
	}
}
