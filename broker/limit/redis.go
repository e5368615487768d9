package limit

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisTimeout bounds a decision whose context has no deadline, so that a
// Redis that accepts connections but does not answer cannot hold callers.
const RedisTimeout = time.Second

//go:embed gcra.lua
var gcraSource string

var gcraScript = redis.NewScript(gcraSource)

// RedisLimiter is the Limiter that replicas share: every decision is
// taken inside Redis by one Lua script, atomically and on the Redis
// server's clock (TIME), so replicas whose clocks disagree still spend one
// exact budget. A decision is one round trip: EVALSHA, or EVAL once after
// Redis has lost its script cache (a restart, SCRIPT FLUSH).
//
// Key layout: the TAT of key k is the string value of the Redis key
// <prefix>rl:<k>, in microseconds since 1970 as a decimal integer. Every
// write sets the key's expiry (PX) to the moment its TAT passes, when the
// key has its full burst again and needs no state; so Redis holds one key
// per client that is currently in debt, and never grows without bound.
// Refused calls write nothing. In a Redis Cluster each decision touches
// one key, on whichever node owns it.
//
// Every failure of Redis is returned wrapping ErrStoreUnavailable (and the
// underlying error). The limiter starts no goroutine; a call waits no
// longer than its context allows, provided the client was built with
// redis.Options.ContextTimeoutEnabled (otherwise go-redis waits for its
// own ReadTimeout instead). A context without deadline gets RedisTimeout.
type RedisLimiter struct {
	client redis.UniversalClient
	prefix string
}

var _ Limiter = (*RedisLimiter)(nil)

// NewRedisLimiter returns a limiter that keeps its state in client, under
// keys that start with keyPrefix followed by "rl:".
func NewRedisLimiter(client redis.UniversalClient, keyPrefix string) *RedisLimiter {
	return &RedisLimiter{client: client, prefix: keyPrefix + "rl:"}
}

// Allow implements Limiter.
func (l *RedisLimiter) Allow(ctx context.Context, key string, rate Rate, cost int) (Decision, error) {
	interval, tolerance, err := rate.cells(cost)
	if err != nil {
		return Decision{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, RedisTimeout)
		defer cancel()
	}
	intervalMicros, toleranceMicros := interval.Microseconds(), tolerance.Microseconds()
	reply, err := gcraScript.Run(ctx, l.client, []string{l.prefix + key}, intervalMicros, toleranceMicros, cost).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("%w: redis: %w", ErrStoreUnavailable, err)
	}
	if len(reply) != 3 {
		return Decision{}, fmt.Errorf("%w: redis: rate script answered %v", ErrStoreUnavailable, reply)
	}
	return decision(reply[0] == 1, reply[1], reply[2], intervalMicros, toleranceMicros, time.Microsecond), nil
}
