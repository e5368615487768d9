package authserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// kv is where the store keeps its records: buckets of keys, read and
// changed in transactions. bbolt serves one broker; Redis serves brokers
// that share it, and expires records by itself.
type kv interface {
	view(fn func(kvTx) error) error
	update(fn func(kvTx) error) error
	// expires reports whether records put with an expiry disappear then
	// by themselves, so that sweeping them is not needed.
	expires() bool
}

// kvTx is one transaction. Within update, what is read stays as read
// until the end, or the transaction is tried again.
type kvTx interface {
	get(bucket []byte, key string) ([]byte, error)
	// put stores value; a zero expires keeps it until deleted.
	put(bucket []byte, key string, value []byte, expires time.Time) error
	del(bucket []byte, key string) error
	// Sets of members, kept under one key of a bucket.
	addMember(bucket []byte, set, member string, expires time.Time) error
	removeMember(bucket []byte, set, member string) error
	members(bucket []byte, set string) ([]string, error)
	// forEach visits a bucket's records, for sweeps and starts; within
	// update it does not pin what it reads.
	forEach(bucket []byte, fn func(key string, value []byte) error) error
}

// boltKV keeps the records in buckets of a bbolt database.
type boltKV struct{ db *bolt.DB }

func (b boltKV) view(fn func(kvTx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltKV) update(fn func(kvTx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (boltKV) expires() bool { return false }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) get(bucket []byte, key string) ([]byte, error) {
	return bytes.Clone(t.tx.Bucket(bucket).Get([]byte(key))), nil
}

func (t boltTx) put(bucket []byte, key string, value []byte, _ time.Time) error {
	return t.tx.Bucket(bucket).Put([]byte(key), value)
}

func (t boltTx) del(bucket []byte, key string) error { return t.tx.Bucket(bucket).Delete([]byte(key)) }

// A set's members are keys of the bucket: the set's name, 0, the member.
func (t boltTx) addMember(bucket []byte, set, member string, _ time.Time) error {
	return t.tx.Bucket(bucket).Put([]byte(set+"\x00"+member), nil)
}

func (t boltTx) removeMember(bucket []byte, set, member string) error {
	return t.tx.Bucket(bucket).Delete([]byte(set + "\x00" + member))
}

func (t boltTx) members(bucket []byte, set string) ([]string, error) {
	prefix := []byte(set + "\x00")
	var members []string
	cursor := t.tx.Bucket(bucket).Cursor()
	for key, _ := cursor.Seek(prefix); key != nil && bytes.HasPrefix(key, prefix); key, _ = cursor.Next() {
		members = append(members, string(key[len(prefix):]))
	}
	return members, nil
}

func (t boltTx) forEach(bucket []byte, fn func(string, []byte) error) error {
	return t.tx.Bucket(bucket).ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

// redisKV keeps the records in Redis, one key per record and per set,
// named prefix + "{auth}:" + bucket + ":" + key. The one hash tag keeps
// every key of a transaction on one cluster slot.
type redisKV struct {
	client redis.UniversalClient
	prefix string
	// anchor is the key every transaction watches first: it is never
	// written, but names the slot, which a cluster client needs to know
	// before the transaction reads anything.
	anchor string
}

const (
	// redisTxTimeout bounds one transaction, all its round trips.
	redisTxTimeout = 3 * time.Second
	// redisTxAttempts bounds how often a transaction is tried again when
	// other brokers change what it read.
	redisTxAttempts = 32
	// redisScanBatch is how many keys a scan asks for at once.
	redisScanBatch = 500
)

func newRedisKV(client redis.UniversalClient, keyPrefix string) redisKV {
	prefix := keyPrefix + "{auth}:"
	return redisKV{client: client, prefix: prefix, anchor: prefix + "transactions"}
}

func (r redisKV) key(bucket []byte, key string) string {
	return r.prefix + string(bucket) + ":" + key
}

func (redisKV) expires() bool { return true }

func (r redisKV) view(fn func(kvTx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), redisTxTimeout)
	defer cancel()
	return fn(&redisTx{kv: r, ctx: ctx, reader: r.client})
}

// update runs fn in an optimistic transaction: every key fn reads is
// watched before it is read, and fn's writes are sent in one MULTI/EXEC,
// which fails when another broker changed a watched key; then fn runs
// again on what is there now.
func (r redisKV) update(fn func(kvTx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), redisTxTimeout)
	defer cancel()
	for range redisTxAttempts {
		// fnErr tells fn's own errors, which the reads have marked as
		// Redis's where they are, from the failures of the transaction.
		var fnErr error
		err := r.client.Watch(ctx, func(tx *redis.Tx) error {
			t := &redisTx{kv: r, ctx: ctx, reader: tx, watch: tx, pending: map[string]*pendingValue{}}
			if fnErr = fn(t); fnErr != nil {
				return fnErr
			}
			if len(t.writes) == 0 {
				return nil
			}
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, write := range t.writes {
					write(p)
				}
				return nil
			})
			return err
		}, r.anchor)
		switch {
		case errors.Is(err, redis.TxFailedErr):
			continue
		case fnErr != nil:
			return fnErr
		case err != nil:
			return unreachable(err)
		}
		return nil
	}
	return unreachable(errors.New("records changed by other brokers too often to update"))
}

// errStoreDown is a failure of the store itself, not of what was asked of
// it; the endpoints answer it 503 temporarily_unavailable (storeDown).
var errStoreDown = errors.New("authserver: the store is unavailable")

// unreachable marks an error Redis returned as errStoreDown.
func unreachable(err error) error {
	return fmt.Errorf("%w: redis: %w", errStoreDown, err)
}

// storeDown turns an error that comes of the store being unreachable,
// however fosite wrapped it, into the OAuth error that says to try again
// later; other errors pass as they are.
func storeDown(err error) error {
	if err == nil || !errors.Is(err, errStoreDown) {
		return err
	}
	return fosite.ErrTemporarilyUnavailable.WithHint("The authorization server cannot reach its store; try again later.").WithWrap(err)
}

type redisTx struct {
	kv  redisKV
	ctx context.Context
	// reader reads; watch, within update, also pins what is read.
	reader redis.Cmdable
	watch  *redis.Tx
	// pending is what the transaction wrote so far, which its own reads
	// see; writes are sent together at its end.
	pending map[string]*pendingValue
	writes  []func(redis.Pipeliner)
}

type pendingValue struct {
	value   []byte
	deleted bool
}

func (t *redisTx) pin(key string) error {
	if t.watch == nil {
		return nil
	}
	if err := t.watch.Watch(t.ctx, key).Err(); err != nil {
		return unreachable(err)
	}
	return nil
}

func (t *redisTx) get(bucket []byte, key string) ([]byte, error) {
	k := t.kv.key(bucket, key)
	if p, ok := t.pending[k]; ok {
		if p.deleted {
			return nil, nil
		}
		return bytes.Clone(p.value), nil
	}
	if err := t.pin(k); err != nil {
		return nil, err
	}
	value, err := t.reader.Get(t.ctx, k).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, unreachable(err)
	}
	return value, nil
}

func (t *redisTx) write(key string, p *pendingValue, write func(redis.Pipeliner)) error {
	if t.watch == nil {
		return errors.New("authserver: a write outside a transaction that may write")
	}
	if p != nil {
		t.pending[key] = p
	}
	t.writes = append(t.writes, write)
	return nil
}

func (t *redisTx) put(bucket []byte, key string, value []byte, expires time.Time) error {
	k := t.kv.key(bucket, key)
	value = bytes.Clone(value)
	return t.write(k, &pendingValue{value: value}, func(p redis.Pipeliner) {
		if expires.IsZero() {
			p.Set(t.ctx, k, value, 0)
			return
		}
		// PXAT: an expiry already past deletes the key.
		p.SetArgs(t.ctx, k, value, redis.SetArgs{ExpireAt: expires})
	})
}

func (t *redisTx) del(bucket []byte, key string) error {
	k := t.kv.key(bucket, key)
	return t.write(k, &pendingValue{deleted: true}, func(p redis.Pipeliner) { p.Del(t.ctx, k) })
}

// A set lives until its latest member's expiry: the first expiry given
// is set (NX), a later one pushes it out (GT). Both need Redis 7.
func (t *redisTx) addMember(bucket []byte, set, member string, expires time.Time) error {
	k := t.kv.key(bucket, set)
	return t.write(k, nil, func(p redis.Pipeliner) {
		p.SAdd(t.ctx, k, member)
		if !expires.IsZero() {
			at := expires.UnixMilli()
			p.Do(t.ctx, "PEXPIREAT", k, at, "NX")
			p.Do(t.ctx, "PEXPIREAT", k, at, "GT")
		}
	})
}

func (t *redisTx) removeMember(bucket []byte, set, member string) error {
	k := t.kv.key(bucket, set)
	return t.write(k, nil, func(p redis.Pipeliner) { p.SRem(t.ctx, k, member) })
}

func (t *redisTx) members(bucket []byte, set string) ([]string, error) {
	k := t.kv.key(bucket, set)
	if err := t.pin(k); err != nil {
		return nil, err
	}
	members, err := t.reader.SMembers(t.ctx, k).Result()
	if err != nil {
		return nil, unreachable(err)
	}
	return members, nil
}

func (t *redisTx) forEach(bucket []byte, fn func(string, []byte) error) error {
	prefix := t.kv.key(bucket, "")
	var scanner redis.Cmdable = t.kv.client
	if cluster, ok := t.kv.client.(*redis.ClusterClient); ok {
		// Every key of the store is on the slot of its hash tag.
		node, err := cluster.MasterForKey(t.ctx, prefix)
		if err != nil {
			return unreachable(err)
		}
		scanner = node
	}
	var cursor uint64
	for {
		keys, next, err := scanner.Scan(t.ctx, cursor, redisGlobEscape(prefix)+"*", redisScanBatch).Result()
		if err != nil {
			return unreachable(err)
		}
		if len(keys) > 0 {
			values, err := scanner.MGet(t.ctx, keys...).Result()
			if err != nil {
				return unreachable(err)
			}
			for i, k := range keys {
				value, ok := values[i].(string)
				if !ok {
					continue // expired meanwhile
				}
				if err := fn(strings.TrimPrefix(k, prefix), []byte(value)); err != nil {
					return err
				}
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// redisGlobEscape quotes the characters SCAN's MATCH pattern gives a
// meaning.
func redisGlobEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]^\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
