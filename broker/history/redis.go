package history

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The histories in Redis: one list per session, <prefix>history:<key>, its
// entries in JSON oldest first, trimmed to the last MaxCalls at each
// append and expiring a window after the last.
type redisStore struct {
	client redis.UniversalClient
	prefix string
}

// NewRedis keeps the histories in Redis under keyPrefix.
func NewRedis(client redis.UniversalClient, keyPrefix string) Store {
	return redisStore{client: client, prefix: keyPrefix + "history:"}
}

func (s redisStore) Append(ctx context.Context, key string, e Entry, limits Limits) error {
	value, err := json.Marshal(Bounded(e))
	if err != nil {
		return err
	}
	k := s.prefix + key
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, k, value)
		p.LTrim(ctx, k, int64(-limits.MaxCalls), -1)
		p.PExpire(ctx, k, limits.Window)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	return nil
}

func (s redisStore) Read(ctx context.Context, key string, limits Limits, now time.Time) ([]Entry, error) {
	values, err := s.client.LRange(ctx, s.prefix+key, int64(-limits.MaxCalls), -1).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	entries := make([]Entry, 0, len(values))
	for _, v := range values {
		var e Entry
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			return nil, fmt.Errorf("%w: redis: entry: %w", ErrUnavailable, err)
		}
		entries = append(entries, e)
	}
	return within(entries, limits, now), nil
}
