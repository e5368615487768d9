//go:build linux

package soak

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// replicaConfig is one replica: its address, admin address and audit
// directory, then the Redis address, the session key and the upstream's
// MCP endpoint. The rate limit is shared by all callers and generous
// enough never to refuse, so that every call spends a budget in Redis.
const replicaConfig = `version: 1
http: {address: %q}
admin: {address: %q}
audit: {dir: %q}
storage:
  redis: {addresses: [%q], keyPrefix: "soak:"}
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, allowClientTermination: true, key: %q}}
apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %q}}
rateLimits:
  rules:
    - {name: soak, per: [], rate: 1000000, period: 1s, burst: 1000000}
`

// Defaults of SOAK_RATE (calls per second over all replicas) and
// SOAK_DURATION.
const (
	defaultRate     = 200
	defaultDuration = 10 * time.Minute
)

// TestSoak runs three replicas sharing Redis under a steady load for
// SOAK_DURATION and prints, every minute, what each has served and the
// memory and goroutines it uses (see the package documentation).
func TestSoak(t *testing.T) {
	if os.Getenv("MCPBROKER_SOAK") == "" {
		t.Skip("the soak test runs with make soak (MCPBROKER_SOAK=1)")
	}
	rate, duration := settings(t)
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < duration+3*time.Minute {
		t.Fatalf("SOAK_DURATION %v does not fit in the test's timeout (%v left): raise SOAK_TIMEOUT",
			duration, time.Until(deadline).Round(time.Second))
	}

	server := redistest.Start(t)
	redisClient := server.Client()
	binary := buildBinary(t)
	upstream := freeAddress(t)
	startProcess(t, "upstream", upstream, binary, "upstream", "sample", "--listen", upstream)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sessionKey := base64.StdEncoding.EncodeToString(key)
	dir := t.TempDir()
	replicas := make([]*replica, 3)
	for i := range replicas {
		name := fmt.Sprintf("replica-%d", i+1)
		addr, admin := freeAddress(t), freeAddress(t)
		config := filepath.Join(dir, name+".yaml")
		yaml := fmt.Sprintf(replicaConfig, addr, admin, filepath.Join(dir, name+"-audit"), server.Addr(), sessionKey, "http://"+upstream+"/mcp")
		if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		proc := startProcess(t, name, addr, binary, "serve", "--config", config)
		replicas[i] = &replica{number: i + 1, mcp: "http://" + addr + "/mcp", admin: "http://" + admin, proc: proc}
	}

	say("3 mcpbroker replicas sharing Redis (%s) and a session key, one sample upstream", server.Addr())
	say("load: %g calls/s (tools/call 70 %%, tools/list 20 %%, ping 10 %%) over %d sessions, each on every replica in turn "+
		"and ended after %d to %d requests, for %v", rate, liveSessions, minRequests, maxRequests, duration)
	say("fails on any error, or if from minute %d to the end a replica's goroutines grow over %+.0f %% (and by more than %d) or its RSS over %+.0f %%",
		int(baselineAt/time.Minute), maxGoroutineGrowth*100, goroutineSlack, maxRSSGrowth*100)

	l := newLoad(replicas, rate)
	start := time.Now()
	stop := l.start()
	samples := make([][]sample, len(replicas))
	metrics := &http.Client{Timeout: 10 * time.Second}
	for m := 1; ; m++ {
		mark := min(time.Duration(m)*time.Minute, duration)
		time.Sleep(time.Until(start.Add(mark)))
		var calls, errs int64
		for i, r := range replicas {
			s := sample{at: mark, calls: r.calls.Load(), errors: r.errors.Load()}
			calls, errs = calls+s.calls, errs+s.errors
			rss, goroutines, err := readProcess(context.Background(), metrics, r.admin)
			if err != nil {
				t.Errorf("%s replica %d: %v", at(mark), r.number, err)
				continue
			}
			s.rss, s.goroutines = rss, goroutines
			samples[i] = append(samples[i], s)
			say("%s  replica %d  calls %7d  errors %4d  rss %9s  goroutines %5.0f",
				at(mark), r.number, s.calls, s.errors, mebibytes(s.rss), s.goroutines)
		}
		say("%s  all        calls %7d  errors %4d  %.1f calls/s  sessions opened %d, ended %d  %s",
			at(mark), calls, errs, float64(calls)/time.Since(start).Seconds(), l.opened.Load(), l.ended.Load(), redisFigures(redisClient))
		if mark == duration {
			break
		}
	}
	stop()
	elapsed := time.Since(start)

	// The replicas stop as an operator stops them, and must exit 0.
	stopped := make([]string, len(replicas))
	for i, r := range replicas {
		stopped[i] = "exit 0 on SIGTERM"
		if err := r.proc.stop(); err != nil {
			stopped[i] = "did not exit cleanly"
			t.Errorf("replica %d: %v", r.number, err)
		}
	}

	var calls, errs int64
	for _, r := range replicas {
		calls, errs = calls+r.calls.Load(), errs+r.errors.Load()
	}
	say("summary after %s: %d calls (%.1f/s), %d errors; %d sessions opened, %d ended and refused afterwards by another replica",
		at(elapsed), calls, float64(calls)/elapsed.Seconds(), errs, l.opened.Load(), l.ended.Load())
	for i, r := range replicas {
		if len(samples[i]) == 0 {
			say("replica %d: no samples; %s", r.number, stopped[i])
			continue
		}
		from, to := baseline(samples[i]), samples[i][len(samples[i])-1]
		say("replica %d: goroutines %.0f → %.0f (%+.1f %%), rss %s → %s (%+.1f %%) from %s to %s; %s",
			r.number, from.goroutines, to.goroutines, growth(from.goroutines, to.goroutines)*100,
			mebibytes(from.rss), mebibytes(to.rss), growth(from.rss, to.rss)*100, at(from.at), at(to.at), stopped[i])
		for _, problem := range growthProblems(samples[i]) {
			t.Errorf("replica %d: %s", r.number, problem)
		}
	}
	if errs > 0 {
		t.Errorf("%d requests failed; the first:\n%s", errs, strings.Join(l.failures, "\n"))
	}
	if t.Failed() {
		say("FAIL")
	} else {
		say("PASS")
	}
}

// settings reads SOAK_RATE and SOAK_DURATION.
func settings(t *testing.T) (rate float64, duration time.Duration) {
	t.Helper()
	rate, duration = defaultRate, defaultDuration
	if v := os.Getenv("SOAK_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("SOAK_RATE=%q: want calls per second, above 0", v)
		}
		rate = r
	}
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			t.Fatalf("SOAK_DURATION=%q: want a duration such as 10m, at least 1s", v)
		}
		duration = d
	}
	return rate, duration
}

// redisFigures are the keys Redis holds (mostly ended sessions, kept
// until they would have expired) and the memory it uses.
func redisFigures(client *redis.Client) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := client.DBSize(ctx).Result()
	if err != nil {
		return "redis: " + err.Error()
	}
	info, err := client.Info(ctx, "memory").Result()
	if err != nil {
		return "redis: " + err.Error()
	}
	var used float64
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			used, _ = strconv.ParseFloat(v, 64)
		}
	}
	return fmt.Sprintf("redis keys %d, %s", keys, mebibytes(used))
}

// say prints one line of the soak's report at once, even while the test
// runs.
func say(format string, args ...any) {
	fmt.Printf("soak: "+format+"\n", args...)
}
