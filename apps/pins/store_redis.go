package pins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Pins in Redis: one hash per app, <prefix>pins:<app>, field kind NUL
// name, value the Pin in JSON. The hashes carry no TTL, unlike every other
// key of the broker: a pin is an operator's decision (or a first sight
// standing in for one), not a cache or a session's state. An expiring pin
// would turn a reviewed definition back into a new one, trusted again at
// its next sight whatever it then says, which is the rug pull pinning is
// for. Their number is bounded: MaxPinsPerApp per configured app, and a
// revoked pin is deleted.
type redisStore struct {
	client redis.UniversalClient
	prefix string
}

var _ Store = redisStore{}

// NewRedisStore keeps pins in Redis under keyPrefix.
func NewRedisStore(client redis.UniversalClient, keyPrefix string) Store {
	return redisStore{client: client, prefix: keyPrefix + "pins:"}
}

func field(kind Kind, name string) string { return string(kind) + "\x00" + name }

func (s redisStore) Get(ctx context.Context, app string, kind Kind, name string) (Pin, bool, error) {
	v, err := s.client.HGet(ctx, s.prefix+app, field(kind, name)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Pin{}, false, nil
	}
	if err != nil {
		return Pin{}, false, fmt.Errorf("pins: redis: %w", err)
	}
	var p Pin
	if err := json.Unmarshal(v, &p); err != nil {
		return Pin{}, false, fmt.Errorf("pins: redis: %w", err)
	}
	return p, true, nil
}

func (s redisStore) Create(ctx context.Context, p Pin) (Pin, bool, error) {
	p.Revision = 1
	value, err := json.Marshal(p)
	if err != nil {
		return Pin{}, false, err
	}
	created, err := s.client.HSetNX(ctx, s.prefix+p.App, field(p.Kind, p.Name), value).Result()
	if err != nil {
		return Pin{}, false, fmt.Errorf("pins: redis: %w", err)
	}
	if created {
		return p, true, nil
	}
	in, found, err := s.Get(ctx, p.App, p.Kind, p.Name)
	if err == nil && !found {
		err = errors.New("pins: redis: a pin vanished while it was created")
	}
	return in, false, err
}

// updateScript sets field ARGV[1] of hash KEYS[1] to ARGV[3] if the pin
// stored there is at revision ARGV[2]. Pins are written by this package
// only, with the revision as their first member, so the revision is read
// without decoding the definitions; a pin written before revisions
// existed is at revision 0.
var updateScript = redis.NewScript(`
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return 0 end
local revision = tonumber(string.match(stored, '^{"revision":(%d+)')) or 0
if revision ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

func (s redisStore) Update(ctx context.Context, p Pin) (bool, error) {
	read := p.Revision
	p.Revision++
	value, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	n, err := updateScript.Run(ctx, s.client, []string{s.prefix + p.App}, field(p.Kind, p.Name), read, value).Int()
	if err != nil {
		return false, fmt.Errorf("pins: redis: %w", err)
	}
	return n == 1, nil
}

func (s redisStore) Count(ctx context.Context, app string) (int, error) {
	n, err := s.client.HLen(ctx, s.prefix+app).Result()
	if err != nil {
		return 0, fmt.Errorf("pins: redis: %w", err)
	}
	return int(n), nil
}

func (s redisStore) Put(ctx context.Context, p Pin) error {
	value, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := s.client.HSet(ctx, s.prefix+p.App, field(p.Kind, p.Name), value).Err(); err != nil {
		return fmt.Errorf("pins: redis: %w", err)
	}
	return nil
}

func (s redisStore) Delete(ctx context.Context, app string, kind Kind, name string) (bool, error) {
	n, err := s.client.HDel(ctx, s.prefix+app, field(kind, name)).Result()
	if err != nil {
		return false, fmt.Errorf("pins: redis: %w", err)
	}
	return n > 0, nil
}

func (s redisStore) List(ctx context.Context, app string) ([]Pin, error) {
	keys := []string{s.prefix + app}
	if app == "" {
		keys = nil
		iter := s.client.Scan(ctx, 0, globEscape(s.prefix)+"*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return nil, fmt.Errorf("pins: redis: %w", err)
		}
		slices.Sort(keys)
	}
	var pins []Pin
	for _, key := range keys {
		all, err := s.client.HGetAll(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("pins: redis: %w", err)
		}
		fields := make([]string, 0, len(all))
		for f := range all {
			fields = append(fields, f)
		}
		slices.Sort(fields)
		for _, f := range fields {
			var p Pin
			if err := json.Unmarshal([]byte(all[f]), &p); err != nil {
				return nil, fmt.Errorf("pins: redis: %s %q: %w", key, strings.ReplaceAll(f, "\x00", " "), err)
			}
			pins = append(pins, p)
		}
	}
	return pins, nil
}

// globEscape escapes the characters SCAN's MATCH pattern gives a meaning.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]^\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
