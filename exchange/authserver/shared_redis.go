package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
)

// formSpender makes each form good for one post: spend reports false for a
// token posted before.
type formSpender interface {
	spend(token string, now time.Time) (bool, error)
}

// signInThrottle bounds password guesses (see loginThrottle).
type signInThrottle interface {
	attempt(username, ip string, now time.Time) (bool, error)
	done(username, ip string, right bool) error
}

// redisSpentForms remembers spent form tokens in Redis, where every broker
// sharing it sees them, until their flow would have expired anyway.
type redisSpentForms struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
}

func (f *redisSpentForms) spend(token string, _ time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTxTimeout)
	defer cancel()
	fresh, err := f.client.SetNX(ctx, f.prefix+"spent:"+digest(token), "1", f.ttl).Result()
	if err != nil {
		return false, unreachable(err)
	}
	return fresh, nil
}

// redisThrottle keeps the sign-in throttle's counts in Redis, so that the
// limits hold across brokers: failures per username and address within
// throttleWindow, and the guesses being checked at once. A guess being
// checked is forgotten after checkingTTL, should its broker die before
// it is done.
type redisThrottle struct {
	client redis.UniversalClient
	prefix string
}

const checkingTTL = 30 * time.Second

var throttleAttempt = redis.NewScript(`
local fu = tonumber(redis.call('GET', KEYS[1]) or '0')
local fi = tonumber(redis.call('GET', KEYS[2]) or '0')
local cu = tonumber(redis.call('GET', KEYS[3]) or '0')
local ci = tonumber(redis.call('GET', KEYS[4]) or '0')
if fu >= tonumber(ARGV[1]) or fi >= tonumber(ARGV[2]) or cu >= tonumber(ARGV[3]) or ci >= tonumber(ARGV[4]) then
  return 0
end
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
end
for i = 3, 4 do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[6])
end
return 1
`)

var throttleDone = redis.NewScript(`
for i = 3, 4 do
  if redis.call('DECR', KEYS[i]) <= 0 then redis.call('DEL', KEYS[i]) end
end
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1])
  if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
end
return 1
`)

func (t *redisThrottle) keys(username, ip string) []string {
	user, address := digest(username), digest(ip)
	return []string{
		t.prefix + "throttle:fail:user:" + user, t.prefix + "throttle:fail:ip:" + address,
		t.prefix + "throttle:checking:user:" + user, t.prefix + "throttle:checking:ip:" + address,
	}
}

func (t *redisThrottle) attempt(username, ip string, _ time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTxTimeout)
	defer cancel()
	admitted, err := throttleAttempt.Run(ctx, t.client, t.keys(username, ip),
		maxUserFailures, maxIPFailures, maxUserParallel, maxIPParallel,
		throttleWindow.Milliseconds(), checkingTTL.Milliseconds()).Int()
	if err != nil {
		return false, unreachable(err)
	}
	return admitted == 1, nil
}

func (t *redisThrottle) done(username, ip string, right bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), redisTxTimeout)
	defer cancel()
	flag := "0"
	if right {
		flag = "1"
	}
	if err := throttleDone.Run(ctx, t.client, t.keys(username, ip), flag).Err(); err != nil {
		return unreachable(err)
	}
	return nil
}

// digest names a value in a key without putting the value there.
func digest(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:16])
}
