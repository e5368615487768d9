package bench

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// redisBroker is policyBroker with the state replicas share kept in the
// Redis server at %[7]q: every call checks there that its session has not
// ended and spends its budget there, under a rule per subject generous
// enough never to refuse a call of the benchmark. It extends policyBroker,
// not exchangeBroker: the embedded authorization server that mints in
// process keeps its state in storage.bolt, which a broker with
// storage.redis cannot have, so a replica's whole pipeline is
// authentication, the rate limit, the policy and forwarding.
const redisBroker = policyBroker + `storage: {redis: {addresses: [%[7]q], keyPrefix: "bench:"}}
rateLimits:
  onStoreFailure: closed
  rules:
    - {name: bench, per: [subject], rate: 1000000, period: 1s, burst: 1000000}
`

// redisBrokerPath is policyBrokerPath for yaml with storage.redis (see
// redisBroker), in front of a redis-server of its own.
func redisBrokerPath(yaml string) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		server := redistest.Start(tb)
		dst, mint := startAuthBroker(tb, yaml, upstream, server.Addr())
		dst.outsider = func() string { return mint("bench-outsider", []string{"marketing"}) }
		dst.redis = server.Client()
		return dst
	}
}

// redisCommands is how many times the Redis server has run each command
// (lowercase, as INFO commandstats names them) since it started.
type redisCommands map[string]float64

func readRedisCommands(tb testing.TB, client *redis.Client) redisCommands {
	tb.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatalf("redis: INFO commandstats: %v", err)
	}
	return parseCommandStats(info)
}

// parseCommandStats reads lines such as
//
//	cmdstat_exists:calls=20,usec=31,usec_per_call=1.55,rejected_calls=0,failed_calls=0
func parseCommandStats(info string) redisCommands {
	commands := redisCommands{}
	scanner := bufio.NewScanner(strings.NewReader(info))
	for scanner.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(scanner.Text()), "cmdstat_")
		if !ok {
			continue
		}
		name, stats, _ := strings.Cut(line, ":")
		for field := range strings.SplitSeq(stats, ",") {
			if value, ok := strings.CutPrefix(field, "calls="); ok {
				if n, err := strconv.ParseFloat(value, 64); err == nil {
					commands[name] = n
				}
			}
		}
	}
	return commands
}

// since is what ran between earlier and c.
func (c redisCommands) since(earlier redisCommands) redisCommands {
	diff := redisCommands{}
	for name, n := range c {
		diff[name] = n - earlier[name]
	}
	return diff
}

// sessionChecks are the round trips that ask whether a session has ended.
func (c redisCommands) sessionChecks() float64 { return c["exists"] }

// budgetChecks are the round trips that spend a budget: one script run,
// EVALSHA, or EVAL once when Redis did not have the script yet. The
// commands the script runs inside Redis are no round trips.
func (c redisCommands) budgetChecks() float64 { return c["evalsha"] + c["eval"] }

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_exists:calls=20,usec=31,usec_per_call=1.55,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=21,usec=900,usec_per_call=42.86,rejected_calls=0,failed_calls=1\r\n" +
		"cmdstat_eval:calls=1,usec=70,usec_per_call=70.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=2,usec=3,usec_per_call=1.50,rejected_calls=0,failed_calls=0\r\n" +
		"used_memory:1000\r\n"
	got := parseCommandStats(info)
	want := redisCommands{"exists": 20, "evalsha": 21, "eval": 1, "client|setinfo": 2}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s: got %v, want %v", name, got[name], n)
		}
	}
	later := redisCommands{"exists": 36, "evalsha": 37, "eval": 1, "client|setinfo": 2}.since(got)
	if later.sessionChecks() != 16 || later.budgetChecks() != 16 {
		t.Errorf("since: %v session checks and %v budget checks, want 16 and 16", later.sessionChecks(), later.budgetChecks())
	}
}
