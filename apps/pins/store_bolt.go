package pins

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// pinsBucket holds the pins: key app, kind and name joined by NUL (which
// none of them holds: names come from JSON strings Hygiene refuses
// controls in, apps and kinds from the configuration); value the Pin in
// JSON.
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
	if err != nil {
		return Pin{}, false, fmt.Errorf("pins: store: %w", err)
	}
	return p, found, nil
}

func (s boltStore) Create(_ context.Context, p Pin) (in Pin, created bool, err error) {
	p.Revision = 1
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
	if err != nil {
		return Pin{}, false, fmt.Errorf("pins: store: %w", err)
	}
	return in, created, nil
}

func (s boltStore) Update(_ context.Context, p Pin) (updated bool, err error) {
	read := p.Revision
	p.Revision++
	value, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(pinsBucket)
		key := pinKey(p.App, p.Kind, p.Name)
		v := b.Get(key)
		if v == nil {
			return nil
		}
		var stored struct {
			Revision int64 `json:"revision"`
		}
		if err := json.Unmarshal(v, &stored); err != nil {
			return err
		}
		if stored.Revision != read {
			return nil
		}
		updated = true
		return b.Put(key, value)
	})
	if err != nil {
		return false, fmt.Errorf("pins: store: %w", err)
	}
	return updated, nil
}

func (s boltStore) Put(_ context.Context, p Pin) error {
	value, err := json.Marshal(p)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(pinsBucket).Put(pinKey(p.App, p.Kind, p.Name), value)
	})
	if err != nil {
		return fmt.Errorf("pins: store: %w", err)
	}
	return nil
}

func (s boltStore) Delete(_ context.Context, app string, kind Kind, name string) (found bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(pinsBucket)
		key := pinKey(app, kind, name)
		found = b.Get(key) != nil
		return b.Delete(key)
	})
	if err != nil {
		return false, fmt.Errorf("pins: store: %w", err)
	}
	return found, nil
}

// each calls fn for every pin of app (every pin when app is ""), in key
// order.
func (s boltStore) each(app string, fn func(k, v []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(pinsBucket).Cursor()
		prefix := []byte(app + "\x00")
		k, v := c.First()
		if app != "" {
			k, v = c.Seek(prefix)
		}
		for ; k != nil && (app == "" || bytes.HasPrefix(k, prefix)); k, v = c.Next() {
			if err := fn(k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s boltStore) List(_ context.Context, app string) ([]Pin, error) {
	var pins []Pin
	err := s.each(app, func(k, v []byte) error {
		var p Pin
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("%q: %w", bytes.ReplaceAll(k, []byte{0}, []byte{' '}), err)
		}
		pins = append(pins, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pins: store: %w", err)
	}
	return pins, nil
}

func (s boltStore) Count(_ context.Context, app string) (int, error) {
	n := 0
	err := s.each(app, func(_, _ []byte) error { n++; return nil })
	if err != nil {
		return 0, fmt.Errorf("pins: store: %w", err)
	}
	return n, nil
}
