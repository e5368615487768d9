package limit

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// serverTime is the Redis server's clock, the one the script uses.
func serverTime(t testing.TB, client redis.UniversalClient) time.Time {
	t.Helper()
	now, err := client.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// The burst is admitted, then calls are refused and told when to retry;
// the TAT is stored at <prefix>rl:<key> in microseconds on the server's
// clock, with an expiry at that TAT, and a refusal writes nothing.
func TestRedisGCRA(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	l := NewRedisLimiter(client, "mcpbroker:")
	rate := Rate{Count: 10, Period: time.Hour, Burst: 3} // one every 6 minutes
	interval, tolerance := 6*time.Minute, 18*time.Minute
	const redisKey = "mcpbroker:rl:agent"

	for i := range rate.Burst {
		before := serverTime(t, client)
		d, err := l.Allow(ctx, "agent", rate, 1)
		after := serverTime(t, client)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed || d.Remaining != rate.Burst-1-i || d.RetryAfter != 0 {
			t.Fatalf("call %d: %+v, want allowed with %d remaining", i+1, d, rate.Burst-1-i)
		}
		stored, err := client.Get(ctx, redisKey).Int64()
		if err != nil {
			t.Fatalf("call %d: GET %s: %v", i+1, redisKey, err)
		}
		tat := time.UnixMicro(stored)
		if tat.Before(before.Add(d.ResetAfter)) || tat.After(after.Add(d.ResetAfter)) {
			t.Errorf("call %d: stored TAT %v, want between %v and %v (server time + ResetAfter %v)",
				i+1, tat, before.Add(d.ResetAfter), after.Add(d.ResetAfter), d.ResetAfter)
		}
		ttl, err := client.PTTL(ctx, redisKey).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > d.ResetAfter.Round(time.Millisecond)+time.Millisecond {
			t.Errorf("call %d: PTTL %v, want in (0, ResetAfter %v]", i+1, ttl, d.ResetAfter)
		}
	}

	storedBefore, _ := client.Get(ctx, redisKey).Result()
	d, err := l.Allow(ctx, "agent", rate, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.Remaining != 0 {
		t.Fatalf("beyond the burst: %+v, want refused with 0 remaining", d)
	}
	// A refused call of cost c at TAT: reset = TAT − now and
	// retry = TAT + c×T − τ − now, both from the same now.
	if d.RetryAfter <= 0 || d.RetryAfter > interval || d.RetryAfter != d.ResetAfter+interval-tolerance {
		t.Errorf("beyond the burst: RetryAfter %v, ResetAfter %v; want RetryAfter in (0, %v] and = ResetAfter − %v",
			d.RetryAfter, d.ResetAfter, interval, tolerance-interval)
	}
	if storedAfter, _ := client.Get(ctx, redisKey).Result(); storedAfter != storedBefore {
		t.Errorf("a refused call changed the TAT from %s to %s", storedBefore, storedAfter)
	}

	// Asking with cost 0 spends nothing and creates no key.
	if d, err := l.Allow(ctx, "newcomer", rate, 0); err != nil || !d.Allowed || d.Remaining != rate.Burst {
		t.Errorf("cost 0 for a new key: %+v, %v; want allowed with the full burst", d, err)
	}
	if n, _ := client.Exists(ctx, "mcpbroker:rl:newcomer").Result(); n != 0 {
		t.Error("cost 0 created a key")
	}
	// Another key has its own budget.
	if d, err := l.Allow(ctx, "other", rate, 1); err != nil || !d.Allowed || d.Remaining != rate.Burst-1 {
		t.Errorf("another key: %+v, %v; want allowed with %d remaining", d, err, rate.Burst-1)
	}
	// Every key the limiter wrote expires.
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("keys %v, want mcpbroker:rl:agent and mcpbroker:rl:other", keys)
	}
	for _, key := range keys {
		if ttl, _ := client.PTTL(ctx, key).Result(); ttl <= 0 {
			t.Errorf("%s: PTTL %v, want an expiry", key, ttl)
		}
	}
}

// Three replicas, each with its own client, and 64 callers among them get
// exactly the burst of one shared budget: 10, plus one for each 600ms the
// run lasted (none when it fits within 600ms, as it does).
func TestRedisExactUnderConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	replicas := []Limiter{
		NewRedisLimiter(srv.Client(), "test:"),
		NewRedisLimiter(srv.Client(), "test:"),
		NewRedisLimiter(srv.Client(), "test:"),
	}
	observer := srv.Client()
	start := serverTime(t, observer)
	got := admitConcurrently(t, replicas, "shared", perMinute100, 64, 50)
	elapsed := serverTime(t, observer).Sub(start)

	budget := perMinute100.Burst + int(elapsed/perMinute100.interval())
	t.Logf("admitted %d of %d calls in %v", got, 64*50, elapsed)
	if got < perMinute100.Burst || got > budget {
		t.Errorf("admitted %d calls in %v, want %d", got, elapsed, budget)
	}
}

// Decisions take one round trip: EVALSHA, and EVAL once when the server
// lacks the script.
func TestRedisOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	counter := &commandCounter{}
	client.AddHook(counter)
	l := NewRedisLimiter(client, "")
	ctx := context.Background()

	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	counter.reset()
	if _, err := l.Allow(ctx, "k", perMinute100, 1); err != nil {
		t.Fatal(err)
	}
	if got := counter.names(); len(got) != 2 || got[0] != "evalsha" || got[1] != "eval" {
		t.Errorf("first decision sent %v, want [evalsha eval]", got)
	}
	counter.reset()
	for range 20 {
		if _, err := l.Allow(ctx, "k", perMinute100, 1); err != nil {
			t.Fatal(err)
		}
	}
	got := counter.names()
	if len(got) != 20 {
		t.Fatalf("20 decisions sent %d commands %v, want 20", len(got), got)
	}
	for _, name := range got {
		if name != "evalsha" {
			t.Fatalf("decisions sent %v, want only evalsha", got)
		}
	}
}

// commandCounter records the commands a client sends.
type commandCounter struct {
	mu   sync.Mutex
	sent []string
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.sent = append(c.sent, cmd.Name())
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		for _, cmd := range cmds {
			c.sent = append(c.sent, cmd.Name())
		}
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (c *commandCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = nil
}

func (c *commandCounter) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.sent...)
}

// With Redis down, decisions fail with ErrStoreUnavailable; once it is
// back, the same limiter decides again (and loads its script again).
func TestRedisDownAndBack(t *testing.T) {
	srv := redistest.Start(t)
	l := NewRedisLimiter(srv.Client(), "")
	allow := func(timeout time.Duration) (Decision, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return l.Allow(ctx, "k", perMinute100, 1)
	}
	if _, err := allow(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	// The client's own dial retries would take seconds; the deadline
	// ends the wait before.
	if d, err := allow(200 * time.Millisecond); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("Redis stopped: %+v, %v; want ErrStoreUnavailable", d, err)
	}
	srv.Restart() // without persistence: the budget starts afresh
	d, err := allow(5 * time.Second)
	if err != nil {
		t.Fatalf("Redis restarted: %v", err)
	}
	if !d.Allowed || d.Remaining != perMinute100.Burst-1 {
		t.Errorf("Redis restarted: %+v, want allowed with %d remaining", d, perMinute100.Burst-1)
	}
}

// With an append-only file, a spent budget stays spent across a restart of
// Redis.
func TestRedisBudgetSurvivesRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly())
	l := NewRedisLimiter(srv.Client(), "")
	ctx := context.Background()
	for range perMinute100.Burst {
		if _, err := l.Allow(ctx, "k", perMinute100, 1); err != nil {
			t.Fatal(err)
		}
	}
	srv.Restart()
	d, err := l.Allow(ctx, "k", perMinute100, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed {
		t.Errorf("after a restart: %+v, want the spent budget refused", d)
	}
}

// hungServer accepts connections and never answers, as a Redis behind a
// broken network path would.
func hungServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, conn) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			conn.Close()
		}
	})
	return ln.Addr().String()
}

// A Redis that does not answer holds each decision no longer than its
// context's deadline (or RedisTimeout without one), and many waiting
// callers leave no goroutines behind them: the limiter starts none.
func TestRedisHungServer(t *testing.T) {
	const poolSize = 4
	client := redis.NewClient(&redis.Options{
		Addr:                  hungServer(t),
		ContextTimeoutEnabled: true,
		PoolSize:              poolSize,
		DialTimeout:           time.Minute, // only the contexts' deadlines end the waits
		ReadTimeout:           time.Minute,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	t.Cleanup(func() { client.Close() })
	l := NewRedisLimiter(client, "")

	if _, err := l.Allow(context.Background(), "k", perMinute100, 1); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("without a deadline: %v; want ErrStoreUnavailable after RedisTimeout", err)
	}

	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	errs := make(chan error, 64*3)
	for range 64 {
		wg.Go(func() {
			for range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				_, err := l.Allow(ctx, "k", perMinute100, 1)
				cancel()
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("with a deadline: %v; want ErrStoreUnavailable and context.DeadlineExceeded", err)
		}
	}
	// The client may keep a dial in flight per pool slot; 192 abandoned
	// calls must not have left one goroutine each.
	grown := runtime.NumGoroutine() - before
	t.Logf("%d goroutines more after 192 calls timed out", grown)
	if grown > 4*poolSize {
		t.Errorf("%d goroutines more after 192 calls timed out, want at most %d", grown, 4*poolSize)
	}
}

// keyFor names the i-th key of a benchmark.
func keyFor(i int) string { return "client-" + strconv.Itoa(i) }
