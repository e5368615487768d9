package broker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/limit"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Recorded arguments lose every member named in audit.arguments.redact,
// whatever its case and depth; nothing is recorded unless asked.
func TestRecordedArgumentsAreRedacted(t *testing.T) {
	a := &auditor{arguments: true, redact: map[string]bool{"password": true, "token": true, "apikey": true}}
	raw := json.RawMessage(`{"user":"alice","Password":"hunter2","nested":{"token":"t-1","list":[{"apiKey":"k-1","n":1}]}}`)
	got := string(a.recordArguments(raw))
	for _, secret := range []string{"hunter2", "t-1", "k-1"} {
		if strings.Contains(got, secret) {
			t.Errorf("%s survives in %s", secret, got)
		}
	}
	if !strings.Contains(got, `"user":"alice"`) || !strings.Contains(got, `"n":1`) || strings.Count(got, "[REDACTED]") != 3 {
		t.Errorf("got %s, want the other members kept and three redacted", got)
	}
	if off := (&auditor{}).recordArguments(raw); off != nil {
		t.Errorf("arguments recorded without audit.arguments.record: %s", off)
	}
	deep := strings.Repeat(`{"a":`, 100) + `{"password":"x"}` + strings.Repeat(`}`, 100)
	if got := string(a.recordArguments(json.RawMessage(deep))); strings.Contains(got, `"x"`) {
		t.Errorf("a secret deeper than the walk survives: %s", got)
	}
}

// A rate limit's JSON-RPC error carries the delay and the limit in data.
func TestRateLimitErrorSaysWhenToRetry(t *testing.T) {
	e := &rateLimitError{limit: "balances", retryAfter: 1500 * time.Millisecond}
	rpc := e.rpcError()
	if rpc.Code != CodeRateLimited || string(rpc.Data) != `{"limit":"balances","retryAfterMs":1500}` || e.retryAfterSeconds() != "2" {
		t.Errorf("got %d %s %s, Retry-After %s", rpc.Code, rpc.Message, rpc.Data, e.retryAfterSeconds())
	}
}

// failingLimiter is a rate limits' store that cannot be reached.
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string, limit.Rate, int) (limit.Decision, error) {
	return limit.Decision{}, limit.ErrStoreUnavailable
}

// When the limits' store cannot be reached, onStoreFailure decides:
// closed refuses the call with a clear error, open serves it.
func TestLimitsStoreFailure(t *testing.T) {
	for _, test := range []struct {
		failure string
		want    error
	}{{config.RateLimitsClosed, ErrLimitsUnavailable}, {config.RateLimitsOpen, nil}} {
		l := newLimiter(&config.RateLimits{OnStoreFailure: test.failure, Rules: []config.RateLimitRule{{Name: "all", Rate: 1, Period: config.Duration(time.Minute), Burst: 1}}}, nil, "")
		l.rates = failingLimiter{}
		b := &Broker{log: slog.New(slog.DiscardHandler)}
		c := &Call{Message: &jsonrpc.Message{ID: jsonrpc.Int64ID(1), Method: "tools/call"}, gen: &generation{limits: l}}
		if err := b.limit(context.Background(), c); !errors.Is(err, test.want) && (err != nil || test.want != nil) {
			t.Errorf("onStoreFailure %s: got %v, want %v", test.failure, err, test.want)
		}
	}
}
