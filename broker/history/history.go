// Package history keeps what each session did, for the policies that
// decide on a chain of calls rather than one (input.session): the last
// calls of a session within a window, in the one bbolt file of a broker or
// in the Redis its replicas share.
package history

import (
	"context"
	"errors"
	"slices"
	"time"
)

// Entry is one call of a session.
type Entry struct {
	Method   string   `json:"m"`
	App      string   `json:"a"`
	Name     string   `json:"n"`
	Decision string   `json:"d"`
	Time     int64    `json:"t"` // seconds since the epoch
	Labels   []string `json:"l,omitempty"`
}

// Decisions an entry records.
const (
	Allowed          = "allowed"
	Denied           = "denied"
	ApprovalRequired = "approval_required"
	Failed           = "failed"
)

// Limits bound a session's history: the last MaxCalls within Window.
type Limits struct {
	MaxCalls int
	Window   time.Duration
}

// Bounds of one entry: what a policy or an upstream's names can make it
// weigh.
const (
	MaxNameBytes  = 512
	MaxLabels     = 32
	MaxLabelBytes = 64
)

// ErrUnavailable is a store that cannot be read or written.
var ErrUnavailable = errors.New("history: the store is unavailable")

// Store keeps the histories, keyed by a digest of the session.
type Store interface {
	// Append adds e to the history of key and drops what falls outside
	// limits.
	Append(ctx context.Context, key string, e Entry, limits Limits) error
	// Read returns the history of key within limits at now, oldest first.
	Read(ctx context.Context, key string, limits Limits, now time.Time) ([]Entry, error)
}

// Bounded returns e within the bounds of one entry: the name cut at
// MaxNameBytes, at most MaxLabels labels of at most MaxLabelBytes, each
// once.
func Bounded(e Entry) Entry {
	if len(e.Name) > MaxNameBytes {
		e.Name = e.Name[:MaxNameBytes]
	}
	var labels []string
	for _, l := range e.Labels {
		if len(labels) == MaxLabels {
			break
		}
		if l == "" || len(l) > MaxLabelBytes || slices.Contains(labels, l) {
			continue
		}
		labels = append(labels, l)
	}
	e.Labels = labels
	return e
}

// within keeps the entries of limits at now: those inside the window, the
// last MaxCalls of them.
func within(entries []Entry, limits Limits, now time.Time) []Entry {
	oldest := now.Add(-limits.Window).Unix()
	first := 0
	for first < len(entries) && entries[first].Time < oldest {
		first++
	}
	entries = entries[first:]
	if len(entries) > limits.MaxCalls {
		entries = entries[len(entries)-limits.MaxCalls:]
	}
	return entries
}

// Labels are the labels of the calls a policy let through (allowed, or
// failed on the way), each once, in the order first seen.
func Labels(entries []Entry) []string {
	var labels []string
	for _, e := range entries {
		if e.Decision != Allowed && e.Decision != Failed {
			continue
		}
		for _, l := range e.Labels {
			if !slices.Contains(labels, l) {
				labels = append(labels, l)
			}
		}
	}
	return labels
}
