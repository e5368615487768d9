package apps

import (
	"encoding/json"
	"strings"
	"sync"
)

// Definitions are the latest definitions an app's upstream listed, tools
// prompts and resource templates, each with its standing under the app's
// tool pinning: what a call is checked against (pin, inputSchema,
// outputSchema) and what the policy is shown. Every listing puts what it
// read, so the definitions follow the upstream; they are the app's, not a
// caller's (a pin is per app and definition).
type Definitions struct {
	mu     sync.RWMutex
	byName map[definitionKey]*Definition
}

// maxDefinitions bounds an app's definitions: an upstream that lists more
// tools than this has the later ones checked at every listing instead.
const maxDefinitions = 10000

type definitionKey struct{ kind, name string }

// Definition is one listed definition and its standing.
type Definition struct {
	// Kind is "tool", "prompt" or "resourceTemplate"; Name the upstream's
	// name (a template's URI template).
	Kind, Name string
	// Raw is the item as the upstream listed it.
	Raw json.RawMessage
	// Hash is the hex SHA-256 of its canonical form; empty when pinning is
	// off.
	Hash string
	// Pin is its standing: "approved", "changed", "held", "unclean" or
	// "unpinned" (pinning off).
	Pin string
	// Serve says whether the item may be listed and called.
	Serve bool
	// Reason says why it is not served, or what a warning reports.
	Reason string
}

// Put records d, replacing the definition of its kind and name.
func (ds *Definitions) Put(d *Definition) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	key := definitionKey{d.Kind, d.Name}
	if ds.byName == nil {
		ds.byName = make(map[definitionKey]*Definition)
	}
	if _, known := ds.byName[key]; !known && len(ds.byName) >= maxDefinitions {
		return
	}
	ds.byName[key] = d
}

// Get returns the latest definition of kind and name; nil if none was
// listed.
func (ds *Definitions) Get(kind, name string) *Definition {
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	return ds.byName[definitionKey{kind, name}]
}

// Forget drops every definition, so that the next call lists again: after
// an operator approved or revoked a pin.
func (ds *Definitions) Forget() {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.byName = nil
}

// Template is the served standing of the resource template whose literal
// beginning (up to its first expression) is the longest that uri starts
// with; nil when no listed template covers uri.
func (ds *Definitions) Template(uri string) *Definition {
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	var best *Definition
	bestLen := -1
	for key, d := range ds.byName {
		if key.kind != "resourceTemplate" {
			continue
		}
		literal, _, _ := strings.Cut(key.name, "{")
		if literal != "" && strings.HasPrefix(uri, literal) && len(literal) > bestLen {
			best, bestLen = d, len(literal)
		}
	}
	return best
}
