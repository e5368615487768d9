package pins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// memoTTL bounds how long a verdict is remembered without asking the
// store: how late another replica's approval or revocation may take
// effect here. Lists are fetched again when they change, not per call, so
// the memo mostly spares the store the definitions of an app's other
// sessions listing at once.
const memoTTL = 5 * time.Second

// maxMemo bounds the verdicts remembered; when full, all are forgotten.
const maxMemo = 65536

// MaxPinsPerApp bounds the pins one app's definitions make: an upstream
// that lists ever new names cannot fill the store. Past it, new
// definitions are refused as unclean.
const MaxPinsPerApp = 10000

// maxAttempts bounds the read-modify-write rounds of one Check or Approve
// against writers on other replicas.
const maxAttempts = 5

// trustedBy is the ApprovedBy of a pin made at first sight.
const trustedBy = "trust on first use"

// Pins checks definitions against their pins. It is safe for concurrent
// use; replicas sharing a Store agree on every pin.
type Pins struct {
	store Store
	now   func() time.Time

	mu   sync.Mutex
	memo map[memoKey]memoEntry
	// declared are the declared pins of each app's policy, as last given
	// to Check, so that Approve and Revoke can refuse to change them.
	declared map[string]map[Key]string
}

type memoKey struct {
	app  string
	kind Kind
	name string
}

type memoEntry struct {
	hash   string
	status Standing
	pinned string
	// stored says the verdict came from the store (and so may be reused
	// within memoTTL); the others are computed afresh every time and
	// remembered only to report each once.
	stored bool
	at     time.Time
}

// New checks definitions against the pins in store; now is the clock
// (time.Now when nil).
func New(store Store, now func() time.Time) *Pins {
	if now == nil {
		now = time.Now
	}
	return &Pins{store: store, now: now, memo: make(map[memoKey]memoEntry), declared: make(map[string]map[Key]string)}
}

// Check compares one listed definition of an app with its pin: it runs
// the definition checks (Hygiene), hashes the canonical form, and
// compares the hash with the declared pin or, without one, the stored
// pin. A new definition is pinned (TrustOnFirstUse) or held; a changed one
// is recorded beside its pin for an operator to review. Unclean
// definitions are never pinned. In mode off nothing is checked or stored.
//
// An error means the store did not answer; the caller decides what is
// served meanwhile.
func (p *Pins) Check(ctx context.Context, app string, policy Policy, kind Kind, raw []byte) (Verdict, error) {
	if policy.Mode == ModeOff {
		return Verdict{Status: StatusMatch, Serve: true}, nil
	}
	p.mu.Lock()
	p.declared[app] = policy.Declared
	p.mu.Unlock()
	problems := Hygiene(kind, raw, policy.Limits)
	name, canonical, hash, err := canonicalize(kind, raw)
	if err != nil {
		sum := sha256.Sum256(raw)
		hash = hex.EncodeToString(sum[:])
		problems = append(problems, Problem{Reason: err.Error()})
	}
	key := memoKey{app, kind, name}
	if len(problems) > 0 {
		return p.remember(key, policy, Verdict{Status: StatusUnclean, Hash: hash, Problems: problems}, false), nil
	}
	if declared, ok := policy.Declared[Key{kind, name}]; ok {
		v := Verdict{Status: StatusMatch, Hash: hash}
		if declared != hash {
			v.Status, v.Pinned = StatusChanged, declared
		}
		return p.remember(key, policy, v, false), nil
	}
	p.mu.Lock()
	m, ok := p.memo[key]
	p.mu.Unlock()
	if ok && m.stored && m.hash == hash && p.now().Sub(m.at) < memoTTL {
		return serveUnder(policy, Verdict{Status: m.status, Hash: hash, Pinned: m.pinned}), nil
	}
	v, err := p.compare(ctx, app, policy, kind, name, canonical, hash)
	if err != nil {
		return Verdict{}, fmt.Errorf("pins: %s %s %q: %w", app, kind, name, err)
	}
	return p.remember(key, policy, v, true), nil
}

// compare asks the store, and records what is new; v.FirstSeen says this
// call recorded it.
func (p *Pins) compare(ctx context.Context, app string, policy Policy, kind Kind, name string, canonical []byte, hash string) (Verdict, error) {
	for range maxAttempts {
		now := p.now()
		pin, found, err := p.store.Get(ctx, app, kind, name)
		if err != nil {
			return Verdict{}, err
		}
		if !found {
			n, err := p.store.Count(ctx, app)
			if err != nil {
				return Verdict{}, err
			}
			if n >= MaxPinsPerApp {
				return Verdict{Status: StatusUnclean, Hash: hash, Problems: []Problem{{Reason: fmt.Sprintf("the app already has %d pinned definitions", MaxPinsPerApp)}}}, nil
			}
			fresh := Pin{App: app, Kind: kind, Name: name, Hash: hash, Definition: canonical, Status: PinHeld, FirstSeen: now}
			if policy.TrustOnFirstUse {
				fresh.Status, fresh.ApprovedAt, fresh.ApprovedBy = PinApproved, now, trustedBy
			}
			var created bool
			if pin, created, err = p.store.Create(ctx, fresh); err != nil {
				return Verdict{}, err
			}
			if created {
				if pin.Status == PinApproved {
					return Verdict{Status: StatusNewTrusted, Hash: hash, FirstSeen: true}, nil
				}
				return Verdict{Status: StatusNewHeld, Hash: hash, FirstSeen: true}, nil
			}
			// Another replica stored it first: compared with that pin.
		}
		switch {
		case pin.Status == PinHeld && pin.Hash == hash:
			return Verdict{Status: StatusNewHeld, Hash: hash}, nil
		case pin.Status == PinHeld:
			// Still waiting, and changed meanwhile: what waits is the
			// newest, and an approval names its hash.
			pin.Hash, pin.Definition = hash, canonical
		case pin.Hash == hash:
			return Verdict{Status: StatusMatch, Hash: hash}, nil
		case pin.Pending != nil && pin.Pending.Hash == hash:
			return Verdict{Status: StatusChanged, Hash: hash, Pinned: pin.Hash}, nil
		default:
			pin.Pending = &Candidate{Hash: hash, Definition: canonical, SeenAt: now}
		}
		updated, err := p.store.Update(ctx, pin)
		if err != nil {
			return Verdict{}, err
		}
		if !updated {
			continue // written or revoked meanwhile: look again
		}
		if pin.Status == PinHeld {
			return Verdict{Status: StatusNewHeld, Hash: hash, FirstSeen: true}, nil
		}
		return Verdict{Status: StatusChanged, Hash: hash, Pinned: pin.Hash, FirstSeen: true}, nil
	}
	return Verdict{}, errConflict
}

// remember keeps v for its definition and sets whether it is served. A
// verdict not from the store is news when this process has not seen it.
func (p *Pins) remember(key memoKey, policy Policy, v Verdict, stored bool) Verdict {
	p.mu.Lock()
	m, known := p.memo[key]
	if !stored {
		v.FirstSeen = !known || m.hash != v.Hash || m.status != v.Status || m.pinned != v.Pinned
	}
	if len(p.memo) >= maxMemo && !known {
		clear(p.memo)
	}
	status := v.Status
	if status == StatusNewTrusted {
		status = StatusMatch // pinned now: from here on it matches
	}
	p.memo[key] = memoEntry{hash: v.Hash, status: status, pinned: v.Pinned, stored: stored, at: p.now()}
	p.mu.Unlock()
	return serveUnder(policy, v)
}

// serveUnder sets whether v is served under the policy's mode.
func serveUnder(policy Policy, v Verdict) Verdict {
	switch v.Status {
	case StatusMatch, StatusNewTrusted:
		v.Serve = true
	default:
		v.Serve = policy.Mode == ModeWarn
	}
	return v
}

// forget drops what is remembered of a definition, so that its next
// Check asks the store.
func (p *Pins) forget(app string, kind Kind, name string) {
	p.mu.Lock()
	delete(p.memo, memoKey{app, kind, name})
	p.mu.Unlock()
}

// isDeclared reports whether the app's policy, as last given to Check,
// declares the pin.
func (p *Pins) isDeclared(app string, kind Kind, name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.declared[app][Key{kind, name}]
	return ok
}

// Get returns one stored pin.
func (p *Pins) Get(ctx context.Context, app string, kind Kind, name string) (Pin, bool, error) {
	return p.store.Get(ctx, app, kind, name)
}

// List returns the stored pins of an app, every app's when app is "".
// Declared pins are the configuration's and not among them.
func (p *Pins) List(ctx context.Context, app string) ([]Pin, error) {
	return p.store.List(ctx, app)
}

// Approve approves what waits: a held definition, or the candidate of a
// changed one, which becomes the pin. hash, when given, must be the hash
// of what waits, so that an operator approves what they reviewed; when
// empty, what waits at the time of the call is approved, and a
// definition that changes again meanwhile is not. The approval takes
// effect at once in this process and within memoTTL on other replicas.
func (p *Pins) Approve(ctx context.Context, app string, kind Kind, name, hash, by string) (Pin, error) {
	if p.isDeclared(app, kind, name) {
		return Pin{}, ErrDeclared
	}
	for range maxAttempts {
		pin, found, err := p.store.Get(ctx, app, kind, name)
		if err != nil {
			return Pin{}, err
		}
		if !found {
			return Pin{}, ErrNotFound
		}
		switch {
		case pin.Status == PinHeld && (hash == "" || hash == pin.Hash):
			hash = pin.Hash
		case pin.Status == PinApproved && pin.Pending != nil && (hash == "" || hash == pin.Pending.Hash):
			hash = pin.Pending.Hash
			pin.Hash, pin.Definition = pin.Pending.Hash, pin.Pending.Definition
		default:
			return Pin{}, ErrNoCandidate
		}
		pin.Status, pin.Pending, pin.ApprovedAt, pin.ApprovedBy = PinApproved, nil, p.now(), by
		updated, err := p.store.Update(ctx, pin)
		if err != nil {
			return Pin{}, err
		}
		if updated {
			p.forget(app, kind, name)
			pin.Revision++
			return pin, nil
		}
	}
	return Pin{}, errConflict
}

// Revoke drops a pin: the definition is new at its next sight (pinned
// again under trust on first use, else held).
func (p *Pins) Revoke(ctx context.Context, app string, kind Kind, name string) error {
	if p.isDeclared(app, kind, name) {
		return ErrDeclared
	}
	found, err := p.store.Delete(ctx, app, kind, name)
	if err != nil {
		return err
	}
	p.forget(app, kind, name)
	if !found {
		return ErrNotFound
	}
	return nil
}
