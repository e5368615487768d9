package provider

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the ended session ids: byID maps an id's hash to the time it
// may be forgotten; byTime holds the same entries ordered by that time, so
// expired and, when full, soonest-expiring entries are found first.
var (
	endedByID   = []byte("ended_sessions")
	endedByTime = []byte("ended_sessions_by_time")
)

// boltRevocations keeps ended session ids in a bbolt database, so an id
// ended before a restart stays ended after it: with a configured session
// key, sealed ids outlive the process.
type boltRevocations struct {
	db  *bolt.DB
	max int

	mu    sync.Mutex // orders writers, so count stays right
	count int
}

var _ Revocations = (*boltRevocations)(nil)

// NewBoltRevocations keeps up to max ended ids in db, which the caller
// opens and closes; past max, the ids closest to expiring anyway are
// forgotten first.
func NewBoltRevocations(db *bolt.DB, max int) (Revocations, error) {
	r := &boltRevocations{db: db, max: max}
	err := db.Update(func(tx *bolt.Tx) error {
		byID, err := tx.CreateBucketIfNotExists(endedByID)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(endedByTime); err != nil {
			return err
		}
		r.count = byID.Stats().KeyN
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("provider: ended sessions store: %w", err)
	}
	return r, nil
}

func endedKey(id string) []byte {
	sum := sha256.Sum256([]byte(id))
	return sum[:16]
}

func timeKey(until int64, key []byte) []byte {
	k := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(until))
	return append(k, key...)
}

func (r *boltRevocations) Revoke(id string, until time.Time) error {
	key, at := endedKey(id), until.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	added := 0
	err := r.db.Update(func(tx *bolt.Tx) error {
		byID, byTime := tx.Bucket(endedByID), tx.Bucket(endedByTime)
		if old := byID.Get(key); old != nil {
			if err := byTime.Delete(timeKey(int64(binary.BigEndian.Uint64(old)), key)); err != nil {
				return err
			}
		} else {
			added++
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(at))
		if err := byID.Put(key, v[:]); err != nil {
			return err
		}
		if err := byTime.Put(timeKey(at, key), nil); err != nil {
			return err
		}
		for c := byTime.Cursor(); r.count+added > r.max; {
			k, _ := c.First()
			if k == nil {
				break
			}
			if err := byID.Delete(k[8:]); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			added--
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("provider: ended sessions store: %w", err)
	}
	r.count += added
	return nil
}

func (r *boltRevocations) Revoked(id string) (bool, error) {
	revoked := false
	err := r.db.View(func(tx *bolt.Tx) error {
		revoked = tx.Bucket(endedByID).Get(endedKey(id)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("provider: ended sessions store: %w", err)
	}
	return revoked, nil
}

func (r *boltRevocations) Forget(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	removed := 0
	err := r.db.Update(func(tx *bolt.Tx) error {
		byID, c := tx.Bucket(endedByID), tx.Bucket(endedByTime).Cursor()
		for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k[:8])) < now.Unix(); k, _ = c.First() {
			if err := byID.Delete(k[8:]); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err == nil {
		r.count -= removed
	}
}
