package authserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
)

// A refresh token yields one new pair, also when refreshes race: the
// rotation is one compare-and-set, so exactly one of concurrent requests
// gets tokens and the others invalid_grant, never a server error. A loser
// that came late enough to be taken for a replay ends the grant, and then
// the winner's pair with it, whichever was stored first.
func TestConcurrentRefreshesIssueOnePair(t *testing.T) {
	ts := newTestServer(t)
	const grants, racers = 20, 4
	refresh := func(token string) tokenResponse {
		return ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"agent"}}, "", "")
	}
	for range grants {
		code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
		tokens := ts.exchangeCode("agent", "", code, verifier, agentRedirect)
		if tokens.status != http.StatusOK {
			t.Fatalf("token: %d %v", tokens.status, tokens.body)
		}
		var wg sync.WaitGroup
		answers := make(chan tokenResponse, racers)
		start := make(chan struct{})
		for range racers {
			wg.Go(func() {
				<-start
				answers <- refresh(tokens.str("refresh_token"))
			})
		}
		close(start)
		wg.Wait()
		close(answers)
		var winner tokenResponse
		successes, replayed := 0, false
		for answer := range answers {
			switch {
			case answer.status == http.StatusOK:
				successes++
				winner = answer
			case answer.status != http.StatusBadRequest || answer.str("error") != "invalid_grant":
				t.Errorf("a losing refresh got %d %v, want 400 invalid_grant", answer.status, answer.body)
			case strings.Contains(answer.str("error_description"), "was already used"):
				replayed = true // fosite's words for a rotated token played again
			}
		}
		if successes != 1 {
			t.Fatalf("%d of %d concurrent refreshes with one token got tokens, want 1", successes, racers)
		}
		for name, token := range map[string]string{"refresh": winner.str("refresh_token"), "access": winner.str("access_token")} {
			if active := ts.introspect(token).body["active"] == true; active == replayed {
				t.Errorf("the winner's %s token: active %v, after a loser was taken for a replay: %v", name, active, replayed)
			}
		}
	}
}

// A token made for a grant after the grant was revoked is revoked as it is
// made: a request that read the grant's code or refresh token before the
// revocation cannot leave a live pair behind it.
func TestTokensMadeForAnEndedGrantAreBornRevoked(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	client, err := ts.server.store.GetClient(ctx, "agent")
	if err != nil {
		t.Fatal(err)
	}
	request := func(tokenID string) *fosite.Request {
		s := &session{Subject: "alice", TokenID: tokenID}
		s.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour))
		s.SetExpiresAt(fosite.RefreshToken, time.Now().Add(24*time.Hour))
		return &fosite.Request{ID: "grant-" + tokenID, RequestedAt: time.Now(), Client: client, Session: s, Form: url.Values{}}
	}
	store := ts.server.store

	live := request("live")
	if err := store.CreateAccessTokenSession(ctx, "access-live", live); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateRefreshTokenSession(ctx, "refresh-live", "access-live", live); err != nil {
		t.Fatal(err)
	}
	if ts.server.Revoked(ctx, "live") {
		t.Fatal("a token of a live grant is reported revoked")
	}
	if _, err := store.GetRefreshTokenSession(ctx, "refresh-live", nil); err != nil {
		t.Fatalf("the refresh token of a live grant: %v", err)
	}

	ended := request("ended")
	if err := store.RevokeRefreshToken(ctx, ended.ID); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateAccessTokenSession(ctx, "access-ended", ended); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateRefreshTokenSession(ctx, "refresh-ended", "access-ended", ended); err != nil {
		t.Fatal(err)
	}
	if !ts.server.Revoked(ctx, "ended") {
		t.Error("an access token made after its grant was revoked is not reported revoked")
	}
	if _, err := store.GetRefreshTokenSession(ctx, "refresh-ended", nil); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("a refresh token made after its grant was revoked: %v, want %v", err, fosite.ErrInactiveToken)
	}
}
