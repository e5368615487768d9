package telemetry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches the metrics as Prometheus does and parses them.
func scrape(t testing.TB, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("scrape: parse: %v", err)
	}
	return families
}

// sample is the metric of family name whose labels are exactly labels
// ("name=value" pairs), or nil.
func sample(families map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
	want := strings.Join(sorted(labels), ",")
	for _, m := range f.Metric {
		var got []string
		for _, l := range m.Label {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(sorted(got), ",") == want {
			return m
		}
	}
	return nil
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// value is the value of a counter or gauge sample, or the count of a
// histogram's; -1 when the sample is missing.
func value(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := sample(families, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

// seriesCount is the number of samples of the broker's own families.
func seriesCount(families map[string]*dto.MetricFamily) int {
	n := 0
	for name, f := range families {
		if strings.HasPrefix(name, "mcpbroker_") {
			n += len(f.Metric)
		}
	}
	return n
}

func TestMetricsRecordWhatTheBrokerReports(t *testing.T) {
	m := NewMetrics()
	m.Call("files", "read_file", "tools/call", DecisionAllowed, 0.2)
	m.Call("files", "read_file", "tools/call", DecisionAllowed, 0.3)
	m.Call("files", "", "tools/list", DecisionDenied, 0.01)
	m.Call("", "", "not/a/method", "maybe", 0.1)
	m.Stage("authorize", 0.001)
	m.Stage("authorize", 0.002)
	m.Stage("forward", 0.1)
	m.Upstream("files", 0.05, false)
	m.Upstream("files", 0.3, true)
	m.TokenVerification(TokenValid, true)
	m.TokenVerification(TokenInvalid, false)
	m.TokenVerification("forged", false)
	m.Exchange("files", ExchangeIssued)
	m.Exchange("files", ExchangeNoToken)
	m.Exchange("git", "whatever")
	m.PolicyEvaluation("main", PolicyAllowed, 0.0002)
	m.PolicyEvaluation("main", PolicyDenied, 0.0003)
	m.PolicyReload(ReloadApplied)
	m.PolicyReload(ReloadRejected)
	m.PolicyReload(ReloadRejected)
	m.SessionOpened()
	m.SessionOpened()
	m.SessionOpened()
	m.SessionClosed()
	m.UpstreamUp("files", true)
	m.UpstreamUp("git", true)
	m.UpstreamUp("git", false)
	m.AuditWrite(10, 5*time.Millisecond, nil)
	m.AuditWrite(3, 0, errors.New("disk full"))
	m.AuditQueue(func() int { return 7 })
	m.AuditDropped()
	m.AuditDropped()
	m.AuthEvent("sign_in_failed")
	m.AuthEvent("token_issued")
	m.AuthEvent("token_issued")
	m.Refusal(401)
	m.Refusal(429)
	m.Refusal(418)

	f := scrape(t, m)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"mcpbroker_calls_total", []string{"app=files", "tool=read_file", "method=tools/call", "decision=allowed"}, 2},
		{"mcpbroker_calls_total", []string{"app=files", "tool=", "method=tools/list", "decision=denied"}, 1},
		{"mcpbroker_calls_total", []string{"app=", "tool=", "method=other", "decision=other"}, 1},
		{"mcpbroker_call_duration_seconds", []string{"app=files", "method=tools/call"}, 2},
		{"mcpbroker_call_duration_seconds", []string{"app=files", "method=tools/list"}, 1},
		{"mcpbroker_stage_duration_seconds", []string{"stage=authorize"}, 2},
		{"mcpbroker_stage_duration_seconds", []string{"stage=forward"}, 1},
		{"mcpbroker_upstream_duration_seconds", []string{"app=files"}, 2},
		{"mcpbroker_upstream_errors_total", []string{"app=files"}, 1},
		{"mcpbroker_token_verifications_total", []string{"result=valid", "cached=true"}, 1},
		{"mcpbroker_token_verifications_total", []string{"result=valid", "cached=false"}, 0},
		{"mcpbroker_token_verifications_total", []string{"result=invalid", "cached=false"}, 1},
		{"mcpbroker_token_verifications_total", []string{"result=other", "cached=false"}, 1},
		{"mcpbroker_token_verifications_total", []string{"result=missing", "cached=false"}, 0},
		{"mcpbroker_token_exchanges_total", []string{"app=files", "outcome=issued"}, 1},
		{"mcpbroker_token_exchanges_total", []string{"app=files", "outcome=no_token"}, 1},
		{"mcpbroker_token_exchanges_total", []string{"app=git", "outcome=other"}, 1},
		{"mcpbroker_policy_evaluations_total", []string{"policy=main", "outcome=allowed"}, 1},
		{"mcpbroker_policy_evaluations_total", []string{"policy=main", "outcome=denied"}, 1},
		{"mcpbroker_policy_evaluation_duration_seconds", []string{"policy=main"}, 2},
		{"mcpbroker_config_reloads_total", []string{"outcome=applied"}, 1},
		{"mcpbroker_config_reloads_total", []string{"outcome=rejected"}, 2},
		{"mcpbroker_sessions_open", nil, 2},
		{"mcpbroker_upstream_up", []string{"app=files"}, 1},
		{"mcpbroker_upstream_up", []string{"app=git"}, 0},
		{"mcpbroker_audit_batch_records", nil, 1},
		{"mcpbroker_audit_fsync_seconds", nil, 1},
		{"mcpbroker_audit_write_failures_total", nil, 1},
		{"mcpbroker_audit_queue_depth", nil, 7},
		{"mcpbroker_audit_records_unwritten_total", nil, 2},
		{"mcpbroker_auth_events_total", []string{"event=sign_in_failed"}, 1},
		{"mcpbroker_auth_events_total", []string{"event=token_issued"}, 2},
		{"mcpbroker_http_refusals_total", []string{"status=401"}, 1},
		{"mcpbroker_http_refusals_total", []string{"status=429"}, 1},
		{"mcpbroker_http_refusals_total", []string{"status=other"}, 1},
		{"mcpbroker_http_refusals_total", []string{"status=403"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name+"{"+strings.Join(tt.labels, ",")+"}", func(t *testing.T) {
			if got := value(f, tt.name, tt.labels...); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	if got := sample(f, "mcpbroker_call_duration_seconds", "app=files", "method=tools/call").Histogram.GetSampleSum(); got != 0.5 {
		t.Errorf("call duration sum: got %v, want 0.5", got)
	}
	if got := sample(f, "mcpbroker_audit_batch_records").Histogram.GetSampleSum(); got != 10 {
		t.Errorf("audit batch sum: got %v, want 10 (a failed write is not a batch)", got)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "promhttp_metric_handler_requests_total"} {
		if _, ok := f[name]; !ok && (name != "process_cpu_seconds_total" || processMetricsAvailable()) {
			t.Errorf("family %s missing", name)
		}
	}

	m.AuditQueue(nil)
	if got := value(scrape(t, m), "mcpbroker_audit_queue_depth"); got != 0 {
		t.Errorf("queue depth without a source: got %v, want 0", got)
	}
}

// processMetricsAvailable reports whether the process collector can read
// this platform's process statistics.
func processMetricsAvailable() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// TestMetricsAreDocumented keeps doc.go's list whole: every family the
// broker registers is named there, with its labels on the same line.
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	m := NewMetrics()
	m.Call("a", "t", "tools/call", DecisionAllowed, 1)
	m.Stage("s", 1)
	m.Upstream("a", 1, true)
	m.Exchange("a", ExchangeIssued)
	m.PolicyEvaluation("p", PolicyAllowed, 1)
	m.UpstreamUp("a", true)
	m.AuthEvent("e")
	m.ListCache("a", "hit")
	m.ListChanged("a", "tools")
	m.PinEvent("a", "tool", "changed")
	m.ValidationFailure("a", "arguments")
	m.Redacted("a", "email", "mask", 1)
	families := scrape(t, m)
	for _, name := range regexp.MustCompile(`mcpbroker_[a-z_]+`).FindAllString(string(doc), -1) {
		if families[name] == nil {
			t.Errorf("doc.go lists %s, which the broker does not register", name)
		}
	}
	for name, f := range families {
		if !strings.HasPrefix(name, "mcpbroker_") {
			continue
		}
		line := ""
		for _, l := range lines {
			if strings.Contains(l, name+"{") || strings.Contains(l, name+" ") {
				line = l
				break
			}
		}
		if line == "" {
			t.Errorf("%s is not listed in doc.go", name)
			continue
		}
		for _, l := range f.Metric[0].Label {
			if !strings.Contains(line, l.GetName()) {
				t.Errorf("doc.go lists %s without its label %s: %q", name, l.GetName(), line)
			}
		}
	}
}

// TestHostileLabelValuesDoNotCreateSeries: what clients send (method names)
// never becomes a label value, and names that are not printable UTF-8
// never reach the registry, which would refuse them.
func TestHostileLabelValuesDoNotCreateSeries(t *testing.T) {
	m := NewMetrics()
	m.Call("files", "read_file", "other", DecisionAllowed, 0.1)
	before := seriesCount(scrape(t, m))

	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 10000 {
		method := fmt.Sprintf("tools/%d/%x", i, rng.Uint64())
		m.Call("files", "read_file", method, DecisionAllowed, 0.1)
	}
	f := scrape(t, m)
	if after := seriesCount(f); after != before {
		t.Errorf("series: %d before, %d after 10,000 distinct method names", before, after)
	}
	if got := value(f, "mcpbroker_calls_total", "app=files", "tool=read_file", "method=other", "decision=allowed"); got != 10001 {
		t.Errorf("calls counted as other: got %v, want 10001", got)
	}

	for _, name := range []string{"\xff\xfe", "tab\there", strings.Repeat("a", maxLabelLength+1)} {
		m.Call(name, name, "tools/call", DecisionAllowed, 0.1)
		m.Stage(name, 0.1)
		m.Upstream(name, 0.1, true)
		m.UpstreamUp(name, true)
		m.Exchange(name, name)
		m.PolicyEvaluation(name, name, 0.1)
		m.AuthEvent(name)
	}
	f = scrape(t, m)
	if got := value(f, "mcpbroker_calls_total", "app=other", "tool=other", "method=tools/call", "decision=allowed"); got != 3 {
		t.Errorf("calls with unprintable names: got %v, want 3 under other", got)
	}
	if got := value(f, "mcpbroker_stage_duration_seconds", "stage=other"); got != 3 {
		t.Errorf("stages with unprintable names: got %v, want 3 under other", got)
	}
	if got := value(f, "mcpbroker_policy_evaluations_total", "policy=other", "outcome=other"); got != 3 {
		t.Errorf("policies with unprintable names: got %v, want 3 under other", got)
	}
}

// TestCatalogueNamesAreBounded: an upstream that lists tools without end
// cannot make the broker hold series without end.
func TestCatalogueNamesAreBounded(t *testing.T) {
	m := NewMetrics()
	n := maxCallSeries + 500
	for i := range n {
		m.Call("files", fmt.Sprintf("tool_%d", i), "tools/call", DecisionAllowed, 0.1)
	}
	for i := range maxNames + 5 {
		m.AuthEvent(fmt.Sprintf("event_%d", i))
	}
	f := scrape(t, m)
	if got := len(f["mcpbroker_calls_total"].Metric); got != maxCallSeries+1 {
		t.Errorf("call series: got %d, want %d and one for other", got, maxCallSeries)
	}
	if got := value(f, "mcpbroker_calls_total", "app=other", "tool=other", "method=tools/call", "decision=allowed"); got != 500 {
		t.Errorf("calls past the bound: got %v, want 500 under other", got)
	}
	if got := value(f, "mcpbroker_auth_events_total", "event=other"); got != 5 {
		t.Errorf("auth events past the bound: got %v, want 5 under other", got)
	}
}

func TestMetricsConcurrentUpdates(t *testing.T) {
	m := NewMetrics()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				m.Call("files", fmt.Sprintf("t%d", i%10), "tools/call", DecisionAllowed, 0.01)
				m.Stage("forward", 0.01)
				m.AuthEvent(fmt.Sprintf("e%d", g))
			}
		})
	}
	wg.Wait()
	f := scrape(t, m)
	total := 0.0
	for _, s := range f["mcpbroker_calls_total"].Metric {
		total += s.Counter.GetValue()
	}
	if total != 8000 {
		t.Errorf("calls: got %v, want 8000", total)
	}
	if got := value(f, "mcpbroker_stage_duration_seconds", "stage=forward"); got != 8000 {
		t.Errorf("stage observations: got %v, want 8000", got)
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Call("a", "t", "tools/call", DecisionAllowed, 1)
	m.Stage("s", 1)
	m.Upstream("a", 1, true)
	m.TokenVerification(TokenValid, false)
	m.Exchange("a", ExchangeIssued)
	m.PolicyEvaluation("p", PolicyAllowed, 1)
	m.PolicyReload(ReloadApplied)
	m.SessionOpened()
	m.SessionClosed()
	m.UpstreamUp("a", true)
	m.AuditWrite(1, 0, nil)
	m.AuditQueue(func() int { return 1 })
	m.AuditDropped()
	m.AuthEvent("e")
	m.Refusal(401)
	if m.Registry() != nil {
		t.Error("a nil Metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Metrics handler: status %d, want 404", rec.Code)
	}
}

// TestRegistriesAreSeparate: two brokers in one process (tests, reloads)
// do not share or collide on metrics.
func TestRegistriesAreSeparate(t *testing.T) {
	a, b := NewMetrics(), NewMetrics()
	a.Refusal(401)
	if got := value(scrape(t, b), "mcpbroker_http_refusals_total", "status=401"); got != 0 {
		t.Errorf("second registry counted the first one's refusal: %v", got)
	}
	if got := value(scrape(t, a), "mcpbroker_http_refusals_total", "status=401"); got != 1 {
		t.Errorf("first registry: got %v, want 1", got)
	}
}

// FuzzMetricLabels: whatever names reach the metrics, the registry accepts
// them and the exposition stays parseable.
func FuzzMetricLabels(f *testing.F) {
	f.Add("files", "read_file", "tools/call", "allowed", "forward")
	f.Add("\xff", "\x00", "", "\n", "{}\"")
	f.Fuzz(func(t *testing.T, app, tool, method, decision, stage string) {
		m := NewMetrics()
		m.Call(app, tool, method, decision, 0.1)
		m.Stage(stage, 0.1)
		m.Exchange(app, decision)
		m.PolicyEvaluation(stage, decision, 0.1)
		m.AuthEvent(stage)
		m.Upstream(app, 0.1, true)
		m.UpstreamUp(app, true)
		scrape(t, m)
	})
}
