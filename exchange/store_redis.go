package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedKeyStore is a KeyStore several brokers use at once. Update changes
// what it holds atomically, so that one broker's rotation is never lost to
// another's; each broker reloads what the others changed (KeySet.Reload).
type SharedKeyStore interface {
	KeyStore
	// Update passes change the stored keys and stores what it returns
	// when it reports a change, unless the keys changed meanwhile: then
	// it runs change again on the new ones.
	Update(ctx context.Context, change func([]StoredKey) ([]StoredKey, bool, error)) error
}

var _ SharedKeyStore = (*RedisKeyStore)(nil)

// RedisKeyStore keeps the signing keys in one Redis key, a JSON array, for
// brokers that share Redis. The key has no expiry: retired keys are
// dropped by the key set itself.
type RedisKeyStore struct {
	client redis.UniversalClient
	key    string
}

// redisKeyAttempts bounds how often an update is tried again when other
// brokers keep changing the keys under it.
const redisKeyAttempts = 16

// NewRedisKeyStore stores keys under keyPrefix + "{auth}:signing_keys".
func NewRedisKeyStore(client redis.UniversalClient, keyPrefix string) *RedisKeyStore {
	return &RedisKeyStore{client: client, key: keyPrefix + "{auth}:signing_keys"}
}

func (s *RedisKeyStore) Load(ctx context.Context) ([]StoredKey, error) {
	raw, err := s.client.Get(ctx, s.key).Bytes()
	return decodeStoredKeys(raw, err)
}

func decodeStoredKeys(raw []byte, err error) ([]StoredKey, error) {
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: signing keys in redis: %w", err)
	}
	var keys []StoredKey
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf("exchange: signing keys in redis: %w", err)
	}
	return keys, nil
}

func (s *RedisKeyStore) Save(ctx context.Context, keys []StoredKey) error {
	raw, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	if err := s.client.Set(ctx, s.key, raw, 0).Err(); err != nil {
		return fmt.Errorf("exchange: signing keys in redis: %w", err)
	}
	return nil
}

func (s *RedisKeyStore) Update(ctx context.Context, change func([]StoredKey) ([]StoredKey, bool, error)) error {
	for range redisKeyAttempts {
		err := s.client.Watch(ctx, func(tx *redis.Tx) error {
			current, err := decodeStoredKeys(tx.Get(ctx, s.key).Bytes())
			if err != nil {
				return err
			}
			next, changed, err := change(current)
			if err != nil || !changed {
				return err
			}
			raw, err := json.Marshal(next)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, s.key, raw, 0)
				return nil
			})
			return err
		}, s.key)
		if !errors.Is(err, redis.TxFailedErr) {
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("exchange: signing keys in redis: %w", err)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return errors.New("exchange: signing keys in redis: changed by others too often to update")
}
