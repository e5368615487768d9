package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/limit"
	"github.com/mcpbroker/mcpbroker/opa"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// The limit stage spends a call's rate budget, and takes a place among the
// calls in flight to its app, before policy and upstream see it.

// CodeRateLimited is the JSON-RPC error of a call over its budget; its
// data says when to retry ({"retryAfterMs": N, "limit": name}).
const CodeRateLimited = -32011

// ErrRateLimited is a call refused by a rate limit or by its app's limit
// of calls in flight.
var ErrRateLimited = errors.New("rate limited")

// ErrLimitsUnavailable refuses calls while the limits' store cannot be
// reached and rateLimits.onStoreFailure is closed.
var ErrLimitsUnavailable = errors.New("rate limits unavailable: the call was not served")

// rateLimitError says which limit refused and when to come back.
type rateLimitError struct {
	limit      string
	retryAfter time.Duration
	inFlight   bool // the app's calls in flight, not a rate
}

func (e *rateLimitError) Error() string {
	if e.inFlight {
		return fmt.Sprintf("too many calls in flight to app %q; retry shortly", e.limit)
	}
	return fmt.Sprintf("rate limit %q exceeded; retry after %s", e.limit, e.retryAfter.Round(time.Millisecond))
}

func (e *rateLimitError) Unwrap() error { return ErrRateLimited }

// rpcError is the JSON-RPC error of the refusal, with the retry delay.
func (e *rateLimitError) rpcError() *jsonrpc.Error {
	rpc := jsonrpc.NewError(CodeRateLimited, e.Error())
	rpc.Data, _ = jsonrpc.Marshal(map[string]any{"retryAfterMs": e.retryAfter.Milliseconds(), "limit": e.limit})
	return rpc
}

// retryAfterSeconds is Retry-After for the refusal: whole seconds, at
// least one.
func (e *rateLimitError) retryAfterSeconds() string {
	return strconv.Itoa(max(1, int(math.Ceil(e.retryAfter.Seconds()))))
}

// limiter holds the compiled rate limits.
type limiter struct {
	rules       []rateRule
	rates       limit.Limiter
	inFlight    *limit.Concurrency
	maxInFlight map[string]int // by app name
	failOpen    bool
}

type rateRule struct {
	name        string
	match       config.RateLimitMatch
	per         []string
	rate        limit.Rate
	specificity int
}

// maxLimitKeys bounds the budgets kept in memory; the least recently used
// are forgotten first (a forgotten budget is a full one).
const maxLimitKeys = 100_000

// newLimiter compiles rateLimits; nil when there are none. With a shared
// store (storage.redis) the budgets are kept there, exact across
// replicas; calls in flight are counted per replica.
func newLimiter(cfg *config.RateLimits, shared redis.UniversalClient, keyPrefix string) *limiter {
	if len(cfg.Rules) == 0 && len(cfg.Concurrency) == 0 {
		return nil
	}
	var rates limit.Limiter = limit.NewMemoryLimiter(maxLimitKeys)
	if shared != nil {
		rates = limit.NewRedisLimiter(shared, keyPrefix)
	}
	l := &limiter{rates: rates, inFlight: limit.NewConcurrency(maxLimitKeys),
		maxInFlight: map[string]int{}, failOpen: cfg.OnStoreFailure == config.RateLimitsOpen}
	for _, rule := range cfg.Rules {
		m := rule.Match
		l.rules = append(l.rules, rateRule{
			name: rule.Name, match: m, per: rule.Per,
			rate:        limit.Rate{Count: rule.Rate, Period: time.Duration(rule.Period), Burst: rule.Burst},
			specificity: countGiven(m.Subject, m.Client, m.Group, m.App, m.Tool, m.Method),
		})
	}
	for _, c := range cfg.Concurrency {
		l.maxInFlight[c.App] = c.Max
	}
	return l
}

func countGiven(values ...string) int {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n
}

// rule is the most specific rule that matches the call, the first written
// among equals; nil when none does.
func (l *limiter) rule(c *Call) *rateRule {
	var best *rateRule
	for i := range l.rules {
		r := &l.rules[i]
		if (best == nil || r.specificity > best.specificity) && r.matches(c) {
			best = r
		}
	}
	return best
}

func (r *rateRule) matches(c *Call) bool {
	m := r.match
	p := c.Principal
	switch {
	case m.Method != "" && m.Method != c.Message.Method,
		m.App != "" && (c.App == nil || c.App.Name != m.App),
		m.Tool != "" && (c.Message.Method != "tools/call" || c.Name != m.Tool),
		m.Subject != "" && (p == nil || p.Subject != m.Subject),
		m.Client != "" && (p == nil || p.ClientID != m.Client),
		m.Group != "" && (p == nil || !slices.Contains(p.Groups, m.Group)):
		return false
	}
	return true
}

// key names the budget a call spends.
func (r *rateRule) key(c *Call) string {
	var b strings.Builder
	b.WriteString(r.name)
	for _, dimension := range r.per {
		b.WriteByte(0)
		switch dimension {
		case "subject":
			if c.Principal != nil {
				b.WriteString(c.Principal.Issuer)
				b.WriteByte(0)
				b.WriteString(c.Principal.Subject)
			}
		case "client":
			if c.Principal != nil {
				b.WriteString(c.Principal.ClientID)
			}
		case "app":
			if c.App != nil {
				b.WriteString(c.App.Name)
			}
		case "tool":
			b.WriteString(c.Name)
		}
	}
	return b.String()
}

// limit spends the call's budget under the most specific rule that
// matches it, and, for a call to an app with a limit of calls in flight,
// takes a place until the call ends (record gives it back).
func (b *Broker) limit(ctx context.Context, c *Call) error {
	l := c.gen.limits
	if l == nil || c.Message.Kind() != jsonrpc.KindRequest {
		return nil
	}
	// The place first: a call turned away for want of one keeps its
	// budget.
	if c.App != nil && c.Route == routeApp {
		if max, ok := l.maxInFlight[c.App.Name]; ok {
			release, ok := l.inFlight.Acquire(c.App.Name, max)
			if !ok {
				return &rateLimitError{limit: c.App.Name, inFlight: true}
			}
			c.release = release // record gives it back, whatever happens
		}
	}
	if rule := l.rule(c); rule != nil {
		decision, err := l.rates.Allow(ctx, rule.key(c), rule.rate, 1)
		switch {
		case err != nil && l.failOpen:
			b.log.Warn("rate limits unavailable; serving the call unlimited (rateLimits.onStoreFailure: open)", "error", err)
		case err != nil:
			return fmt.Errorf("%w: %v", ErrLimitsUnavailable, err)
		case !decision.Allowed:
			return &rateLimitError{limit: rule.name, retryAfter: decision.RetryAfter}
		default:
			// The policy may look at what is left (input.limit).
			c.limit = &opa.Limit{Name: rule.name, Remaining: decision.Remaining}
		}
	}
	return nil
}
