package main

import (
	"context"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// TestTokenInspectRefusesWhatTheBrokerRefuses runs the shared refusal
// table through the broker's inbound verifier and through token inspect:
// inspect must never say "verified: yes" to a token the broker refuses.
func TestTokenInspectRefusesWhatTheBrokerRefuses(t *testing.T) {
	issuer := oauthtest.NewIssuer(t, nil)
	now := time.Now()
	verifier, err := oauth.NewVerifier([]oauth.ServerConfig{{
		MetadataURL:       issuer.MetadataURL(),
		ExpectedAudiences: []string{oauthtest.Audience},
	}}, oauth.Options{CacheSize: -1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	inspect := func(token string) (string, string, int) {
		return runToken(t, "", "inspect", "--issuer", issuer.ID, "--audience", oauthtest.Audience, token)
	}

	valid := issuer.Token(t, now, issuer.EC, nil)
	if _, err := verifier.Verify(ctx, valid); err != nil {
		t.Fatalf("the broker refused the valid token: %v", err)
	}
	if stdout, stderr, code := inspect(valid); code != 0 {
		t.Fatalf("inspect refused the valid token: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, test := range oauthtest.RejectedTokens(t, issuer, now) {
		t.Run(test.Name, func(t *testing.T) {
			if _, err := verifier.Verify(ctx, test.Token); oauth.ReasonOf(err) != oauth.Reason(test.Reason) {
				t.Fatalf("the broker's verifier: %v, want reason %q", err, test.Reason)
			}
			stdout, stderr, code := inspect(test.Token)
			if code == 0 {
				t.Fatalf("inspect accepted a token the broker refuses (%s):\n%s", test.Reason, stdout)
			}
			if len(test.Token) > 100 && (containsTail(stdout, test.Token) || containsTail(stderr, test.Token)) {
				t.Error("the token was printed")
			}
		})
	}
}

func containsTail(output, token string) bool {
	tail := token[len(token)-40:]
	for i := 0; i+len(tail) <= len(output); i++ {
		if output[i:i+len(tail)] == tail {
			return true
		}
	}
	return false
}
