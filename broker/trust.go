package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/apps/pins"
	"github.com/mcpbroker/mcpbroker/apps/schema"
	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/redact"
	"github.com/mcpbroker/mcpbroker/opa"
)

// What an app takes on trust from its upstream, and what it does not: its
// definitions are held to their pins (toolPinning), a call's arguments
// and a result's structuredContent to the tool's schemas (validation),
// and its results are searched for secrets and personal data (redaction).

// appTrust is one app's settings of the three.
type appTrust struct {
	pinning   pins.Policy // Mode off: no pinning
	arguments bool        // validation.arguments enforce
	results   bool        // validation.results enforce
	limits    schema.Limits
	// redaction is the app's, by tool; nil: none.
	redaction *appRedaction
}

// definitions reports whether the app keeps its listed definitions: for
// pinning, for validation, and so for input.tool.
func (t *appTrust) definitions() bool {
	return t != nil && (t.pinning.Mode != pins.ModeOff || t.arguments || t.results)
}

// appRedaction is an app's redaction: the app's own detectors and action
// and those of single tools.
type appRedaction struct {
	all   toolRedaction
	tools map[string]toolRedaction
}

type toolRedaction struct {
	set    *redact.Set
	action string
}

// forTool is the redaction of the app's tool name.
func (r *appRedaction) forTool(name string) toolRedaction {
	if t, ok := r.tools[name]; ok {
		return t
	}
	return r.all
}

// newTrust builds every app's settings from cfg.
func newTrust(cfg *config.Config) (map[string]*appTrust, error) {
	trust := make(map[string]*appTrust, len(cfg.Apps))
	for _, app := range cfg.Apps {
		t := &appTrust{}
		if p := app.ToolPinning; p != nil {
			t.pinning = pins.Policy{
				Mode:            pins.Mode(p.Mode),
				TrustOnFirstUse: p.TrustOnFirstUse == nil || *p.TrustOnFirstUse,
				Limits: pins.Limits{
					MaxDescriptionBytes: p.Limits.DescriptionBytes,
					MaxSchemaBytes:      p.Limits.SchemaBytes,
					MaxDefinitionBytes:  p.Limits.DefinitionBytes,
				},
			}
			if len(p.Pins) > 0 {
				t.pinning.Declared = make(map[pins.Key]string, len(p.Pins))
				for _, d := range p.Pins {
					t.pinning.Declared[pins.Key{Kind: pins.Kind(d.Kind), Name: d.Name}] = d.SHA256
				}
			}
		}
		if v := app.Validation; v != nil {
			t.arguments = v.Arguments == config.PinningEnforce
			t.results = v.Results == config.PinningEnforce
			t.limits = schema.Limits{MaxArgumentBytes: v.Limits.ArgumentBytes, MaxDepth: v.Limits.Depth, MaxStringBytes: v.Limits.StringBytes}
		}
		if r := app.Redaction; r != nil {
			all, err := newToolRedaction(r.Detectors, r.Action)
			if err != nil {
				return nil, fmt.Errorf("broker: apps %q: redaction: %w", app.Name, err)
			}
			t.redaction = &appRedaction{all: all, tools: map[string]toolRedaction{}}
			for _, tool := range r.Tools {
				detectors := tool.Detectors
				if len(detectors) == 0 {
					detectors = r.Detectors
				}
				tr, err := newToolRedaction(detectors, tool.Action)
				if err != nil {
					return nil, fmt.Errorf("broker: apps %q: redaction.tools %q: %w", app.Name, tool.Name, err)
				}
				t.redaction.tools[tool.Name] = tr
			}
		}
		trust[app.Name] = t
	}
	return trust, nil
}

func newToolRedaction(detectors []string, action string) (toolRedaction, error) {
	kinds := make([]redact.Kind, len(detectors))
	for i, d := range detectors {
		kinds[i] = redact.Kind(d)
	}
	set, err := redact.NewSet(kinds)
	if err != nil {
		return toolRedaction{}, err
	}
	return toolRedaction{set: set, action: action}, nil
}

// pinKinds are the pins' kinds of the lists that carry definitions.
var pinKinds = [...]pins.Kind{kindTool: pins.KindTool, kindPrompt: pins.KindPrompt, kindTemplate: pins.KindResourceTemplate}

// definitionKinds reports whether items of list k carry definitions.
func definitionKind(k listKind) bool { return k == kindTool || k == kindPrompt || k == kindTemplate }

// checkDefinition puts one listed definition to the app's tool pinning and
// records it among the app's definitions. A definition that changed, is
// held or is not clean is reported once per change: a warning, a metric
// and an audit record.
func (b *Broker) checkDefinition(ctx context.Context, app *apps.App, t *appTrust, k listKind, name string, raw []byte) *apps.Definition {
	kind := pinKinds[k]
	d := &apps.Definition{Kind: string(kind), Name: name, Raw: raw, Pin: pinUnpinned, Serve: true}
	if t.pinning.Mode != pins.ModeOff && b.pins == nil {
		// Turned on by a reload in a broker started without a store.
		d.Pin, d.Serve, d.Reason = "held", t.pinning.Mode != pins.ModeEnforce, "tool pinning has no store until the broker restarts"
		app.Definitions.Put(d)
		return d
	}
	if t.pinning.Mode == pins.ModeOff {
		sum := sha256.Sum256(raw)
		d.Hash = hex.EncodeToString(sum[:])
		app.Definitions.Put(d)
		return d
	}
	v, err := b.pins.Check(ctx, app.Name, t.pinning, kind, raw)
	if err != nil {
		// The store does not answer: nothing unverified is served in
		// enforce mode.
		b.log.Error("tool pinning: store", "app", app.Name, "kind", kind, "name", name, "error", err)
		d.Pin, d.Serve, d.Reason = "held", t.pinning.Mode != pins.ModeEnforce, "the pin store is unavailable"
		app.Definitions.Put(d)
		return d
	}
	d.Hash, d.Serve = v.Hash, v.Serve
	switch v.Status {
	case pins.StatusMatch:
		d.Pin = "approved"
	case pins.StatusNewTrusted:
		d.Pin = "approved"
	case pins.StatusNewHeld:
		d.Pin, d.Reason = "held", "new; approve it with mcpbroker tools approve"
	case pins.StatusChanged:
		d.Pin, d.Reason = "changed", "pinned sha256 "+short(v.Pinned)+", now "+short(v.Hash)
	case pins.StatusUnclean:
		d.Pin, d.Reason = "unclean", problemsText(v.Problems)
	}
	app.Definitions.Put(d)
	if v.FirstSeen {
		status := d.Pin
		if v.Status == pins.StatusNewTrusted {
			status = "pinned"
		}
		b.metrics.PinEvent(app.Name, string(kind), status)
		level := "tool pinning: definition pinned at first sight"
		if status != "pinned" {
			level = "tool pinning: definition not as pinned"
		}
		attrs := []any{"app", app.Name, "kind", kind, "name", name, "status", status, "sha256", v.Hash, "mode", t.pinning.Mode}
		if d.Reason != "" {
			attrs = append(attrs, "reason", d.Reason)
		}
		if status == "pinned" {
			b.log.Info(level, attrs...)
		} else {
			b.log.Warn(level, attrs...)
		}
		b.auditPin(ctx, app.Name, &audit.Pin{Kind: string(kind), Name: name, Status: status, Hash: v.Hash, Pinned: v.Pinned, Reason: d.Reason}, "definition."+status)
	}
	return d
}

// pinUnpinned is the pin of a definition when pinning is off.
const pinUnpinned = "unpinned"

// auditPin writes a record of a pin event, outside any call.
func (b *Broker) auditPin(ctx context.Context, app string, pin *audit.Pin, event string) {
	if b.audit == nil {
		return
	}
	r := &audit.Record{Kind: audit.KindPin, Event: event, App: app, Pin: pin, Subject: pin.By}
	if err := b.audit.write(context.WithoutCancel(ctx), r); err != nil {
		b.log.Error("audit: pin record not written", "app", app, "name", pin.Name, "error", err)
	}
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

func problemsText(problems []pins.Problem) string {
	texts := make([]string, 0, len(problems))
	for i, p := range problems {
		if i == 3 {
			texts = append(texts, fmt.Sprintf("and %d more", len(problems)-3))
			break
		}
		texts = append(texts, p.Path+": "+p.Reason)
	}
	return strings.Join(texts, "; ")
}

// toolFacts is input.tool for a definition, made once per definition.
func (b *Broker) toolFacts(d *apps.Definition) *opa.Tool {
	if t, ok := b.facts.Get(d); ok {
		return t
	}
	t := &opa.Tool{Definition: d.Raw, Hash: d.Hash, Pin: d.Pin}
	b.facts.Add(d, t)
	return t
}

// newFacts keeps input.tool per definition; definitions are replaced as
// upstreams list again, so the oldest are dropped.
func newFacts() *lru.Cache[*apps.Definition, *opa.Tool] {
	c, _ := lru.New[*apps.Definition, *opa.Tool](4096)
	return c
}

// compiledMember compiles the schema in member of a definition, once per
// definition hash; nil when the definition has no such member.
func (b *Broker) compiledMember(d *apps.Definition, member string) (*schema.Compiled, error) {
	raw, ok, err := jsonrpc.Member(d.Raw, member)
	if err != nil || !ok {
		return nil, err
	}
	return b.schemas.Compile(d.Hash+"/"+member, raw)
}

// schemaCacheSize bounds the compiled schemas kept: two per definition
// that calls were checked against.
const schemaCacheSize = 4096

// pinning reports whether any app of cfg pins its definitions.
func pinning(cfg *config.Config) bool {
	for _, app := range cfg.Apps {
		if app.ToolPinning != nil && app.ToolPinning.Mode != config.PinningOff {
			return true
		}
	}
	return false
}

// newPins opens the pins where replicas agree on them: Redis when the
// broker has it, else the store. nil when no app pins; a reload that
// turns pinning on for the first time needs a restart (check says so).
func newPins(cfg *config.Config, db *bolt.DB, client redis.UniversalClient) (*pins.Pins, error) {
	var store pins.Store
	switch {
	case client != nil:
		store = pins.NewRedisStore(client, cfg.Storage.Redis.KeyPrefix)
	case db != nil:
		var err error
		if store, err = pins.NewBoltStore(db); err != nil {
			return nil, fmt.Errorf("broker: tool pinning: %w", err)
		}
	case pinning(cfg):
		return nil, errors.New("broker: tool pinning needs a store (storage.bolt or storage.redis)")
	default:
		return nil, nil // pinning can be turned on by a restart, once there is a store
	}
	return pins.New(store, time.Now), nil
}
