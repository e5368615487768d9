package pins

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// pinsBucket holds the pins: key app, kind, name joined by NUL; value the
// Pin in JSON.
var pinsBucket = []byte("pins")

type boltStore struct{ db *bolt.DB }

var _ Store = boltStore{}

// NewBoltStore keeps pins in db, which the caller opens and closes.
func NewBoltStore(db *bolt.DB) (Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(pinsBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pins: store: %w", err)
	}
	return boltStore{db}, nil
}

func pinKey(app string, kind Kind, name string) []byte {
	return []byte(app + "\x00" + string(kind) + "\x00" + name)
}

func (s boltStore) Get(_ context.Context, app string, kind Kind, name string) (p Pin, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(pinsBucket).Get(pinKey(app, kind, name))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &p)
	})
	return p, found, err
}

func (s boltStore) Create(_ context.Context, p Pin) (in Pin, created bool, err error) {
	value, err := json.Marshal(p)
	if err != nil {
		return Pin{}, false, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(pinsBucket)
		key := pinKey(p.App, p.Kind, p.Name)
		if v := b.Get(key); v != nil {
			return json.Unmarshal(v, &in)
		}
		in, created = p, true
		return b.Put(key, value)
	})
	return in, created, err
}

func (s boltStore) Put(_ context.Context, p Pin) error {
	value, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(pinsBucket).Put(pinKey(p.App, p.Kind, p.Name), value)
	})
}

func (s boltStore) Delete(_ context.Context, app string, kind Kind, name string) (found bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(pinsBucket)
		key := pinKey(app, kind, name)
		found = b.Get(key) != nil
		return b.Delete(key)
	})
	return found, err
}

func (s boltStore) List(_ context.Context, app string) (pins []Pin, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(pinsBucket).Cursor()
		prefix := []byte(app + "\x00")
		k, v := c.First()
		if app != "" {
			k, v = c.Seek(prefix)
		}
		for ; k != nil && (app == "" || bytes.HasPrefix(k, prefix)); k, v = c.Next() {
			var p Pin
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("pins: %q: %w", k, err)
			}
			pins = append(pins, p)
		}
		return nil
	})
	return pins, err
}
