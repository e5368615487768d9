package telemetry

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// How many distinct label values, or combinations of them, a metric admits
// from configuration and the catalogue before it counts the rest as Other.
// They are far above what a deployment lists and bound what an upstream
// that lists tools without end can make the broker hold.
const (
	maxCallSeries   = 8192 // app, tool, method, decision
	maxApps         = 1024
	maxNames        = 64 // stages, auth events
	maxPolicySeries = 256
)

// Histogram buckets, in seconds or records.
var (
	callBuckets   = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	stageBuckets  = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	policyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}
	fsyncBuckets  = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	batchBuckets  = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}
)

// Metrics holds every metric of the broker in its own registry, with the
// Go runtime and process collectors. Its methods may be called on a nil
// *Metrics, which records nothing. doc.go lists the metrics.
type Metrics struct {
	registry *prometheus.Registry
	handler  http.Handler

	calls         *family[callSeries]
	stages        *family[prometheus.Observer]
	upstreams     *family[upstreamSeries]
	upstreamUp    *family[prometheus.Gauge]
	exchanges     *family[prometheus.Counter]
	policies      *family[policySeries]
	authEvents    *family[prometheus.Counter]
	verifications [][2]prometheus.Counter // by result index, then cached
	reloads       []prometheus.Counter    // by reloadOutcomes index
	refusals      map[int]prometheus.Counter
	handoffs      map[string]prometheus.Counter
	sessionCaps   map[string]prometheus.Counter
	heldCalls     map[string]prometheus.Counter
	approvals     map[string]prometheus.Counter
	historyFails  map[string]prometheus.Counter
	listCache     *family[prometheus.Counter]
	listChanges   *family[prometheus.Counter]
	pins          *family[prometheus.Counter]
	validations   *family[prometheus.Counter]
	redactions    *family[prometheus.Counter]
	otherRefusal  prometheus.Counter

	sessionsOpen       prometheus.Gauge
	auditBatch         prometheus.Observer
	auditFsync         prometheus.Observer
	auditWriteFailures prometheus.Counter
	auditUnwritten     prometheus.Counter
	auditDepth         atomic.Pointer[func() int]
	stdioProcesses     atomic.Pointer[func() map[string]int]
	stdioEvents        *family[prometheus.Counter]
}

type callSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

type upstreamSeries struct {
	duration prometheus.Observer
	errors   prometheus.Counter
}

type policySeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// NewMetrics registers the broker's metrics in a new registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{registry: r}
	f := factory{r}

	calls := f.counterVec("mcpbroker_calls_total",
		"Client messages served, by app, tool, MCP method and decision.", "app", "tool", "method", "decision")
	callDuration := f.histogramVec("mcpbroker_call_duration_seconds",
		"Time from receiving a client message to its reply, by app and MCP method.", callBuckets, "app", "method")
	m.calls = newFamily(maxCallSeries, []int{0, 1}, func(k labelKey) callSeries {
		return callSeries{
			count:    calls.WithLabelValues(k[0], k[1], k[2], k[3]),
			duration: callDuration.WithLabelValues(k[0], k[2]),
		}
	})

	stages := f.histogramVec("mcpbroker_stage_duration_seconds",
		"Time spent in each stage of the request pipeline.", stageBuckets, "stage")
	m.stages = newFamily(maxNames, []int{0}, func(k labelKey) prometheus.Observer {
		return stages.WithLabelValues(k[0])
	})

	upstreamDuration := f.histogramVec("mcpbroker_upstream_duration_seconds",
		"Time an upstream MCP server took to answer, by app.", callBuckets, "app")
	upstreamErrors := f.counterVec("mcpbroker_upstream_errors_total",
		"Requests to an upstream MCP server that failed without an answer, by app.", "app")
	m.upstreams = newFamily(maxApps, []int{0}, func(k labelKey) upstreamSeries {
		return upstreamSeries{
			duration: upstreamDuration.WithLabelValues(k[0]),
			errors:   upstreamErrors.WithLabelValues(k[0]),
		}
	})
	upstreamUp := f.gaugeVec("mcpbroker_upstream_up",
		"Whether the broker holds a working connection to the app's upstream (1) or not (0).", "app")
	m.upstreamUp = newFamily(maxApps, []int{0}, func(k labelKey) prometheus.Gauge {
		return upstreamUp.WithLabelValues(k[0])
	})

	verifications := f.counterVec("mcpbroker_token_verifications_total",
		"Client tokens verified, by result and whether the result came from the cache.", "result", "cached")
	m.verifications = make([][2]prometheus.Counter, len(verificationResults))
	for i, result := range verificationResults {
		m.verifications[i] = [2]prometheus.Counter{
			verifications.WithLabelValues(result, "false"),
			verifications.WithLabelValues(result, "true"),
		}
	}

	exchanges := f.counterVec("mcpbroker_token_exchanges_total",
		"Tokens asked for an upstream, by app and outcome.", "app", "outcome")
	m.exchanges = newFamily(maxApps*4, []int{0}, func(k labelKey) prometheus.Counter {
		return exchanges.WithLabelValues(k[0], k[1])
	})

	policyCount := f.counterVec("mcpbroker_policy_evaluations_total",
		"Policy evaluations, by policy and outcome.", "policy", "outcome")
	policyDuration := f.histogramVec("mcpbroker_policy_evaluation_duration_seconds",
		"Time a policy evaluation took, by policy.", policyBuckets, "policy")
	m.policies = newFamily(maxPolicySeries, []int{0}, func(k labelKey) policySeries {
		return policySeries{
			count:    policyCount.WithLabelValues(k[0], k[1]),
			duration: policyDuration.WithLabelValues(k[0]),
		}
	})

	reloads := f.counterVec("mcpbroker_config_reloads_total",
		"Configuration and policy reloads, by outcome.", "outcome")
	m.reloads = make([]prometheus.Counter, len(reloadOutcomes))
	for i, outcome := range reloadOutcomes {
		m.reloads[i] = reloads.WithLabelValues(outcome)
	}

	authEvents := f.counterVec("mcpbroker_auth_events_total",
		"Events of the embedded authorization server (sign-ins, tokens issued, ...).", "event")
	m.authEvents = newFamily(maxNames, []int{0}, func(k labelKey) prometheus.Counter {
		return authEvents.WithLabelValues(k[0])
	})

	handoffs := f.counterVec("mcpbroker_replica_handoffs_total",
		"What replicas sharing sessions hand each other, by event: "+strings.Join(HandoffEvents, ", ")+".", "event")
	m.handoffs = make(map[string]prometheus.Counter, len(HandoffEvents))
	for _, event := range HandoffEvents {
		m.handoffs[event] = handoffs.WithLabelValues(event)
	}

	sessionCaps := f.counterVec("mcpbroker_sessions_refused_total",
		"Sessions refused for a cap, by cap: total, subject or address.", "cap")
	m.sessionCaps = map[string]prometheus.Counter{}
	for _, c := range []string{"total", "subject", "address"} {
		m.sessionCaps[c] = sessionCaps.WithLabelValues(c)
	}

	held := f.counterVec("mcpbroker_held_calls_total",
		"Calls of clients without sessions (2026-07-28) held for their answers to an upstream's questions, by event: "+strings.Join(HeldEvents, ", ")+".", "event")
	m.heldCalls = make(map[string]prometheus.Counter, len(HeldEvents))
	for _, event := range HeldEvents {
		m.heldCalls[event] = held.WithLabelValues(event)
	}

	approvals := f.counterVec("mcpbroker_approvals_total",
		"Calls that needed a person's approval, by what the broker did: "+strings.Join(ApprovalEvents, ", ")+". The approval page's steps are auth events (approval.*).", "event")
	m.approvals = make(map[string]prometheus.Counter, len(ApprovalEvents))
	for _, event := range ApprovalEvents {
		m.approvals[event] = approvals.WithLabelValues(event)
	}
	historyFails := f.counterVec("mcpbroker_session_history_failures_total",
		"Session history reads and writes that failed (the calls were refused), by operation: read, write.", "op")
	m.historyFails = map[string]prometheus.Counter{"read": historyFails.WithLabelValues("read"), "write": historyFails.WithLabelValues("write")}

	listCache := f.counterVec("mcpbroker_list_cache_total",
		"Pages of apps' lists a listing needed, by app and where they came from: hit (the cache), miss (the upstream), joined (another listing's request to the upstream), disabled (the upstream; the app keeps no cache).", "app", "outcome")
	m.listCache = newFamily(maxApps*4, []int{0}, func(k labelKey) prometheus.Counter {
		return listCache.WithLabelValues(k[0], k[1])
	})
	listChanges := f.counterVec("mcpbroker_list_changes_total",
		"Lists an app's upstream said changed (notifications/*/list_changed), by app and list: its kept pages are dropped.", "app", "list")
	m.listChanges = newFamily(maxApps*4, []int{0}, func(k labelKey) prometheus.Counter {
		return listChanges.WithLabelValues(k[0], k[1])
	})

	pins := f.counterVec("mcpbroker_pin_events_total",
		"Definitions tool pinning did not take as pinned, by app, kind (tool, prompt, resourceTemplate) and status: changed (differs from its pin), held (new, waiting for approval), unclean (invisible or control characters, or too large), pinned (new, pinned at first sight), approved and revoked (by an operator).", "app", "kind", "status")
	m.pins = newFamily(maxApps*12, []int{0}, func(k labelKey) prometheus.Counter {
		return pins.WithLabelValues(k[0], k[1], k[2])
	})
	stdioEvents := f.counterVec("mcpbroker_stdio_process_events_total",
		"Server processes of stdio apps, by app and event: started, crashed (ended without being asked), stopped (by session end, idle timeout, reload or shutdown), refused (maxProcesses reached).", "app", "event")
	m.stdioEvents = newFamily(maxApps*4, []int{0}, func(k labelKey) prometheus.Counter {
		return stdioEvents.WithLabelValues(k[0], k[1])
	})
	r.MustRegister(&processGauge{m: m, desc: prometheus.NewDesc("mcpbroker_stdio_processes",
		"Server processes running for each stdio app.", []string{"app"}, nil)})
	validations := f.counterVec("mcpbroker_validation_failures_total",
		"tools/call the broker answered with an isError result because they did not fit the tool's schema, by app and what: arguments (inputSchema or argument limits) or result (structuredContent against outputSchema).", "app", "what")
	m.validations = newFamily(maxApps*2, []int{0}, func(k labelKey) prometheus.Counter {
		return validations.WithLabelValues(k[0], k[1])
	})
	redactions := f.counterVec("mcpbroker_redactions_total",
		"Findings of redaction in results, by app, detector and action (mask, block, audit).", "app", "detector", "action")
	m.redactions = newFamily(maxApps*16, []int{0}, func(k labelKey) prometheus.Counter {
		return redactions.WithLabelValues(k[0], k[1], k[2])
	})

	refusals := f.counterVec("mcpbroker_http_refusals_total",
		"Client requests refused with an HTTP error status, by status.", "status")
	m.refusals = make(map[int]prometheus.Counter, len(refusalStatuses))
	for _, status := range refusalStatuses {
		m.refusals[status] = refusals.WithLabelValues(strconv.Itoa(status))
	}
	m.otherRefusal = refusals.WithLabelValues(Other)

	m.sessionsOpen = f.gauge("mcpbroker_sessions_open", "Client sessions open.")
	m.auditBatch = f.histogram("mcpbroker_audit_batch_records",
		"Audit records written together in one batch.", batchBuckets)
	m.auditFsync = f.histogram("mcpbroker_audit_fsync_seconds",
		"Time to write an audit batch and sync it to storage.", fsyncBuckets)
	m.auditWriteFailures = f.counter("mcpbroker_audit_write_failures_total",
		"Audit batches that could not be written.")
	m.auditUnwritten = f.counter("mcpbroker_audit_records_unwritten_total",
		"Audit records lost to a failed write while calls went on being served (onFailure: continue).")
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mcpbroker_audit_queue_depth",
		Help: "Audit records waiting to be written.",
	}, func() float64 {
		if depth := m.auditDepth.Load(); depth != nil {
			return float64((*depth)())
		}
		return 0
	}))

	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.handler = promhttp.InstrumentMetricHandler(r, promhttp.HandlerFor(r, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Registry is the registry the metrics live in, for collectors that other
// parts of the broker register.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.registry
}

// Call counts one client message and its time to reply. app and tool are
// names from the catalogue ("" where the message names none); method is the
// MCP method, counted as Other when MCP does not define it; decision is one
// of the Decision constants.
func (m *Metrics) Call(app, tool, method, decision string, seconds float64) {
	if m == nil {
		return
	}
	s := m.calls.get(labelKey{app, tool, methodLabel(method), decisionLabel(decision)})
	s.count.Inc()
	s.duration.Observe(seconds)
}

// Stage records the time one pipeline stage took.
func (m *Metrics) Stage(stage string, seconds float64) {
	if m == nil {
		return
	}
	m.stages.get(labelKey{stage}).Observe(seconds)
}

// StageTimer is the observer of one stage's time, for a caller that
// records the same stage on every call and would rather not look it up
// each time.
func (m *Metrics) StageTimer(stage string) func(seconds float64) {
	if m == nil {
		return func(float64) {}
	}
	return m.stages.get(labelKey{stage}).Observe
}

// Upstream records one request to an app's upstream: its time, and
// whether it failed without an answer.
func (m *Metrics) Upstream(app string, seconds float64, err bool) {
	if m == nil {
		return
	}
	s := m.upstreams.get(labelKey{app})
	s.duration.Observe(seconds)
	if err {
		s.errors.Inc()
	}
}

// TokenVerification counts one verification of a client's token; result
// is one of the Token constants.
func (m *Metrics) TokenVerification(result string, cached bool) {
	if m == nil {
		return
	}
	c := 0
	if cached {
		c = 1
	}
	m.verifications[indexOf(verificationResults, result)][c].Inc()
}

// Exchange counts one token asked for an app's upstream; outcome is one of
// the Exchange constants.
func (m *Metrics) Exchange(app, outcome string) {
	if m == nil {
		return
	}
	m.exchanges.get(labelKey{app, exchangeLabel(outcome)}).Inc()
}

// PolicyEvaluation counts one evaluation of a configured policy and its
// time; outcome is one of the Policy constants.
func (m *Metrics) PolicyEvaluation(policy, outcome string, seconds float64) {
	if m == nil {
		return
	}
	s := m.policies.get(labelKey{policy, policyOutcomeLabel(outcome)})
	s.count.Inc()
	s.duration.Observe(seconds)
}

// PolicyReload counts one reload of the configuration and its policies;
// outcome is ReloadApplied or ReloadRejected.
func (m *Metrics) PolicyReload(outcome string) {
	if m == nil {
		return
	}
	m.reloads[indexOf(reloadOutcomes, outcome)].Inc()
}

// SessionOpened and SessionClosed keep the count of open client sessions.
func (m *Metrics) SessionOpened() {
	if m == nil {
		return
	}
	m.sessionsOpen.Inc()
}

// SessionClosed: see SessionOpened.
func (m *Metrics) SessionClosed() {
	if m == nil {
		return
	}
	m.sessionsOpen.Dec()
}

// StdioProcessEvent counts a stdio app's process event.
func (m *Metrics) StdioProcessEvent(app, event string) {
	if m == nil {
		return
	}
	m.stdioEvents.get(labelKey{app, event}).Inc()
}

// SetStdioProcesses names the function that counts the running processes
// of each stdio app; nil stops reporting.
func (m *Metrics) SetStdioProcesses(count func() map[string]int) {
	if m == nil {
		return
	}
	if count == nil {
		m.stdioProcesses.Store(nil)
		return
	}
	m.stdioProcesses.Store(&count)
}

// processGauge reports mcpbroker_stdio_processes when scraped.
type processGauge struct {
	m    *Metrics
	desc *prometheus.Desc
}

func (g *processGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *processGauge) Collect(ch chan<- prometheus.Metric) {
	count := g.m.stdioProcesses.Load()
	if count == nil {
		return
	}
	for app, n := range (*count)() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(n), app)
	}
}

// UpstreamUp records whether the broker holds a working connection to the
// app's upstream.
func (m *Metrics) UpstreamUp(app string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.upstreamUp.get(labelKey{app}).Set(v)
}

// AuditWrite records one batch of audit records: its size and the time to
// write and sync it when it was written, a failure when err is not nil.
func (m *Metrics) AuditWrite(batch int, fsync time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.auditWriteFailures.Inc()
		return
	}
	m.auditBatch.Observe(float64(batch))
	m.auditFsync.Observe(fsync.Seconds())
}

// AuditQueue makes depth the source of the audit queue depth gauge; a later
// call replaces the earlier source, and nil makes the gauge read 0.
func (m *Metrics) AuditQueue(depth func() int) {
	if m == nil {
		return
	}
	if depth == nil {
		m.auditDepth.Store(nil)
		return
	}
	m.auditDepth.Store(&depth)
}

// AuditDropped counts one audit record that was not written while the
// broker went on serving.
func (m *Metrics) AuditDropped() {
	if m == nil {
		return
	}
	m.auditUnwritten.Inc()
}

// AuthEvent counts one event of the embedded authorization server. event
// is one of a fixed set of names the broker defines, such as
// "sign_in_succeeded" or "token_issued".
func (m *Metrics) AuthEvent(event string) {
	if m == nil {
		return
	}
	m.authEvents.get(labelKey{event}).Inc()
}

// ApprovalEvents are what the broker does with a call that needs approval:
// required (held, the client pointed to the approval page), used (an
// approval let it through), denied (the approver said no), too_many (the
// user has as many waiting as allowed).
var ApprovalEvents = []string{"required", "used", "denied", "too_many"}

// Approval counts one approval event; other names are not counted.
func (m *Metrics) Approval(event string) {
	if m == nil {
		return
	}
	if c, ok := m.approvals[event]; ok {
		c.Inc()
	}
}

// HistoryFailure counts a failed read or write of a session's history.
func (m *Metrics) HistoryFailure(op string) {
	if m == nil {
		return
	}
	if c, ok := m.historyFails[op]; ok {
		c.Inc()
	}
}

// HeldEvents are what happens to held calls: held (the client was asked),
// resumed (its next round came), refused (a bound was reached), expired
// (the client did not come back), cancelled (the client closed the
// request), unknown (a requestState that names no held call).
var HeldEvents = []string{"held", "resumed", "refused", "expired", "cancelled", "unknown"}

// HeldCall counts one event of a held call; other names are not counted.
func (m *Metrics) HeldCall(event string) {
	if m == nil {
		return
	}
	if c, ok := m.heldCalls[event]; ok {
		c.Inc()
	}
}

// SessionRefused counts one session refused for a cap ("total",
// "subject" or "address"); other names are not counted.
func (m *Metrics) SessionRefused(cap string) {
	if m == nil {
		return
	}
	if c, ok := m.sessionCaps[cap]; ok {
		c.Inc()
	}
}

// ListCache counts one page of an app's list a listing needed, by where
// it came from (apps.ListHit and the other outcomes).
func (m *Metrics) ListCache(app, outcome string) {
	if m == nil {
		return
	}
	m.listCache.get(labelKey{app, outcome}).Inc()
}

// PinEvent counts a definition tool pinning did not take as pinned, or an
// operator's approval or revocation.
func (m *Metrics) PinEvent(app, kind, status string) {
	if m == nil {
		return
	}
	m.pins.get(labelKey{app, kind, status}).Inc()
}

// ValidationFailure counts a call answered as not fitting its tool's
// schema; what is "arguments" or "result".
func (m *Metrics) ValidationFailure(app, what string) {
	if m == nil {
		return
	}
	m.validations.get(labelKey{app, what}).Inc()
}

// Redacted counts n findings of detector in one app's result, and what
// was done about them.
func (m *Metrics) Redacted(app, detector, action string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.redactions.get(labelKey{app, detector, action}).Add(float64(n))
}

// ListChanged counts one list_changed an app's upstream sent; list is
// "tools", "prompts" or "resources".
func (m *Metrics) ListChanged(app, list string) {
	if m == nil {
		return
	}
	m.listChanges.get(labelKey{app, list}).Inc()
}

// HandoffEvents are the events of Handoff, as the provider names them.
var HandoffEvents = []string{"relayed", "relay_failed", "delivered", "dropped", "copied_out", "copy_failed", "resumed_elsewhere", "resume_not_found"}

// Handoff counts one thing replicas sharing sessions hand each other;
// events outside HandoffEvents are not counted.
func (m *Metrics) Handoff(event string) {
	if m == nil {
		return
	}
	if c, ok := m.handoffs[event]; ok {
		c.Inc()
	}
}

// Refusal counts one client request refused with an HTTP error status.
// Statuses the broker does not refuse with are counted as Other.
func (m *Metrics) Refusal(status int) {
	if m == nil {
		return
	}
	if c, ok := m.refusals[status]; ok {
		c.Inc()
		return
	}
	m.otherRefusal.Inc()
}

// factory creates metrics registered in one registry.
type factory struct{ r *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.r.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.r.MustRegister(h)
	return h
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(v)
	return v
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(v)
	return v
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.r.MustRegister(v)
	return v
}
