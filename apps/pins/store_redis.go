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
// key of the broker: a pin is an operator's decision, not a cache, and
// must outlive any idle time; their number is bounded by the definitions
// the apps list.
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
		iter := s.client.Scan(ctx, 0, s.prefix+"*", 100).Iterator()
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
