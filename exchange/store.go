package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// StoredKey is a signing key as persisted.
type StoredKey struct {
	ID        string    `json:"kid"`   // RFC 7638 thumbprint of the public key
	Algorithm string    `json:"alg"`   // EdDSA or ES256
	PKCS8     []byte    `json:"pkcs8"` // the private key, PKCS #8 DER
	Created   time.Time `json:"created"`
	Retired   time.Time `json:"retired,omitzero"` // zero while the key is active
}

// KeyStore persists the signing keys. Save replaces everything stored with
// keys, atomically.
type KeyStore interface {
	Load(ctx context.Context) ([]StoredKey, error)
	Save(ctx context.Context, keys []StoredKey) error
}

var (
	_ KeyStore = (*BoltKeyStore)(nil)
	_ KeyStore = (*MemoryKeyStore)(nil)
)

// OpenBolt opens (creating if needed) the bbolt file at path with mode 0600,
// and waits at most a second for another process's lock rather than hanging.
// It refuses a file that group or others may read or write: it holds
// private keys.
func OpenBolt(path string) (*bolt.DB, error) {
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("exchange: open %s: %w (mode %s; chmod 600 it)", path, ErrInsecureDB, info.Mode().Perm())
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("exchange: open %s: %w: %w", path, ErrStoreLocked, err)
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: open %s: %w", path, err)
	}
	return db, nil
}

var signingKeysBucket = []byte("signing_keys")

// BoltKeyStore keeps the signing keys in the bucket "signing_keys" of a
// bbolt database, one JSON record per key under its kid.
type BoltKeyStore struct {
	db *bolt.DB
}

// NewBoltKeyStore stores keys in db, which the caller opens (see OpenBolt)
// and closes.
func NewBoltKeyStore(db *bolt.DB) *BoltKeyStore { return &BoltKeyStore{db: db} }

func (s *BoltKeyStore) Load(ctx context.Context) ([]StoredKey, error) {
	var keys []StoredKey
	err := s.db.View(func(tx *bolt.Tx) error {
		bucket := tx.Bucket(signingKeysBucket)
		if bucket == nil {
			return nil
		}
		return bucket.ForEach(func(id, value []byte) error {
			var key StoredKey
			decoder := json.NewDecoder(bytes.NewReader(value))
			decoder.DisallowUnknownFields()
			if err := decoder.Decode(&key); err != nil {
				return fmt.Errorf("signing key %q: %w", id, err)
			}
			if key.ID != string(id) {
				return fmt.Errorf("signing key %q: stored under another kid: %w", id, ErrKeyMismatch)
			}
			keys = append(keys, key)
			return nil
		})
	})
	return keys, err
}

func (s *BoltKeyStore) Save(ctx context.Context, keys []StoredKey) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(signingKeysBucket) != nil {
			if err := tx.DeleteBucket(signingKeysBucket); err != nil {
				return err
			}
		}
		bucket, err := tx.CreateBucket(signingKeysBucket)
		if err != nil {
			return err
		}
		for _, key := range keys {
			value, err := json.Marshal(key)
			if err != nil {
				return err
			}
			if err := bucket.Put([]byte(key.ID), value); err != nil {
				return err
			}
		}
		return nil
	})
}

// MemoryKeyStore keeps keys in memory, for tests and throwaway brokers:
// every restart makes new keys.
type MemoryKeyStore struct {
	mu   sync.Mutex
	keys []StoredKey
}

func (s *MemoryKeyStore) Load(ctx context.Context) ([]StoredKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneKeys(s.keys), nil
}

func (s *MemoryKeyStore) Save(ctx context.Context, keys []StoredKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = cloneKeys(keys)
	return nil
}

func cloneKeys(keys []StoredKey) []StoredKey {
	clone := slices.Clone(keys)
	for i := range clone {
		clone[i].PKCS8 = slices.Clone(clone[i].PKCS8)
	}
	return clone
}
