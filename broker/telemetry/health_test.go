package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string) (int, readiness) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body readiness
	if ct := rec.Header().Get("Content-Type"); ct == "application/json" {
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("GET %s: body %q: %v", path, rec.Body, err)
		}
	}
	return rec.Code, body
}

func passing(context.Context) error { return nil }

func failing(err error) func(context.Context) error {
	return func(context.Context) error { return err }
}

func TestReadiness(t *testing.T) {
	refused := errors.New("dial tcp 10.0.0.7:5432: connect: connection refused")
	tests := []struct {
		name       string
		checks     []Check
		wantCode   int
		wantStatus string
		wantChecks map[string]checkResult
	}{
		{
			name:       "no checks",
			wantCode:   http.StatusOK,
			wantStatus: StatusReady,
		},
		{
			name:       "every check passes",
			checks:     []Check{{Name: "store", Run: passing, Required: true}, {Name: "upstream files", Run: passing}},
			wantCode:   http.StatusOK,
			wantStatus: StatusReady,
			wantChecks: map[string]checkResult{"store": {OK: true, Required: true}, "upstream files": {OK: true}},
		},
		{
			name:       "a check that is not required fails",
			checks:     []Check{{Name: "store", Run: passing, Required: true}, {Name: "upstream files", Run: failing(refused)}},
			wantCode:   http.StatusOK,
			wantStatus: StatusDegraded,
			wantChecks: map[string]checkResult{"store": {OK: true, Required: true}, "upstream files": {Error: refused.Error()}},
		},
		{
			name:       "a required check fails",
			checks:     []Check{{Name: "store", Run: failing(refused), Required: true}, {Name: "upstream files", Run: failing(refused)}},
			wantCode:   http.StatusServiceUnavailable,
			wantStatus: StatusNotReady,
			wantChecks: map[string]checkResult{"store": {Required: true, Error: refused.Error()}, "upstream files": {Error: refused.Error()}},
		},
		{
			name:       "a check panics",
			checks:     []Check{{Name: "store", Run: func(context.Context) error { panic("nil map") }, Required: true}},
			wantCode:   http.StatusServiceUnavailable,
			wantStatus: StatusNotReady,
			wantChecks: map[string]checkResult{"store": {Required: true, Error: "check panicked: nil map"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, NewHealth(tt.checks...).Ready(), "/readyz")
			if code != tt.wantCode || body.Status != tt.wantStatus {
				t.Errorf("got %d %q, want %d %q", code, body.Status, tt.wantCode, tt.wantStatus)
			}
			if len(body.Checks) != len(tt.wantChecks) {
				t.Errorf("checks: got %v, want %v", body.Checks, tt.wantChecks)
			}
			for name, want := range tt.wantChecks {
				if got := body.Checks[name]; got != want {
					t.Errorf("check %q: got %+v, want %+v", name, got, want)
				}
			}
		})
	}
}

func TestReadinessErrorTextHasNoSecrets(t *testing.T) {
	err := errors.New(`Get "https://broker:s3cret-pass@idp.example/keys?client_secret=s3cret-query": ` +
		`401 with Authorization: Bearer s3cret-bearer, token=s3cret-field and eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln; ` +
		strings.Repeat("and more ", 100))
	h := NewHealth(Check{Name: "keys", Run: failing(err), Required: true})
	code, body := get(t, h.Ready(), "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	text := body.Checks["keys"].Error
	if !strings.Contains(text, "https://idp.example/keys?redacted") || !strings.Contains(text, "401 with Authorization") {
		t.Errorf("the error's useful text is gone: %q", text)
	}
	if strings.Contains(text, "s3cret") || strings.Contains(text, "eyJ") {
		t.Errorf("secret in %q", text)
	}
	if len(text) > maxErrorText {
		t.Errorf("error text is %d bytes, more than %d", len(text), maxErrorText)
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"connection refused", "connection refused"},
		{"dial redis://:hunter2@cache:6379/0: timeout", "dial redis://cache:6379/0: timeout"},
		{"GET https://a.example/x?api_key=k&y=1#frag failed", "GET https://a.example/x?redacted failed"},
		{"header Authorization: Basic dXNlcjpwYXNz refused", "header Authorization: Basic [redacted] refused"},
		{"bad token eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. here", "bad token [redacted] here"},
		{`config {"password": "p4ss", "user": "u"}`, `config {"password": [redacted], "user": "u"}`},
		{"client_secret=abc123 rejected", "client_secret=[redacted] rejected"},
		{"line one\nline two\x00\xff", "line one line two  "},
		{strings.Repeat("é", 200), strings.Repeat("é", 126) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 20)], func(t *testing.T) {
			if got := errorText(errors.New(tt.in)); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestDraining(t *testing.T) {
	h := NewHealth(Check{Name: "store", Run: passing, Required: true})
	admin := AdminHandler(nil, h)
	h.SetDraining(true)
	if code, body := get(t, admin, "/readyz"); code != http.StatusServiceUnavailable || body.Status != StatusDraining {
		t.Errorf("draining: got %d %q, want 503 draining", code, body.Status)
	}
	if code, _ := get(t, admin, "/healthz"); code != http.StatusOK {
		t.Errorf("healthz while draining: got %d, want 200", code)
	}
	h.SetDraining(false)
	if code, body := get(t, admin, "/readyz"); code != http.StatusOK || body.Status != StatusReady {
		t.Errorf("after draining: got %d %q, want 200 ready", code, body.Status)
	}
}

// TestSlowCheckTimesOut: a check that waits for its context does not hold
// the request past the timeout; one that ignores it does not either, and
// is not started again while its run goes on.
func TestSlowCheckTimesOut(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var stubbornRuns atomic.Int32
	h := NewHealth(
		Check{Name: "waits", Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, Required: true},
		Check{Name: "ignores", Run: func(context.Context) error { stubbornRuns.Add(1); <-release; return nil }},
	)
	h.timeout = 20 * time.Millisecond
	h.maxAge = 0

	code, body := get(t, h.Ready(), "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", code)
	}
	for _, name := range []string{"waits", "ignores"} {
		if got := body.Checks[name]; got.OK || !strings.Contains(got.Error, "no answer within 20ms") {
			t.Errorf("check %q: got %+v, want a timeout", name, got)
		}
	}

	_, body = get(t, h.Ready(), "/readyz")
	if got := body.Checks["ignores"].Error; got != errStillRunning.Error() {
		t.Errorf("second run: got %q, want %q", got, errStillRunning)
	}
	if n := stubbornRuns.Load(); n != 1 {
		t.Errorf("the check that ignores its context ran %d times, want 1", n)
	}
}

// countingCheck counts its runs and waits for release before answering.
func countingCheck(calls *atomic.Int32, release <-chan struct{}) Check {
	return Check{Name: "upstream", Required: true, Run: func(ctx context.Context) error {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}}
}

// TestConcurrentScrapesShareOneRun: requests that come while checks run
// wait for that run rather than starting their own.
func TestConcurrentScrapesShareOneRun(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	h := NewHealth(countingCheck(&calls, release))
	h.maxAge = 0 // every request after a run ends starts a new one

	const requests = 10
	codes := make(chan int, requests)
	var wg sync.WaitGroup
	wg.Go(func() { code, _ := get(t, h.Ready(), "/readyz"); codes <- code })
	for calls.Load() == 0 {
		runtime.Gosched()
	}
	for range requests - 1 {
		wg.Go(func() { code, _ := get(t, h.Ready(), "/readyz"); codes <- code })
	}
	// Were a request to start a run of its own, the check would count it,
	// or it would answer before the run under way ends.
	for h.waiting.Load() < requests-1 && calls.Load() == 1 && len(codes) == 0 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("status %d, want 200", code)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("check ran %d times for %d concurrent requests, want 1", n, requests)
	}

	get(t, h.Ready(), "/readyz")
	if n := calls.Load(); n != 2 {
		t.Errorf("check ran %d times after a later request with no cached result, want 2", n)
	}
}

// TestScrapesWithinMaxAgeRunChecksOnce: many scrapes, concurrent or not,
// within one period run each check once.
func TestScrapesWithinMaxAgeRunChecksOnce(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	close(release)
	h := NewHealth(countingCheck(&calls, release))
	h.maxAge = time.Hour

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if code, _ := get(t, h.Ready(), "/readyz"); code != http.StatusOK {
				t.Errorf("status %d, want 200", code)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("check ran %d times for 50 requests within one period, want 1", n)
	}

	h.Add(Check{Name: "store", Run: passing})
	if _, body := get(t, h.Ready(), "/readyz"); len(body.Checks) != 2 {
		t.Errorf("after Add: checks %v, want both", body.Checks)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("after Add the checks ran %d times in all, want 2", n)
	}
}

func TestReadyAnswersWhenTheClientLeaves(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	h := NewHealth(countingCheck(&calls, release))
	first := make(chan struct{})
	go func() { defer close(first); get(t, h.Ready(), "/readyz") }() // runs the checks
	for calls.Load() == 0 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Ready().ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(ctx, http.MethodGet, "/readyz", nil))
	}()
	for h.waiting.Load() == 0 {
		runtime.Gosched()
	}
	cancel()
	<-done // the waiting request returned although the run goes on
	close(release)
	<-first
}

func TestAdminHandler(t *testing.T) {
	m := NewMetrics()
	m.Refusal(401)
	admin := AdminHandler(m, NewHealth())
	tests := []struct {
		method, path string
		wantCode     int
		wantBody     string
	}{
		{http.MethodGet, "/metrics", http.StatusOK, `mcpbroker_http_refusals_total{status="401"} 1`},
		{http.MethodHead, "/metrics", http.StatusOK, ""},
		{http.MethodGet, "/healthz", http.StatusOK, `{"status":"ok"}`},
		{http.MethodGet, "/readyz", http.StatusOK, `{"status":"ready"}`},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "/readyz", http.StatusMethodNotAllowed, ""},
		{http.MethodDelete, "/healthz", http.StatusMethodNotAllowed, ""},
		{http.MethodGet, "/", http.StatusNotFound, ""},
		{http.MethodGet, "/metrics/", http.StatusNotFound, ""},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			admin.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode {
				t.Errorf("status %d, want %d", rec.Code, tt.wantCode)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body lacks %q:\n%.300s", tt.wantBody, rec.Body)
			}
		})
	}

	rec := httptest.NewRecorder()
	AdminHandler(nil, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("without metrics: /metrics status %d, want 404", rec.Code)
	}
}

func TestAddRefusesMistakes(t *testing.T) {
	tests := []struct {
		name   string
		checks []Check
	}{
		{"no name", []Check{{Run: passing}}},
		{"no run", []Check{{Name: "store"}}},
		{"two with one name", []Check{{Name: "store", Run: passing}, {Name: "store", Run: passing}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			NewHealth(tt.checks...)
		})
	}
}
