package pins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Kind is what a definition defines.
type Kind string

// The kinds of definitions.
const (
	KindTool             Kind = "tool"
	KindPrompt           Kind = "prompt"
	KindResourceTemplate Kind = "resourceTemplate"
)

// Mode is what tool pinning does with a definition that is not as pinned.
type Mode string

// The modes.
const (
	ModeEnforce Mode = "enforce" // not served
	ModeWarn    Mode = "warn"    // served, reported
	ModeOff     Mode = "off"     // nothing checked
)

// Key names a definition within an app.
type Key struct {
	Kind Kind
	Name string
}

// Policy is one app's tool pinning.
type Policy struct {
	Mode Mode
	// TrustOnFirstUse pins a new definition at first sight; otherwise it
	// is held until approved.
	TrustOnFirstUse bool
	Limits          Limits
	// Declared are pins of the configuration, hash by key: they win over
	// the store, and approvals do not change them.
	Declared map[Key]string
}

// PinStatus is a stored pin's state.
type PinStatus string

// The states of a stored pin.
const (
	PinApproved PinStatus = "approved"
	PinHeld     PinStatus = "held" // a new definition waiting for approval
)

// Pin is one stored pin.
type Pin struct {
	App        string          `json:"app"`
	Kind       Kind            `json:"kind"`
	Name       string          `json:"name"`
	Hash       string          `json:"sha256"`
	Definition json.RawMessage `json:"definition"` // canonical
	Status     PinStatus       `json:"status"`
	FirstSeen  time.Time       `json:"firstSeen"`
	ApprovedAt time.Time       `json:"approvedAt,omitzero"`
	ApprovedBy string          `json:"approvedBy,omitempty"`
	// Pending is the latest definition seen that differs from an approved
	// pin, waiting for an operator.
	Pending *Candidate `json:"pending,omitempty"`
}

// Candidate is a definition seen that differs from its pin.
type Candidate struct {
	Hash       string          `json:"sha256"`
	Definition json.RawMessage `json:"definition"`
	SeenAt     time.Time       `json:"seenAt"`
}

// Standing is how a definition compares with its pin.
type Standing string

// The standings of a definition.
const (
	StatusMatch      Standing = "match"       // as pinned (or declared)
	StatusNewTrusted Standing = "new-trusted" // new, pinned now (trust on first use)
	StatusNewHeld    Standing = "new-held"    // new, waiting for approval
	StatusChanged    Standing = "changed"     // differs from its pin
	StatusUnclean    Standing = "unclean"     // refused by the definition checks
)

// Verdict is what Check found.
type Verdict struct {
	Status Standing
	// Hash is the definition's; Pinned the pin it differs from.
	Hash, Pinned string
	Problems     []Problem
	// Serve says whether the definition may be listed and called under
	// the policy's mode.
	Serve bool
	// FirstSeen is set when this process sees this standing of this
	// definition for the first time: the caller reports it (one warning
	// per change).
	FirstSeen bool
}

// Store keeps pins. Implementations: NewBoltStore, NewRedisStore.
type Store interface {
	Get(ctx context.Context, app string, kind Kind, name string) (Pin, bool, error)
	// Create stores p unless a pin of its key exists; it returns the pin
	// in force and whether it was created.
	Create(ctx context.Context, p Pin) (Pin, bool, error)
	Put(ctx context.Context, p Pin) error
	Delete(ctx context.Context, app string, kind Kind, name string) (bool, error)
	// List returns an app's pins; every pin when app is "".
	List(ctx context.Context, app string) ([]Pin, error)
}

// Errors of the operators' actions.
var (
	ErrNotFound    = errors.New("pins: no such pin")
	ErrNoCandidate = errors.New("pins: no definition waits for approval with that hash")
	ErrDeclared    = errors.New("pins: the pin is declared in the configuration (toolPinning.pins); change it there")
)

// memoTTL bounds how long a verdict is remembered without asking the
// store: how late another replica's approval may take effect here.
const memoTTL = 5 * time.Second

// maxMemo bounds the verdicts remembered.
const maxMemo = 65536

// MaxPinsPerApp bounds the pins one app's definitions make: an upstream
// that lists ever new names cannot fill the store. Past it, new
// definitions are refused as unclean.
const MaxPinsPerApp = 10000

// Pins checks definitions against their pins.
type Pins struct {
	store Store
	now   func() time.Time

	mu   sync.Mutex
	memo map[memoKey]memoEntry
	// pinned counts each app's stored pins, read from the store at the
	// app's first new definition and kept up by this process's creations.
	pinned map[string]int
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
	at     time.Time
}

// New checks definitions against the pins in store.
func New(store Store, now func() time.Time) *Pins {
	if now == nil {
		now = time.Now
	}
	return &Pins{store: store, now: now, memo: make(map[memoKey]memoEntry), pinned: make(map[string]int)}
}

// Check compares one listed definition of an app with its pin, pinning or
// holding it when it is new, and recording it beside the pin when it
// changed.
func (p *Pins) Check(ctx context.Context, app string, policy Policy, kind Kind, raw []byte) (Verdict, error) {
	if policy.Mode == ModeOff {
		return Verdict{Status: StatusMatch, Serve: true}, nil
	}
	name, canonical, hash, err := Canonical(kind, raw)
	if err != nil {
		return p.remember(app, kind, name, policy, Verdict{Status: StatusUnclean, Problems: []Problem{{Reason: err.Error()}}}), nil
	}
	if problems := Hygiene(kind, raw, policy.Limits); len(problems) > 0 {
		return p.remember(app, kind, name, policy, Verdict{Status: StatusUnclean, Hash: hash, Problems: problems}), nil
	}
	key := memoKey{app, kind, name}
	if declared, ok := policy.Declared[Key{kind, name}]; ok {
		v := Verdict{Status: StatusMatch, Hash: hash}
		if declared != hash {
			v.Status, v.Pinned = StatusChanged, declared
		}
		return p.remember(app, kind, name, policy, v), nil
	}
	p.mu.Lock()
	m, ok := p.memo[key]
	p.mu.Unlock()
	if ok && m.hash == hash && p.now().Sub(m.at) < memoTTL {
		return serveUnder(policy, Verdict{Status: m.status, Hash: hash, Pinned: m.pinned}), nil
	}
	v, err := p.compare(ctx, app, policy, kind, name, canonical, hash)
	if err != nil {
		return Verdict{}, err
	}
	return p.remember(app, kind, name, policy, v), nil
}

// compare asks the store.
func (p *Pins) compare(ctx context.Context, app string, policy Policy, kind Kind, name string, canonical []byte, hash string) (Verdict, error) {
	now := p.now()
	pin, found, err := p.store.Get(ctx, app, kind, name)
	if err != nil {
		return Verdict{}, err
	}
	if !found {
		full, err := p.full(ctx, app)
		if err != nil {
			return Verdict{}, err
		}
		if full {
			return Verdict{Status: StatusUnclean, Hash: hash, Problems: []Problem{{Reason: fmt.Sprintf("the app already has %d pinned definitions", MaxPinsPerApp)}}}, nil
		}
		fresh := Pin{App: app, Kind: kind, Name: name, Hash: hash, Definition: canonical, Status: PinHeld, FirstSeen: now}
		if policy.TrustOnFirstUse {
			fresh.Status, fresh.ApprovedAt, fresh.ApprovedBy = PinApproved, now, "trust on first use"
		}
		var created bool
		if pin, created, err = p.store.Create(ctx, fresh); err != nil {
			return Verdict{}, err
		}
		if created {
			p.mu.Lock()
			p.pinned[app]++
			p.mu.Unlock()
			if pin.Status == PinApproved {
				return Verdict{Status: StatusNewTrusted, Hash: hash}, nil
			}
			return Verdict{Status: StatusNewHeld, Hash: hash}, nil
		}
		// Another replica pinned it first: compared with that pin below.
	}
	switch {
	case pin.Status == PinHeld && pin.Hash == hash:
		return Verdict{Status: StatusNewHeld, Hash: hash}, nil
	case pin.Status == PinHeld:
		// Still waiting, and changed meanwhile: what waits is the newest.
		pin.Hash, pin.Definition, pin.FirstSeen = hash, canonical, now
		if err := p.store.Put(ctx, pin); err != nil {
			return Verdict{}, err
		}
		return Verdict{Status: StatusNewHeld, Hash: hash}, nil
	case pin.Hash == hash:
		return Verdict{Status: StatusMatch, Hash: hash}, nil
	}
	if pin.Pending == nil || pin.Pending.Hash != hash {
		pin.Pending = &Candidate{Hash: hash, Definition: canonical, SeenAt: now}
		if err := p.store.Put(ctx, pin); err != nil {
			return Verdict{}, err
		}
	}
	return Verdict{Status: StatusChanged, Hash: hash, Pinned: pin.Hash}, nil
}

// full reports whether app has as many pins as it may.
func (p *Pins) full(ctx context.Context, app string) (bool, error) {
	p.mu.Lock()
	n, known := p.pinned[app]
	p.mu.Unlock()
	if !known {
		pins, err := p.store.List(ctx, app)
		if err != nil {
			return false, err
		}
		n = len(pins)
		p.mu.Lock()
		p.pinned[app] = n
		p.mu.Unlock()
	}
	return n >= MaxPinsPerApp, nil
}

// remember keeps v for its definition and tells whether it is news.
func (p *Pins) remember(app string, kind Kind, name string, policy Policy, v Verdict) Verdict {
	key := memoKey{app, kind, name}
	p.mu.Lock()
	m, known := p.memo[key]
	v.FirstSeen = !known || m.hash != v.Hash || m.status != v.Status && !(m.status == StatusMatch && v.Status == StatusNewTrusted)
	if len(p.memo) >= maxMemo && !known {
		clear(p.memo)
	}
	status := v.Status
	if status == StatusNewTrusted {
		status = StatusMatch // pinned now: from here on it matches
	}
	p.memo[key] = memoEntry{hash: v.Hash, status: status, pinned: v.Pinned, at: p.now()}
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

// forget drops what is remembered of a definition.
func (p *Pins) forget(app string, kind Kind, name string) {
	p.mu.Lock()
	delete(p.memo, memoKey{app, kind, name})
	p.mu.Unlock()
}

// Get returns one stored pin.
func (p *Pins) Get(ctx context.Context, app string, kind Kind, name string) (Pin, bool, error) {
	return p.store.Get(ctx, app, kind, name)
}

// List returns the stored pins of an app, every app's when app is "".
func (p *Pins) List(ctx context.Context, app string) ([]Pin, error) {
	return p.store.List(ctx, app)
}

// Approve approves what waits: a held definition, or the candidate of a
// changed one, which becomes the pin. hash, when given, must be the hash
// of what waits, so that an operator approves what they reviewed.
func (p *Pins) Approve(ctx context.Context, app string, kind Kind, name, hash, by string) (Pin, error) {
	pin, found, err := p.store.Get(ctx, app, kind, name)
	if err != nil {
		return Pin{}, err
	}
	if !found {
		return Pin{}, ErrNotFound
	}
	switch {
	case pin.Status == PinHeld && (hash == "" || hash == pin.Hash):
	case pin.Pending != nil && (hash == "" || hash == pin.Pending.Hash):
		pin.Hash, pin.Definition = pin.Pending.Hash, pin.Pending.Definition
	default:
		return Pin{}, ErrNoCandidate
	}
	pin.Status, pin.Pending, pin.ApprovedAt, pin.ApprovedBy = PinApproved, nil, p.now(), by
	if err := p.store.Put(ctx, pin); err != nil {
		return Pin{}, err
	}
	p.forget(app, kind, name)
	return pin, nil
}

// Revoke drops a pin: the definition is new at its next sight.
func (p *Pins) Revoke(ctx context.Context, app string, kind Kind, name string) error {
	found, err := p.store.Delete(ctx, app, kind, name)
	if err != nil {
		return err
	}
	p.forget(app, kind, name)
	if !found {
		return ErrNotFound
	}
	p.mu.Lock()
	if n, known := p.pinned[app]; known && n > 0 {
		p.pinned[app] = n - 1
	}
	p.mu.Unlock()
	return nil
}
