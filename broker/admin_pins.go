package broker

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/pins"
	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// The admin listener's /pins endpoints let operators review tool pinning
// (what `mcpbroker tools` calls): list the pins, show one with the
// definition waiting beside the pinned one, approve it, revoke a pin. They
// need admin.token as a bearer token; without one configured they are not
// served.
//
//	GET  /pins[?app=NAME]                         every pin (of one app)
//	GET  /pins/{app}/{kind}/{name}                one pin, its definitions and their diff
//	POST /pins/{app}/{kind}/{name}/approve        {"sha256": "..."} optional: the hash approved
//	POST /pins/{app}/{kind}/{name}/revoke

// PinView is a pin as the /pins endpoints show it.
type PinView struct {
	App        string    `json:"app"`
	Kind       string    `json:"kind"`
	Name       string    `json:"name"`
	Status     string    `json:"status"` // approved, held, declared
	SHA256     string    `json:"sha256"`
	FirstSeen  time.Time `json:"firstSeen,omitzero"`
	ApprovedAt time.Time `json:"approvedAt,omitzero"`
	ApprovedBy string    `json:"approvedBy,omitempty"`
	// Pending is a definition seen that differs from the pin.
	Pending *PendingView `json:"pending,omitempty"`
	// Definition, PendingDefinition and Diff only in the view of one pin.
	Definition        json.RawMessage `json:"definition,omitempty"`
	PendingDefinition json.RawMessage `json:"pendingDefinition,omitempty"`
	Diff              string          `json:"diff,omitempty"`
}

// PendingView is a definition waiting for approval.
type PendingView struct {
	SHA256 string    `json:"sha256"`
	SeenAt time.Time `json:"seenAt"`
}

// maxPinRequestBytes bounds an approval's body.
const maxPinRequestBytes = 4 << 10

// pinsHandler serves /pins; nil when admin.token is not set.
func (b *Broker) pinsHandler() http.Handler {
	token := b.cfg.Admin.Token.Value()
	if token == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pins", b.listPins)
	mux.HandleFunc("GET /pins/{app}/{kind}/{name}", b.showPin)
	mux.HandleFunc("POST /pins/{app}/{kind}/{name}/approve", b.approvePin)
	mux.HandleFunc("POST /pins/{app}/{kind}/{name}/revoke", b.revokePin)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(given), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcpbroker admin"`)
			writePinError(w, http.StatusUnauthorized, "the admin token (admin.token) is required")
			return
		}
		if b.pins == nil {
			writePinError(w, http.StatusNotFound, "no app pins its definitions (toolPinning)")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (b *Broker) listPins(w http.ResponseWriter, r *http.Request) {
	list, err := b.pins.List(r.Context(), r.URL.Query().Get("app"))
	if err != nil {
		writePinError(w, http.StatusServiceUnavailable, "the pin store does not answer: "+err.Error())
		return
	}
	views := make([]PinView, 0, len(list))
	for _, p := range list {
		views = append(views, b.pinView(p, false))
	}
	views = append(views, b.declaredPins(r.URL.Query().Get("app"), list)...)
	writePinJSON(w, http.StatusOK, map[string]any{"pins": views})
}

func (b *Broker) showPin(w http.ResponseWriter, r *http.Request) {
	app, kind, name := r.PathValue("app"), pins.Kind(r.PathValue("kind")), r.PathValue("name")
	p, found, err := b.pins.Get(r.Context(), app, kind, name)
	switch {
	case err != nil:
		writePinError(w, http.StatusServiceUnavailable, "the pin store does not answer: "+err.Error())
	case !found:
		writePinError(w, http.StatusNotFound, "no pin for "+string(kind)+" "+name+" of app "+app)
	default:
		writePinJSON(w, http.StatusOK, b.pinView(p, true))
	}
}

func (b *Broker) approvePin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		SHA256 string `json:"sha256"`
		By     string `json:"by"`
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPinRequestBytes))
	if err == nil && len(data) > 0 {
		err = json.Unmarshal(data, &body)
	}
	if err != nil {
		writePinError(w, http.StatusBadRequest, "the body must be {\"sha256\": \"...\", \"by\": \"...\"}, both optional")
		return
	}
	app, kind, name := r.PathValue("app"), pins.Kind(r.PathValue("kind")), r.PathValue("name")
	by := body.By
	if by == "" {
		by = "admin"
	}
	p, err := b.pins.Approve(r.Context(), app, kind, name, body.SHA256, by)
	if b.pinFailed(w, err) {
		return
	}
	b.pinsChanged(app, "approved", &audit.Pin{Kind: string(kind), Name: name, Status: "approved", Hash: p.Hash, By: by})
	writePinJSON(w, http.StatusOK, b.pinView(p, false))
}

func (b *Broker) revokePin(w http.ResponseWriter, r *http.Request) {
	app, kind, name := r.PathValue("app"), pins.Kind(r.PathValue("kind")), r.PathValue("name")
	if b.pinFailed(w, b.pins.Revoke(r.Context(), app, kind, name)) {
		return
	}
	b.pinsChanged(app, "revoked", &audit.Pin{Kind: string(kind), Name: name, Status: "revoked", By: "admin"})
	writePinJSON(w, http.StatusOK, map[string]string{"revoked": string(kind) + " " + name + " of app " + app})
}

// pinFailed answers err, if any, and reports whether it did.
func (b *Broker) pinFailed(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, pins.ErrNotFound):
		writePinError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, pins.ErrNoCandidate), errors.Is(err, pins.ErrDeclared):
		writePinError(w, http.StatusConflict, err.Error())
	default:
		writePinError(w, http.StatusServiceUnavailable, "the pin store does not answer: "+err.Error())
	}
	return true
}

// pinsChanged makes an operator's decision take effect: the app's kept
// lists and definitions are dropped here and, through Redis, on the other
// replicas, so the next listing and call are checked again. It is
// audited and counted.
func (b *Broker) pinsChanged(app, status string, pin *audit.Pin) {
	b.metrics.PinEvent(app, pin.Kind, status)
	b.auditPin(b.serveCtx, app, pin, "pin."+status)
	b.log.Info("tool pinning: "+status+" by an operator", "app", app, "kind", pin.Kind, "name", pin.Name, "sha256", pin.Hash)
	a := b.current().catalog.App(app)
	if a == nil {
		return
	}
	for _, method := range []string{"notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"} {
		b.listChanges.publish(app, method, b.log)
		b.dropLists(a, method)
	}
}

func (b *Broker) pinView(p pins.Pin, detail bool) PinView {
	v := PinView{App: p.App, Kind: string(p.Kind), Name: p.Name, Status: string(p.Status), SHA256: p.Hash,
		FirstSeen: p.FirstSeen, ApprovedAt: p.ApprovedAt, ApprovedBy: p.ApprovedBy}
	if c := p.Pending; c != nil {
		v.Pending = &PendingView{SHA256: c.Hash, SeenAt: c.SeenAt}
	}
	if detail {
		v.Definition = p.Definition
		if c := p.Pending; c != nil {
			v.PendingDefinition = c.Definition
			v.Diff = pins.Diff(p.Definition, c.Definition)
		}
	}
	return v
}

// declaredPins are the pins of the configuration (toolPinning.pins) that
// the store does not hold, so the list shows every pin in force.
func (b *Broker) declaredPins(app string, stored []pins.Pin) []PinView {
	var views []PinView
	for _, a := range b.current().cfg.Apps {
		if (app != "" && a.Name != app) || a.ToolPinning == nil {
			continue
		}
		for _, d := range a.ToolPinning.Pins {
			known := false
			for _, p := range stored {
				known = known || (p.App == a.Name && string(p.Kind) == d.Kind && p.Name == d.Name)
			}
			if !known {
				views = append(views, PinView{App: a.Name, Kind: d.Kind, Name: d.Name, Status: "declared", SHA256: d.SHA256})
			}
		}
	}
	return views
}

func writePinJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writePinError(w http.ResponseWriter, status int, message string) {
	writePinJSON(w, status, map[string]string{"error": message})
}
