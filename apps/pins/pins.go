package pins

import (
	"context"
	"encoding/json"
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
	// Revision counts the writes of the pin; an update applies only to
	// the revision it read (Store.Update). It is the first member so that
	// the Redis store's script finds it without decoding the rest.
	Revision   int64           `json:"revision"`
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
	// Hash is the hex SHA-256 of the definition's canonical form, or of
	// its bytes when it has none (it is not JSON, or names a member
	// twice); empty only in mode off. Pinned is the pin it differs from.
	Hash, Pinned string
	Problems     []Problem
	// Serve says whether the definition may be listed and called under
	// the policy's mode.
	Serve bool
	// FirstSeen says the caller should report this verdict (one warning
	// per change): for what the store keeps (a new pin, a held
	// definition, a changed one), that this Check recorded it, so one
	// replica reports it; for what it does not (unclean, differing from
	// a declared pin), that this process had not seen it so.
	FirstSeen bool
}

// Store keeps pins: NewBoltStore for a single broker, NewRedisStore for
// replicas. There is no in-memory store: a pin is an operator's decision
// and a first sight worth remembering across restarts, so the broker
// refuses to pin without storage (storage.bolt or storage.redis) rather
// than forget approvals on every restart.
type Store interface {
	Get(ctx context.Context, app string, kind Kind, name string) (Pin, bool, error)
	// Create stores p, at revision 1, unless a pin of its key exists; it
	// returns the pin in force and whether it was created. Replicas that
	// see a new definition at once agree on the first one stored.
	Create(ctx context.Context, p Pin) (Pin, bool, error)
	// Update stores p, at p.Revision+1, if the stored pin of its key is
	// still at p.Revision; false when it was changed or deleted meanwhile.
	Update(ctx context.Context, p Pin) (bool, error)
	// Put stores p as it is, whatever is stored.
	Put(ctx context.Context, p Pin) error
	// Delete drops a pin; false when there was none.
	Delete(ctx context.Context, app string, kind Kind, name string) (bool, error)
	// List returns an app's pins; every pin when app is "".
	List(ctx context.Context, app string) ([]Pin, error)
	// Count is the number of an app's pins.
	Count(ctx context.Context, app string) (int, error)
}
