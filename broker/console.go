package broker

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/pins"
	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/console"
	"github.com/mcpbroker/mcpbroker/exchange/authserver"
	"github.com/mcpbroker/mcpbroker/opa"
	dto "github.com/prometheus/client_model/go"
)

// The web console (broker/console) on the admin listener: the broker
// answers what it shows, and does what operators ask through the same
// operations as the admin API, recorded with their identity.

// consoleClientID is the client the console signs people in as at the
// embedded Auth Provider, which the broker registers for it.
const consoleClientID = "mcpbroker-console"

// consoleClient is the embedded Auth Provider's client of the console;
// nil when the console is off or signs in at a connector.
func consoleClient(cfg *config.Config) *authserver.Client {
	c := cfg.Console
	if !c.Enabled || c.SignIn.Connector != "" {
		return nil
	}
	return &authserver.Client{ID: consoleClientID, Name: "mcpbroker console", RedirectURIs: []string{c.URL + "/callback"},
		GrantTypes: []string{authserver.GrantAuthorizationCode}, Scopes: []string{"openid"}, SkipConsent: true}
}

// newConsole builds the console of cfg; nil when it is off.
func (b *Broker) newConsole(cfg *config.Config) (*console.Console, error) {
	c := cfg.Console
	if !c.Enabled {
		return nil, nil
	}
	// The embedded Auth Provider's ID tokens carry name, email and groups
	// whatever the scopes: openid is all the console asks.
	f := &authserver.Federation{ClientID: consoleClientID, RedirectURL: c.URL + "/callback", Scopes: []string{"openid"}}
	if name := c.SignIn.Connector; name != "" {
		conn := cfg.Connector(name)
		f = &authserver.Federation{DiscoveryURL: conn.OIDCWellKnownURL, ClientID: conn.OAuthClientID,
			ClientSecret: conn.OAuthClientSecret.Value(), Scopes: conn.Scopes, DisablePKCE: conn.DisablePKCE, RedirectURL: c.URL + "/callback"}
	} else {
		f.DiscoveryURL = strings.TrimSuffix(cfg.AuthProvider.Issuer, "/") + "/.well-known/openid-configuration"
	}
	rp, err := authserver.NewRelyingParty(*f, b.log)
	if err != nil {
		return nil, fmt.Errorf("broker: console: %w", err)
	}
	return console.New(console.Options{
		Path: c.Path, URL: c.URL, SignIn: relyingParty{rp}, Operators: c.Operators, Viewers: c.Viewers,
		SessionTTL: time.Duration(c.SessionTTL), TraceURL: c.TraceURL, Backend: consoleBackend{b}, Logger: b.log,
	})
}

// relyingParty is authserver's for the console.
type relyingParty struct{ rp *authserver.RelyingParty }

func (r relyingParty) AuthorizeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	return r.rp.AuthorizeURL(ctx, state, nonce, verifier)
}

func (r relyingParty) SignIn(ctx context.Context, code, verifier, nonce string) (string, string, []string, error) {
	who, err := r.rp.SignIn(ctx, code, verifier, nonce)
	if err != nil {
		return "", "", nil, err
	}
	name := who.Name
	if name == "" {
		name = who.Username
	}
	return who.Subject, name, who.Groups, nil
}

// consoleBackend answers the console.
type consoleBackend struct{ b *Broker }

func (cb consoleBackend) Overview(ctx context.Context) console.Overview {
	b := cb.b
	o, latency := b.counters()
	o.Version = b.version
	health := b.health.Results(ctx)
	for _, app := range b.current().cfg.Apps {
		o.Apps = append(o.Apps, cb.summary(app, health, latency, cb.pinList(ctx, app.Name)))
	}
	o.Series = b.series.snapshot()
	return o
}

// pinList is the app's pins; nil when the app pins nothing or the store
// does not answer.
func (cb consoleBackend) pinList(ctx context.Context, app string) []pins.Pin {
	if cb.b.pins == nil {
		return nil
	}
	list, _ := cb.b.pins.List(ctx, app)
	return list
}

// summary is an app as lists show it: its health by the readiness checks,
// its mean latency, and its pins, those waiting counted.
func (cb consoleBackend) summary(app config.App, health map[string]bool, latency map[string]string, list []pins.Pin) console.AppSummary {
	s := console.AppSummary{Name: app.Name, Type: string(app.Type), Health: "unknown", Latency: latency[app.Name], Pins: len(list)}
	if ok, checked := health[appCheckPrefix+app.Name]; checked {
		s.Health = map[bool]string{true: "up", false: "down"}[ok]
	}
	for _, p := range list {
		if p.Pending != nil || p.Status == pins.PinHeld {
			s.Changed++
		}
	}
	return s
}

// counters are what the console reads of the broker's own metrics, in one
// gathering: calls, denials and errors since the start and sessions open
// now; and each app's mean time per call since the start (apps without
// calls absent).
func (b *Broker) counters() (console.Overview, map[string]string) {
	var o console.Overview
	sums, counts := map[string]float64{}, map[string]uint64{}
	families, _ := b.metrics.Registry().Gather()
	for _, f := range families {
		switch f.GetName() {
		case "mcpbroker_calls_total":
			for _, m := range f.GetMetric() {
				v := m.GetCounter().GetValue()
				o.Calls += v
				switch labelValue(m.GetLabel(), "decision") {
				case "denied", "refused", "approval_required":
					o.Denied += v
				case "error":
					o.Errors += v
				}
			}
		case "mcpbroker_sessions_open":
			for _, m := range f.GetMetric() {
				o.Sessions += m.GetGauge().GetValue()
			}
		case "mcpbroker_call_duration_seconds":
			for _, m := range f.GetMetric() {
				if app := labelValue(m.GetLabel(), "app"); app != "" {
					sums[app] += m.GetHistogram().GetSampleSum()
					counts[app] += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	latency := map[string]string{}
	for app, n := range counts {
		if n > 0 {
			latency[app] = fmt.Sprintf("%.1f ms", sums[app]/float64(n)*1000)
		}
	}
	return o, latency
}

func labelValue(labels []*dto.LabelPair, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (cb consoleBackend) App(ctx context.Context, name string) (console.AppView, bool) {
	b := cb.b
	for _, app := range b.current().cfg.Apps {
		if app.Name != name {
			continue
		}
		list := cb.pinList(ctx, name)
		_, latency := b.counters()
		v := console.AppView{AppSummary: cb.summary(app, b.health.Results(ctx), latency, list)}
		// Secrets marshal as [redacted].
		raw, _ := json.MarshalIndent(app, "", "  ")
		v.Config = string(raw)
		for _, p := range list {
			row := console.PinRow{Kind: string(p.Kind), Name: p.Name, Status: string(p.Status), SHA256: p.Hash}
			if p.Pending != nil {
				row.Pending = p.Pending.Hash
			}
			v.Pins = append(v.Pins, row)
		}
		return v, true
	}
	return console.AppView{}, false
}

func (cb consoleBackend) Pin(ctx context.Context, app, kind, name string) (console.PinDetail, error) {
	b := cb.b
	if b.pins == nil {
		return console.PinDetail{}, fmt.Errorf("%w: no app pins its definitions", console.ErrNotFound)
	}
	p, found, err := b.pins.Get(ctx, app, pins.Kind(kind), name)
	switch {
	case err != nil:
		return console.PinDetail{}, fmt.Errorf("the pin store does not answer: %w", err)
	case !found:
		return console.PinDetail{}, fmt.Errorf("%w: no pin for %s %s of app %s", console.ErrNotFound, kind, name, app)
	}
	v := b.pinView(p, true)
	d := console.PinDetail{App: app, PinRow: console.PinRow{Kind: kind, Name: name, Status: v.Status, SHA256: v.SHA256},
		Definition: indentJSON(v.Definition), PendingDefinition: indentJSON(v.PendingDefinition), Diff: v.Diff, ApprovedBy: v.ApprovedBy}
	if v.Pending != nil {
		d.Pending = v.Pending.SHA256
	}
	return d, nil
}

func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	out, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return string(raw)
	}
	return string(out)
}

func (cb consoleBackend) ApprovePin(ctx context.Context, app, kind, name, hash string, by console.Person) error {
	b := cb.b
	if b.pins == nil {
		return fmt.Errorf("%w: no app pins its definitions", console.ErrNotFound)
	}
	p, err := b.pins.Approve(ctx, app, pins.Kind(kind), name, hash, "console:"+by.Subject)
	if err != nil {
		return pinError(err)
	}
	b.pinsChanged(app, "approved", &audit.Pin{Kind: kind, Name: name, Status: "approved", Hash: p.Hash, By: "console:" + by.Subject})
	return nil
}

func (cb consoleBackend) RevokePin(ctx context.Context, app, kind, name string, by console.Person) error {
	b := cb.b
	if b.pins == nil {
		return fmt.Errorf("%w: no app pins its definitions", console.ErrNotFound)
	}
	if err := b.pins.Revoke(ctx, app, pins.Kind(kind), name); err != nil {
		return pinError(err)
	}
	b.pinsChanged(app, "revoked", &audit.Pin{Kind: kind, Name: name, Status: "revoked", By: "console:" + by.Subject})
	return nil
}

func pinError(err error) error {
	if errors.Is(err, pins.ErrNotFound) {
		return fmt.Errorf("%w: %w", console.ErrNotFound, err)
	}
	return err
}

func (cb consoleBackend) Record(ctx context.Context, e console.Event) error {
	b := cb.b
	b.metrics.AuthEvent(e.Name)
	r := &audit.Record{Time: time.Now(), Kind: audit.KindConsole, Event: e.Name, Source: e.Source, Subject: e.Subject, Detail: e.Detail}
	return b.audit.write(ctx, r)
}

func (cb consoleBackend) Decisions(_ context.Context, match func(console.DecisionRow) bool, limit int) []console.DecisionRow {
	if cb.b.feed == nil {
		return nil
	}
	return cb.b.feed.latest(match, limit)
}

func (cb consoleBackend) Decision(_ context.Context, id string) (console.DecisionRow, string, bool) {
	if cb.b.feed == nil {
		return console.DecisionRow{}, "", false
	}
	return cb.b.feed.find(id)
}

func (cb consoleBackend) WatchDecisions(ctx context.Context) (<-chan console.DecisionRow, bool) {
	if cb.b.feed == nil {
		return nil, false
	}
	return cb.b.feed.watch(ctx)
}

func (cb consoleBackend) Approvals(_ context.Context, limit int) ([]console.ApprovalRow, error) {
	b := cb.b
	if b.authProvider == nil {
		return nil, nil
	}
	list, err := b.authProvider.server.Approvals(limit)
	if err != nil {
		return nil, err
	}
	rows := make([]console.ApprovalRow, 0, len(list))
	for _, a := range list {
		rows = append(rows, console.ApprovalRow{
			ID: a.ID, Status: a.Status, Subject: a.Subject, Client: a.Client, App: a.App, Tool: a.Tool, Approvers: a.Approvers,
			DecidedBy: a.DecidedBy, Reason: a.Reason, Arguments: indentJSON(a.Arguments), ArgumentsDigest: a.ArgumentsDigest,
			Requested: a.Requested, Deadline: a.Deadline, URL: b.authProvider.server.ApprovalURL(&a),
		})
	}
	return rows, nil
}

func (cb consoleBackend) Policies(context.Context) []console.PolicyRow {
	g := cb.b.current()
	if g.authz == nil {
		return nil
	}
	var rows []console.PolicyRow
	for _, app := range g.cfg.Apps {
		p := g.authz.policies[app.Name]
		if p == nil {
			continue
		}
		hash := p.Hash()
		last := g.authz.lastReload(app.Name)
		rows = append(rows, console.PolicyRow{App: app.Name, Name: p.Name(), Hash: hex.EncodeToString(hash[:]), Version: p.Version(),
			LastReload: last.At, LastError: last.Error})
	}
	return rows
}

func (cb consoleBackend) EvalPolicy(ctx context.Context, app string, input []byte) (string, error) {
	g := cb.b.current()
	var p *opa.Policy
	if g.authz != nil {
		p = g.authz.policies[app]
	}
	if p == nil {
		return "", fmt.Errorf("app %q has no inbound policy", app)
	}
	var value any
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.UseNumber()
	if err := dec.Decode(&value); err != nil || dec.More() {
		return "", errors.New("the input is not one JSON value")
	}
	if _, ok := value.(map[string]any); !ok {
		return "", errors.New("the input is not a JSON object")
	}
	result, d := p.EvalRaw(ctx, value)
	decision := map[string]any{"allowed": d.Allowed, "reason": d.Reason, "version": d.Version}
	if d.ExternalMessage != "" {
		decision["external_message"] = d.ExternalMessage
	}
	if len(d.Scopes) > 0 {
		decision["scopes"] = d.Scopes
	}
	if len(d.Labels) > 0 {
		decision["labels"] = d.Labels
	}
	if a := d.Approval; a != nil {
		decision["approval"] = map[string]any{"reason": a.Reason, "approvers": a.Approvers, "ttl": a.TTL.String()}
	}
	out := map[string]any{"result": result, "decision": decision}
	raw, _ := json.MarshalIndent(out, "", "  ")
	return string(raw), nil
}
