package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the readiness endpoint.
const (
	// checkTimeout bounds one run of every check; a check that has not
	// returned by then counts as failed.
	checkTimeout = 2 * time.Second
	// reportMaxAge is how long one run's results answer every request, so
	// that scraping /readyz cannot load the upstreams the checks reach.
	reportMaxAge = time.Second
)

// Check is one condition of readiness. Run reports a problem as an error
// whose text is shown on /readyz (shortened, with credentials taken out);
// it must return when its context is done. A check that is not Required
// makes the broker degraded, not unready, when it fails.
type Check struct {
	Name     string
	Run      func(ctx context.Context) error
	Required bool
}

// Health answers the admin listener's liveness and readiness endpoints.
type Health struct {
	draining atomic.Bool
	timeout  time.Duration
	maxAge   time.Duration

	mu      sync.Mutex
	checks  []*check
	last    *report       // nil until the first run, and after Add
	pending chan struct{} // closed when the run under way ends; nil when none is

	waiting atomic.Int32 // requests waiting for a run, for tests
}

type check struct {
	Check
	// running is held by a run of the check until Run returns, even past
	// the timeout, so a check that ignores its context is not started again
	// on top of itself.
	running atomic.Bool
}

// report is the answer of one run, encoded once for every request it
// answers.
type report struct {
	at     time.Time
	status int
	body   []byte
}

// readiness is the body of /readyz.
type readiness struct {
	Status string                 `json:"status"`
	Checks map[string]checkResult `json:"checks,omitempty"`
}

type checkResult struct {
	OK       bool   `json:"ok"`
	Required bool   `json:"required,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Readiness statuses.
const (
	StatusReady    = "ready"
	StatusDegraded = "degraded"
	StatusNotReady = "not_ready"
	StatusDraining = "draining"
)

// NewHealth returns the endpoints with the given checks.
func NewHealth(checks ...Check) *Health {
	h := &Health{timeout: checkTimeout, maxAge: reportMaxAge}
	for _, c := range checks {
		h.Add(c)
	}
	return h
}

// Add adds a check. A check without a name or a Run, or with the name of
// another, is a mistake of the program, and Add panics.
func (h *Health) Add(c Check) {
	if c.Name == "" || c.Run == nil {
		panic(fmt.Sprintf("telemetry: check %q needs a name and a Run", c.Name))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, other := range h.checks {
		if other.Name == c.Name {
			panic(fmt.Sprintf("telemetry: two checks are named %q", c.Name))
		}
	}
	h.checks = append(h.checks, &check{Check: c})
	h.last = nil
}

// SetDraining makes /readyz answer 503 "draining" while on, so that load
// balancers stop sending clients during a graceful shutdown.
func (h *Health) SetDraining(on bool) { h.draining.Store(on) }

var liveBody = []byte(`{"status":"ok"}` + "\n")

// Live serves /healthz: 200 while the process serves requests.
func (h *Health) Live() http.Handler {
	return getOnly(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, liveBody)
	})
}

var drainingBody = []byte(`{"status":"draining"}` + "\n")

// Ready serves /readyz: 200 "ready" when every check passes, 200
// "degraded" when only checks that are not required fail, 503 "not_ready"
// when a required one fails and 503 "draining" during shutdown; the body
// has each check's result.
func (h *Health) Ready() http.Handler {
	return getOnly(func(w http.ResponseWriter, r *http.Request) {
		if h.draining.Load() {
			writeJSON(w, http.StatusServiceUnavailable, drainingBody)
			return
		}
		rep := h.report(r.Context())
		if rep == nil {
			return // the client left before the run ended
		}
		writeJSON(w, rep.status, rep.body)
	})
}

// report returns the results of a run no older than maxAge: the last one,
// the one under way, or a new one. Every check therefore runs at most once
// in maxAge, however many requests come.
func (h *Health) report(ctx context.Context) *report {
	h.mu.Lock()
	if h.last != nil && time.Since(h.last.at) < h.maxAge {
		rep := h.last
		h.mu.Unlock()
		return rep
	}
	if done := h.pending; done != nil {
		h.mu.Unlock()
		h.waiting.Add(1)
		defer h.waiting.Add(-1)
		select {
		case <-done:
		case <-ctx.Done():
			return nil
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.last
	}
	done := make(chan struct{})
	h.pending = done
	checks := h.checks
	h.mu.Unlock()

	// The run answers the other requests too, so it does not end with this
	// one; the timeout bounds it.
	rep := run(context.WithoutCancel(ctx), checks, h.timeout)

	h.mu.Lock()
	h.last = rep
	h.pending = nil
	h.mu.Unlock()
	close(done)
	return rep
}

// run runs the checks in parallel and waits for each until timeout.
func run(ctx context.Context, checks []*check, timeout time.Duration) *report {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	type outcome struct {
		i   int
		err error
	}
	results := make([]error, len(checks))
	answered := make([]bool, len(checks))
	outcomes := make(chan outcome, len(checks)) // buffered: a late check never blocks
	waiting := 0
	for i, c := range checks {
		if !c.running.CompareAndSwap(false, true) {
			results[i], answered[i] = errStillRunning, true
			continue
		}
		waiting++
		go func() {
			defer c.running.Store(false)
			outcomes <- outcome{i, runCheck(ctx, c.Run)}
		}()
	}
wait:
	for waiting > 0 {
		select {
		case o := <-outcomes:
			results[o.i], answered[o.i] = o.err, true
			waiting--
		case <-ctx.Done():
			break wait
		}
	}

	body := readiness{Status: StatusReady, Checks: make(map[string]checkResult, len(checks))}
	status := http.StatusOK
	for i, c := range checks {
		err := results[i]
		if !answered[i] || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil) {
			err = fmt.Errorf("no answer within %s", timeout)
		}
		res := checkResult{OK: err == nil, Required: c.Required}
		if err != nil {
			res.Error = errorText(err)
			if c.Required {
				body.Status, status = StatusNotReady, http.StatusServiceUnavailable
			} else if body.Status == StatusReady {
				body.Status = StatusDegraded
			}
		}
		body.Checks[c.Name] = res
	}
	encoded, err := json.Marshal(body)
	if err != nil { // a map of strings and booleans always encodes
		panic(err)
	}
	return &report{at: time.Now(), status: status, body: append(encoded, '\n')}
}

var errStillRunning = errors.New("the previous run of this check has not returned")

// runCheck runs one check, turning a panic into its error.
func runCheck(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check panicked: %v", p)
		}
	}()
	return run(ctx)
}

// getOnly serves GET and HEAD with f and refuses other methods.
func getOnly(f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		f(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Results are the outcomes of a run no older than the cache's age, by
// check name: true when the check passed.
func (h *Health) Results(ctx context.Context) map[string]bool {
	rep := h.report(ctx)
	if rep == nil {
		return nil
	}
	var body readiness
	if json.Unmarshal(rep.body, &body) != nil {
		return nil
	}
	out := make(map[string]bool, len(body.Checks))
	for name, c := range body.Checks {
		out[name] = c.OK
	}
	return out
}

// ReplaceGroup replaces the checks whose names begin with prefix by
// checks, which must all begin with it: what a configuration reload does
// to the checks of the apps it replaced.
func (h *Health) ReplaceGroup(prefix string, checks []Check) {
	for _, c := range checks {
		if c.Name == "" || c.Run == nil || !strings.HasPrefix(c.Name, prefix) {
			panic(fmt.Sprintf("telemetry: check %q needs a name starting %q and a Run", c.Name, prefix))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	kept := h.checks[:0:0]
	for _, c := range h.checks {
		if !strings.HasPrefix(c.Name, prefix) {
			kept = append(kept, c)
		}
	}
	for _, c := range checks {
		kept = append(kept, &check{Check: c})
	}
	h.checks = kept
	h.last = nil
}
