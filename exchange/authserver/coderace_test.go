package authserver

import (
	"net/http"
	"sync"
	"testing"
)

// An authorization code is single use (RFC 6749 §4.1.2), also when
// redemptions race: spending the code is one compare-and-set, so exactly
// one of concurrent requests gets tokens and the others invalid_grant,
// never a server error.
func TestConcurrentCodeRedemptionsIssueOnePair(t *testing.T) {
	ts := newTestServer(t)
	const codes, racers = 30, 4
	for range codes {
		code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
		var wg sync.WaitGroup
		answers := make(chan tokenResponse, racers)
		start := make(chan struct{})
		for range racers {
			wg.Go(func() {
				<-start
				answers <- ts.exchangeCode("agent", "", code, verifier, agentRedirect)
			})
		}
		close(start)
		wg.Wait()
		close(answers)
		successes := 0
		for answer := range answers {
			switch {
			case answer.status == http.StatusOK:
				successes++
			case answer.status != http.StatusBadRequest || answer.str("error") != "invalid_grant":
				t.Errorf("a losing redemption got %d %v, want 400 invalid_grant", answer.status, answer.body)
			}
		}
		if successes != 1 {
			t.Fatalf("%d of %d concurrent redemptions of one code got tokens, want 1", successes, racers)
		}
	}
}
