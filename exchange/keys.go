package exchange

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// signingAlgorithms are the algorithms the broker mints with, one active key
// each. RSA is deliberately absent: its keys and signatures are large and
// slow to make, and nothing upstream needs it from us.
var signingAlgorithms = [...]jose.SignatureAlgorithm{jose.EdDSA, jose.ES256}

const (
	// MaxTTL is the longest lifetime a minted token may have.
	MaxTTL = time.Hour
	// DefaultClockSkew is how far verifiers' clocks are assumed to run
	// behind ours when deciding that no token of a retired key can still
	// be accepted.
	DefaultClockSkew = 5 * time.Minute
)

// KeySetOptions configure a [KeySet]; zero fields mean the defaults.
type KeySetOptions struct {
	// MaxTokenTTL is the longest lifetime of a token signed with these
	// keys; a retired key stays published this long plus ClockSkew.
	// Default and upper bound: MaxTTL.
	MaxTokenTTL time.Duration
	// ClockSkew: default DefaultClockSkew.
	ClockSkew time.Duration
	// Now: default time.Now.
	Now func() time.Time
	// Logger: default slog.Default().
	Logger *slog.Logger
}

// KeySet holds the broker's signing keys: one active key per algorithm,
// and the retired keys whose tokens may still be in use. Reading it
// (Active, JWKS) takes no lock; changes (Rotate, Prune) are serialized and
// persisted before they take effect.
type KeySet struct {
	store       KeyStore
	maxTokenTTL time.Duration
	retain      time.Duration // how long a retired key stays published
	now         func() time.Time
	logger      *slog.Logger

	mu   sync.Mutex // serializes changes
	ring atomic.Pointer[keyRing]
	// shared, when the store is one other brokers use too; reloaded is
	// when its keys were last read again.
	shared   SharedKeyStore
	reloaded time.Time
}

// signingKey is one key with everything derived from it. It is immutable:
// retiring a key makes a changed copy.
type signingKey struct {
	signer *Signer
	public jose.JSONWebKey
	stored StoredKey
}

func (k *signingKey) retired() bool { return !k.stored.Retired.IsZero() }

// keyRing is an immutable snapshot of the key set.
type keyRing struct {
	keys    []*signingKey // the active keys in signingAlgorithms order, then retired ones, newest first
	eddsa   *Signer
	es256   *Signer
	created time.Time // creation of the oldest active key: rotation counts from here
	jwks    jose.JSONWebKeySet
	// verify holds the published keys for oauth.VerifyJWT; nil (every
	// token refused) only if a key could not be used, which NewKeySet's
	// own checks rule out.
	verify *oauth.KeySet
}

// NewKeySet loads the keys from store, drops retired keys whose tokens have
// all expired, generates an active key for each algorithm that has none (on
// first start, all of them), and saves the result when anything changed.
func NewKeySet(ctx context.Context, store KeyStore, opts KeySetOptions) (*KeySet, error) {
	if opts.MaxTokenTTL == 0 {
		opts.MaxTokenTTL = MaxTTL
	}
	if opts.MaxTokenTTL < 0 || opts.MaxTokenTTL > MaxTTL {
		return nil, fmt.Errorf("exchange: maximum token lifetime %s is not in (0, %s]", opts.MaxTokenTTL, MaxTTL)
	}
	if opts.ClockSkew == 0 {
		opts.ClockSkew = DefaultClockSkew
	}
	if opts.ClockSkew < 0 {
		return nil, fmt.Errorf("exchange: clock skew %s is negative", opts.ClockSkew)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &KeySet{
		store:       store,
		maxTokenTTL: opts.MaxTokenTTL,
		retain:      opts.MaxTokenTTL + opts.ClockSkew,
		now:         opts.Now,
		logger:      opts.Logger,
	}

	if shared, ok := store.(SharedKeyStore); ok {
		s.shared = shared
		if _, err := s.updateShared(ctx, s.now(), time.Time{}); err != nil {
			return nil, err
		}
		return s, nil
	}
	stored, err := store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("exchange: load signing keys: %w", err)
	}
	keys, err := decodeKeys(stored)
	if err != nil {
		return nil, err
	}
	keys, changed, err := s.settle(keys, s.now())
	if err != nil {
		return nil, err
	}
	if changed {
		if err := s.save(ctx, keys); err != nil {
			return nil, err
		}
	}
	s.ring.Store(newKeyRing(keys))
	return s, nil
}

func decodeKeys(stored []StoredKey) ([]*signingKey, error) {
	keys := make([]*signingKey, 0, len(stored))
	for _, record := range stored {
		key, err := decodeKey(record)
		if err != nil {
			return nil, fmt.Errorf("exchange: load signing key %q: %w", record.ID, err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// updateShared settles the keys a shared store holds, first retiring the
// active ones made at or before rotateBefore (none when it is zero), and
// takes up the result, which another broker may have made.
func (s *KeySet) updateShared(ctx context.Context, now, rotateBefore time.Time) (changed bool, _ error) {
	var final []*signingKey
	err := s.shared.Update(ctx, func(stored []StoredKey) ([]StoredKey, bool, error) {
		keys, err := decodeKeys(stored)
		if err != nil {
			return nil, false, err
		}
		rotated := false
		if !rotateBefore.IsZero() {
			for i, key := range keys {
				if !key.retired() && !key.stored.Created.After(rotateBefore) {
					keys[i], rotated = key.retire(now), true
				}
			}
		}
		keys, changed, err = s.settle(keys, now)
		if err != nil {
			return nil, false, err
		}
		changed = changed || rotated
		final = keys
		return storedKeys(keys), changed, nil
	})
	if err != nil {
		return false, fmt.Errorf("exchange: signing keys: %w", err)
	}
	s.ring.Store(newKeyRing(final))
	return changed, nil
}

func storedKeys(keys []*signingKey) []StoredKey {
	records := make([]StoredKey, len(keys))
	for i, key := range keys {
		records[i] = key.stored
	}
	return records
}

// Reload takes up the keys the store holds now, which other brokers
// sharing it may have changed. Only a SharedKeyStore is read again; with
// another store the key set is the only writer and Reload does nothing.
func (s *KeySet) Reload(ctx context.Context) error {
	if s.shared == nil {
		return nil
	}
	_, err := s.reload(ctx)
	return err
}

// reload reads a shared store's keys and reports whether they differ from
// those in use. It holds the lock while it reads, so that what it takes
// up is never older than a change this key set made meanwhile.
func (s *KeySet) reload(ctx context.Context) (changed bool, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloaded = s.now()
	stored, err := s.shared.Load(ctx)
	if err != nil {
		return false, fmt.Errorf("exchange: reload signing keys: %w", err)
	}
	keys, err := decodeKeys(stored)
	if err != nil {
		return false, err
	}
	if len(keys) == 0 {
		return false, nil // nothing stored: keep what is in use
	}
	ring := newKeyRing(keys)
	if ring.eddsa == nil || ring.es256 == nil {
		return false, errors.New("exchange: reload signing keys: the store lacks an active key")
	}
	changed = !slices.EqualFunc(ring.keys, s.ring.Load().keys, func(a, b *signingKey) bool {
		return a.stored.ID == b.stored.ID && a.stored.Retired.Equal(b.stored.Retired)
	})
	s.ring.Store(ring)
	return changed, nil
}

// ReloadIfStale reloads a shared store's keys unless they were read
// within reloadGap, so that what is published (JWKS) includes a key
// another broker made a moment ago. A failure is logged and the keys in
// use are kept.
func (s *KeySet) ReloadIfStale(ctx context.Context) {
	s.reloadIfStale(ctx)
}

// reloadIfStale is ReloadIfStale reporting whether the keys changed.
func (s *KeySet) reloadIfStale(ctx context.Context) bool {
	if s.shared == nil {
		return false
	}
	s.mu.Lock()
	due := s.now().Sub(s.reloaded) >= reloadGap
	if due {
		// Claimed before the read: requests arriving meanwhile do not
		// pile up behind it.
		s.reloaded = s.now()
	}
	s.mu.Unlock()
	if !due {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	changed, err := s.reload(ctx)
	if err != nil {
		s.logger.Warn("exchange: signing keys could not be reloaded", slog.Any("error", err))
		return false
	}
	return changed
}

const (
	// reloadGap spaces the reloads that unknown kids and JWKS requests
	// cause, so that neither can turn into a stream of reads.
	reloadGap = 2 * time.Second
	// reloadTimeout bounds such a reload, which a request waits for.
	reloadTimeout = 2 * time.Second
)

// ReloadEvery reloads a shared store's keys every interval until ctx is
// done, so that JWKS and verification follow other brokers' rotations.
func (s *KeySet) ReloadEvery(ctx context.Context, interval time.Duration) {
	if s.shared == nil || interval <= 0 {
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if err := s.Reload(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("exchange: signing keys could not be reloaded", slog.Any("error", err))
			}
		}
	}
}

// MaxTokenTTL is the longest lifetime a token signed with these keys may
// have: past it, a retired key may be dropped while its tokens still live.
func (s *KeySet) MaxTokenTTL() time.Duration { return s.maxTokenTTL }

// Active returns the current signer for alg, EdDSA or ES256.
func (s *KeySet) Active(alg jose.SignatureAlgorithm) (*Signer, error) {
	ring := s.ring.Load()
	switch alg {
	case jose.EdDSA:
		return ring.eddsa, nil
	case jose.ES256:
		return ring.es256, nil
	}
	return nil, fmt.Errorf("exchange: %w, not %q", ErrAlgorithm, alg)
}

// JWKS returns the public keys of every published key, active and
// retired, with kid, use "sig" and alg set.
func (s *KeySet) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: slices.Clone(s.ring.Load().jwks.Keys)}
}

// Rotate retires the active keys as of now and makes new active ones; it
// also drops retired keys whose tokens have all expired.
func (s *KeySet) Rotate(ctx context.Context, now time.Time) error {
	return s.update(ctx, now, now)
}

// Prune drops retired keys whose tokens have all expired by now.
func (s *KeySet) Prune(ctx context.Context, now time.Time) error {
	return s.update(ctx, now, time.Time{})
}

// update retires the active keys made at or before rotateBefore (none
// when it is zero), drops expired retired keys, and saves the result. On
// a shared store the check and the change are one atomic step, so that
// brokers sharing it rotate once between them.
func (s *KeySet) update(ctx context.Context, now, rotateBefore time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared != nil {
		changed, err := s.updateShared(ctx, now, rotateBefore)
		if changed {
			ring := s.ring.Load()
			s.logger.Info("exchange: signing keys changed",
				slog.String("eddsa_kid", ring.eddsa.KeyID()), slog.String("es256_kid", ring.es256.KeyID()),
				slog.Int("published", len(ring.keys)))
		}
		return err
	}
	keys := s.ring.Load().keys
	if !rotateBefore.IsZero() {
		keys = slices.Clone(keys)
		for i, key := range keys {
			if !key.retired() && !key.stored.Created.After(rotateBefore) {
				keys[i] = key.retire(now)
			}
		}
	}
	keys, changed, err := s.settle(keys, now)
	if err != nil || !changed {
		return err
	}
	if err := s.save(ctx, keys); err != nil {
		return err
	}
	ring := newKeyRing(keys)
	s.ring.Store(ring)
	s.logger.Info("exchange: signing keys changed",
		slog.String("eddsa_kid", ring.eddsa.KeyID()), slog.String("es256_kid", ring.es256.KeyID()),
		slog.Int("published", len(keys)))
	return nil
}

// RotateEvery rotates the keys when the active ones are interval old and
// drops retired keys as soon as their tokens have expired, until ctx is
// done. The schedule counts from the keys' stored creation time, so
// restarts neither postpone nor hasten rotation. A failed rotation is
// logged and retried after a minute (or interval, if shorter); the keys in
// use stay valid meanwhile.
func (s *KeySet) RotateEvery(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("exchange: rotation interval %s is not positive", interval)
	}
	retry := min(interval, time.Minute)
	timer := time.NewTimer(0)
	defer timer.Stop()
	wait := s.untilNextChange(s.now(), interval)
	for {
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		now := s.now()
		var err error
		if ring := s.ring.Load(); !now.Before(ring.created.Add(interval)) {
			// Only keys due: another broker sharing the store may have
			// rotated them already.
			err = s.update(ctx, now, now.Add(-interval))
		} else {
			err = s.Prune(ctx, now)
		}
		if err != nil {
			s.logger.Error("exchange: key rotation failed", slog.Any("error", err), slog.Duration("retry_in", retry))
			wait = retry
			continue
		}
		wait = s.untilNextChange(s.now(), interval)
	}
}

// untilNextChange is the time until the next rotation or the next drop of a
// retired key, whichever comes first.
func (s *KeySet) untilNextChange(now time.Time, interval time.Duration) time.Duration {
	ring := s.ring.Load()
	next := ring.created.Add(interval)
	for _, key := range ring.keys {
		if drop := key.stored.Retired.Add(s.retain); key.retired() && drop.Before(next) {
			next = drop
		}
	}
	return next.Sub(now)
}

// settle brings keys into shape at now: retired keys past their retention
// are dropped, each algorithm gets exactly one active key (the newest; a
// new one if it has none), and the list is put in ring order. changed
// reports whether the result differs from what the store holds.
func (s *KeySet) settle(keys []*signingKey, now time.Time) (_ []*signingKey, changed bool, _ error) {
	kept := make([]*signingKey, 0, len(keys)+len(signingAlgorithms))
	for _, key := range keys {
		if key.retired() && !now.Before(key.stored.Retired.Add(s.retain)) {
			changed = true
			continue
		}
		kept = append(kept, key)
	}
	for _, alg := range signingAlgorithms {
		active := -1
		for i, key := range kept {
			if key.retired() || key.signer.algorithm != alg {
				continue
			}
			switch {
			case active < 0:
				active = i
			case key.stored.Created.After(kept[active].stored.Created):
				kept[active] = kept[active].retire(now)
				active = i
				changed = true
			default:
				kept[i] = key.retire(now)
				changed = true
			}
		}
		if active < 0 {
			key, err := generateKey(alg, now)
			if err != nil {
				return nil, false, err
			}
			kept = append(kept, key)
			changed = true
		}
	}
	slices.SortFunc(kept, func(a, b *signingKey) int {
		if a.retired() != b.retired() {
			if a.retired() {
				return 1
			}
			return -1
		}
		return cmp.Or(
			b.stored.Retired.Compare(a.stored.Retired),
			cmp.Compare(algorithmOrder(a.signer.algorithm), algorithmOrder(b.signer.algorithm)),
			b.stored.Created.Compare(a.stored.Created),
			strings.Compare(a.stored.ID, b.stored.ID),
		)
	})
	return kept, changed, nil
}

func algorithmOrder(alg jose.SignatureAlgorithm) int {
	return slices.Index(signingAlgorithms[:], alg)
}

func (s *KeySet) save(ctx context.Context, keys []*signingKey) error {
	if err := s.store.Save(ctx, storedKeys(keys)); err != nil {
		return fmt.Errorf("exchange: save signing keys: %w", err)
	}
	return nil
}

func (k *signingKey) retire(now time.Time) *signingKey {
	retired := *k
	retired.stored.Retired = now.UTC()
	return &retired
}

func newKeyRing(keys []*signingKey) *keyRing {
	ring := &keyRing{keys: keys, jwks: jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, len(keys))}}
	for i, key := range keys {
		ring.jwks.Keys[i] = key.public
		if key.retired() {
			continue
		}
		switch key.signer.algorithm {
		case jose.EdDSA:
			ring.eddsa = key.signer
		case jose.ES256:
			ring.es256 = key.signer
		}
		if ring.created.IsZero() || key.stored.Created.Before(ring.created) {
			ring.created = key.stored.Created
		}
	}
	ring.verify, _ = oauth.NewKeySet(ring.jwks.Keys)
	return ring
}

func generateKey(alg jose.SignatureAlgorithm, now time.Time) (*signingKey, error) {
	var private crypto.Signer
	var err error
	switch alg {
	case jose.EdDSA:
		_, private, err = ed25519.GenerateKey(rand.Reader)
	case jose.ES256:
		private, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		err = ErrAlgorithm
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: generate %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("exchange: encode %s key: %w", alg, err)
	}
	return newSigningKey(private, StoredKey{Algorithm: string(alg), PKCS8: der, Created: now.UTC()})
}

// decodeKey rebuilds a stored key and checks that its kid is still the
// thumbprint of its public key.
func decodeKey(record StoredKey) (*signingKey, error) {
	parsed, err := x509.ParsePKCS8PrivateKey(record.PKCS8)
	if err != nil {
		return nil, err
	}
	private, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrAlgorithm, parsed)
	}
	key, err := newSigningKey(private, record)
	if err != nil {
		return nil, err
	}
	if key.stored.ID != record.ID {
		return nil, ErrKeyMismatch
	}
	return key, nil
}

// newSigningKey derives the kid (RFC 7638 thumbprint), the public JWK and
// the signer from a private key, and sets record.ID to the kid.
func newSigningKey(private crypto.Signer, record StoredKey) (*signingKey, error) {
	alg := jose.SignatureAlgorithm(record.Algorithm)
	public := jose.JSONWebKey{Key: private.Public(), Algorithm: record.Algorithm, Use: "sig"}
	thumbprint, err := public.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	public.KeyID = base64url.EncodeToString(thumbprint)
	signer, err := newSigner(public.KeyID, alg, private)
	if err != nil {
		return nil, err
	}
	record.ID = public.KeyID
	return &signingKey{signer: signer, public: public, stored: record}, nil
}
