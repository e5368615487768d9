package exchange

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-jose/go-jose/v4"
	bolt "go.etcd.io/bbolt"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testClock is a settable clock for tests that run on one goroutine.
type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time { return c.now }

func newTestKeySet(t testing.TB, store KeyStore, options KeySetOptions) *KeySet {
	t.Helper()
	if options.Logger == nil {
		options.Logger = slog.New(slog.DiscardHandler)
	}
	keys, err := NewKeySet(context.Background(), store, options)
	if err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	return keys
}

func keyIDs(set jose.JSONWebKeySet) []string {
	var ids []string
	for _, key := range set.Keys {
		ids = append(ids, key.KeyID)
	}
	return ids
}

func activeIDs(t *testing.T, keys *KeySet) [2]string {
	t.Helper()
	var ids [2]string
	for i, alg := range signingAlgorithms {
		signer, err := keys.Active(alg)
		if err != nil {
			t.Fatalf("Active(%s): %v", alg, err)
		}
		if signer.Algorithm() != alg {
			t.Fatalf("Active(%s) returned a %s key", alg, signer.Algorithm())
		}
		ids[i] = signer.KeyID()
	}
	return ids
}

func TestBoltPersistenceRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mcpbroker.db")

	db, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("database file mode = %s, want 0600", info.Mode().Perm())
	}
	clock := &testClock{now: epoch}
	first := newTestKeySet(t, NewBoltKeyStore(db), KeySetOptions{Now: clock.Now})
	if err := first.Rotate(ctx, epoch.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	minter := newTestMinter(t, first, jose.EdDSA, clock)
	token, _, err := minter.Mint(ctx, testGrant())
	if err != nil {
		t.Fatal(err)
	}
	wantActive, wantPublished := activeIDs(t, first), keyIDs(first.JWKS())
	if len(wantPublished) != 4 {
		t.Fatalf("after one rotation %d keys are published, want 4", len(wantPublished))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	second := newTestKeySet(t, NewBoltKeyStore(db), KeySetOptions{Now: clock.Now})
	if got := activeIDs(t, second); got != wantActive {
		t.Errorf("active keys after reopening = %v, want %v", got, wantActive)
	}
	if got := keyIDs(second.JWKS()); !slices.Equal(got, wantPublished) {
		t.Errorf("published keys after reopening = %v, want %v", got, wantPublished)
	}
	// The reloaded keys are the same keys: a token signed before the
	// restart verifies against the JWKS published after it.
	verifyToken(t, token, second.JWKS())

	// The private keys are PKCS #8 DER under their kids in signing_keys.
	err = db.View(func(tx *bolt.Tx) error {
		bucket := tx.Bucket([]byte("signing_keys"))
		if bucket == nil {
			t.Fatal("bucket signing_keys missing")
		}
		if n := bucket.Stats().KeyN; n != 4 {
			t.Errorf("signing_keys holds %d records, want 4", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenBolt(t *testing.T) {
	t.Run("refuses a file others may read", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "loose.db")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil { // past the umask
			t.Fatal(err)
		}
		if db, err := OpenBolt(path); !errors.Is(err, ErrInsecureDB) {
			if db != nil {
				db.Close()
			}
			t.Fatalf("OpenBolt on a 0644 file: %v, want ErrInsecureDB", err)
		}
	})
	t.Run("gives up on a locked file after the timeout", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "locked.db")
		db, err := OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		start := time.Now()
		second, err := OpenBolt(path)
		if second != nil {
			second.Close()
		}
		if !errors.Is(err, bolt.ErrTimeout) || !errors.Is(err, ErrStoreLocked) {
			t.Fatalf("second OpenBolt: %v, want bolt.ErrTimeout and ErrStoreLocked", err)
		}
		if waited := time.Since(start); waited > 10*time.Second {
			t.Errorf("second OpenBolt waited %s", waited)
		}
	})
}

func TestRotationRetainsOldKeysUntilTheirTokensExpire(t *testing.T) {
	ctx := context.Background()
	store := &MemoryKeyStore{}
	clock := &testClock{now: epoch}
	const maxTTL, skew = 10 * time.Minute, time.Minute
	keys := newTestKeySet(t, store, KeySetOptions{MaxTokenTTL: maxTTL, ClockSkew: skew, Now: clock.Now})
	old := activeIDs(t, keys)
	minter := newTestMinter(t, keys, jose.ES256, clock)
	grant := testGrant()
	grant.TTL = maxTTL

	rotatedAt := epoch.Add(time.Hour)
	clock.now = rotatedAt.Add(-time.Second)
	oldToken, _, err := minter.Mint(ctx, grant) // the last token of the old key
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Rotate(ctx, rotatedAt); err != nil {
		t.Fatal(err)
	}
	current := activeIDs(t, keys)
	if current[0] == old[0] || current[1] == old[1] {
		t.Fatalf("Rotate kept an active key: before %v, after %v", old, current)
	}
	want := []string{current[0], current[1], old[0], old[1]}
	if got := keyIDs(keys.JWKS()); !slices.Equal(got, want) {
		t.Fatalf("published after rotation = %v, want %v (new active keys first)", got, want)
	}
	clock.now = rotatedAt
	newToken, _, err := minter.Mint(ctx, grant)
	if err != nil {
		t.Fatal(err)
	}
	if kid := tokenKeyID(t, newToken); kid != current[1] {
		t.Errorf("token after rotation signed by %s, want the new ES256 key %s", kid, current[1])
	}

	dropAt := rotatedAt.Add(maxTTL + skew)
	if err := keys.Prune(ctx, dropAt.Add(-time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	if got := keyIDs(keys.JWKS()); !slices.Equal(got, want) {
		t.Fatalf("published just before the old tokens' expiry + skew = %v, want %v", got, want)
	}
	verifyToken(t, oldToken, keys.JWKS())

	if err := keys.Prune(ctx, dropAt); err != nil {
		t.Fatal(err)
	}
	if got := keyIDs(keys.JWKS()); !slices.Equal(got, want[:2]) {
		t.Fatalf("published after the old tokens' expiry + skew = %v, want %v", got, want[:2])
	}
	stored, _ := store.Load(ctx)
	if len(stored) != 2 {
		t.Fatalf("store holds %d keys after the drop, want 2", len(stored))
	}
	// A key set loaded from the store agrees.
	reloaded := newTestKeySet(t, store, KeySetOptions{MaxTokenTTL: maxTTL, ClockSkew: skew, Now: clock.Now})
	if got := activeIDs(t, reloaded); got != current {
		t.Errorf("reloaded active keys = %v, want %v", got, current)
	}
}

func TestLoadDropsExpiredAndSettlesDuplicates(t *testing.T) {
	ctx := context.Background()
	store := &MemoryKeyStore{}
	clock := &testClock{now: epoch}
	keys := newTestKeySet(t, store, KeySetOptions{MaxTokenTTL: time.Minute, ClockSkew: time.Second, Now: clock.Now})
	first := activeIDs(t, keys)
	stored, _ := store.Load(ctx)

	// Another key generated later and stored as active beside the first
	// ones: the newer one wins, the older is retired as of loading.
	newer, err := generateKey(jose.EdDSA, epoch.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, append(stored, newer.stored)); err != nil {
		t.Fatal(err)
	}
	clock.now = epoch.Add(2 * time.Minute)
	keys = newTestKeySet(t, store, KeySetOptions{MaxTokenTTL: time.Minute, ClockSkew: time.Second, Now: clock.Now})
	if got, want := activeIDs(t, keys), [2]string{newer.stored.ID, first[1]}; got != want {
		t.Fatalf("active = %v, want %v", got, want)
	}
	if got, want := keyIDs(keys.JWKS()), []string{newer.stored.ID, first[1], first[0]}; !slices.Equal(got, want) {
		t.Fatalf("published = %v, want %v", got, want)
	}

	// Loading after the retired key's tokens have expired drops it.
	clock.now = clock.now.Add(time.Minute + time.Second)
	keys = newTestKeySet(t, store, KeySetOptions{MaxTokenTTL: time.Minute, ClockSkew: time.Second, Now: clock.Now})
	if got, want := keyIDs(keys.JWKS()), []string{newer.stored.ID, first[1]}; !slices.Equal(got, want) {
		t.Fatalf("published = %v, want %v", got, want)
	}
	if stored, _ := store.Load(ctx); len(stored) != 2 {
		t.Errorf("store holds %d keys, want 2", len(stored))
	}
}

func TestJWKSHoldsOnlyPublicKeys(t *testing.T) {
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{})
	if err := keys.Rotate(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	set := keys.JWKS()
	if len(set.Keys) != 4 {
		t.Fatalf("%d keys published, want 4", len(set.Keys))
	}
	algorithms := map[string]int{}
	for _, key := range set.Keys {
		if !key.IsPublic() || !key.Valid() {
			t.Errorf("key %s: public %v, valid %v", key.KeyID, key.IsPublic(), key.Valid())
		}
		if key.Use != "sig" {
			t.Errorf("key %s: use %q, want sig", key.KeyID, key.Use)
		}
		thumbprint, err := key.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if want := base64url.EncodeToString(thumbprint); key.KeyID != want {
			t.Errorf("kid %q is not the RFC 7638 thumbprint %q", key.KeyID, want)
		}
		algorithms[key.Algorithm]++
	}
	if algorithms["EdDSA"] != 2 || algorithms["ES256"] != 2 || len(algorithms) != 2 {
		t.Errorf("algorithms published: %v, want two EdDSA and two ES256", algorithms)
	}

	document, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var decoded struct{ Keys []map[string]any }
	if err := json.Unmarshal(document, &decoded); err != nil {
		t.Fatal(err)
	}
	for _, key := range decoded.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, present := key[private]; present {
				t.Errorf("published JWK %v has private member %q", key["kid"], private)
			}
		}
		if key["kty"] == "RSA" {
			t.Errorf("an RSA key is published: %v", key)
		}
	}

	// JWKS hands out a copy: changing it changes nothing published.
	set.Keys[0].KeyID = "changed"
	if keys.JWKS().Keys[0].KeyID == "changed" {
		t.Error("JWKS returned the published slice itself")
	}
}

func TestLoadRefusesTamperedKeys(t *testing.T) {
	ctx := context.Background()
	good := &MemoryKeyStore{}
	newTestKeySet(t, good, KeySetOptions{})
	stored, _ := good.Load(ctx)

	tests := []struct {
		name   string
		tamper func(keys []StoredKey)
		want   error
	}{
		{"kid is not the thumbprint", func(keys []StoredKey) { keys[0].ID = keys[1].ID }, ErrKeyMismatch},
		{"alg does not fit the key", func(keys []StoredKey) { keys[0].Algorithm = "ES256" }, ErrKeyMismatch},
		{"RSA alg", func(keys []StoredKey) { keys[1].Algorithm = "RS256" }, ErrKeyMismatch},
		{"not PKCS #8", func(keys []StoredKey) { keys[0].PKCS8 = []byte("junk") }, nil},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			keys := cloneKeys(stored)
			test.tamper(keys)
			store := &MemoryKeyStore{}
			_ = store.Save(ctx, keys)
			_, err := NewKeySet(ctx, store, KeySetOptions{})
			if err == nil || (test.want != nil && !errors.Is(err, test.want)) {
				t.Fatalf("NewKeySet: %v, want %v", err, test.want)
			}
		})
	}
}

func TestKeySetOptionsAreChecked(t *testing.T) {
	for _, options := range []KeySetOptions{
		{MaxTokenTTL: MaxTTL + time.Second},
		{MaxTokenTTL: -time.Second},
		{ClockSkew: -time.Second},
	} {
		if _, err := NewKeySet(context.Background(), &MemoryKeyStore{}, options); err == nil {
			t.Errorf("NewKeySet accepted %+v", options)
		}
	}
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{})
	if _, err := keys.Active(jose.RS256); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("Active(RS256): %v, want ErrAlgorithm", err)
	}
}

// failingStore fails every Save while failing is set.
type failingStore struct {
	MemoryKeyStore
	failing atomic.Bool
}

var errDiskFull = errors.New("disk full")

func (s *failingStore) Save(ctx context.Context, keys []StoredKey) error {
	if s.failing.Load() {
		return errDiskFull
	}
	return s.MemoryKeyStore.Save(ctx, keys)
}

func TestFailedSaveChangesNothing(t *testing.T) {
	store := &failingStore{}
	keys := newTestKeySet(t, store, KeySetOptions{})
	before, published := activeIDs(t, keys), keyIDs(keys.JWKS())
	store.failing.Store(true)
	if err := keys.Rotate(context.Background(), time.Now()); !errors.Is(err, errDiskFull) {
		t.Fatalf("Rotate: %v, want the store's error", err)
	}
	if got := activeIDs(t, keys); got != before {
		t.Errorf("active keys changed to %v though saving failed", got)
	}
	if got := keyIDs(keys.JWKS()); !slices.Equal(got, published) {
		t.Errorf("published keys changed to %v though saving failed", got)
	}
	if _, err := NewKeySet(context.Background(), store, KeySetOptions{}); err != nil {
		t.Errorf("NewKeySet on a store that holds keys but cannot save: %v", err)
	}
	empty := &failingStore{}
	empty.failing.Store(true)
	if _, err := NewKeySet(context.Background(), empty, KeySetOptions{}); !errors.Is(err, errDiskFull) {
		t.Errorf("NewKeySet on a store that cannot save new keys: %v", err)
	}
}

func TestRotateEvery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		const interval, maxTTL, skew = 24 * time.Hour, 10 * time.Minute, time.Minute
		store := &failingStore{}
		keys := newTestKeySet(t, store, KeySetOptions{MaxTokenTTL: maxTTL, ClockSkew: skew, Logger: slog.New(slog.DiscardHandler)})
		first := activeIDs(t, keys)
		done := make(chan error)
		go func() { done <- keys.RotateEvery(ctx, interval) }()

		time.Sleep(interval - time.Second)
		synctest.Wait()
		if got := activeIDs(t, keys); got != first {
			t.Fatalf("rotated before the interval: %v", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		second := activeIDs(t, keys)
		if second[0] == first[0] || second[1] == first[1] {
			t.Fatalf("not rotated after the interval: %v", second)
		}
		if n := len(keys.JWKS().Keys); n != 4 {
			t.Fatalf("%d keys published right after rotation, want 4", n)
		}

		// The old keys go as soon as their tokens have expired, not at
		// the next rotation.
		time.Sleep(maxTTL + skew)
		synctest.Wait()
		if got := keyIDs(keys.JWKS()); !slices.Equal(got, second[:]) {
			t.Fatalf("published after retention = %v, want only %v", got, second)
		}

		// A rotation that cannot be saved is retried.
		store.failing.Store(true)
		time.Sleep(interval - maxTTL - skew)
		synctest.Wait()
		if got := activeIDs(t, keys); got != second {
			t.Fatalf("active keys changed though saving failed: %v", got)
		}
		store.failing.Store(false)
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := activeIDs(t, keys); got == second {
			t.Fatal("rotation not retried after the store recovered")
		}

		cancel()
		if err := <-done; err != nil {
			t.Errorf("RotateEvery returned %v", err)
		}
		if err := keys.RotateEvery(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "interval") {
			t.Errorf("RotateEvery(0): %v", err)
		}
	})
}
