package telemetry

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP/HTTP trace collector in the test process.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string
	paths    []string
	headers  []http.Header
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var export coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &export); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.paths = append(r.paths, req.URL.Path)
	r.headers = append(r.headers, req.Header.Clone())
	for _, rs := range export.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				r.services = append(r.services, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *receiver) received() map[string]*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	byName := make(map[string]*tracepb.Span)
	for _, s := range r.spans {
		byName[s.GetName()] = s
	}
	return byName
}

// clearOTELEnv takes the OTEL_* variables of the test's environment out of
// its way for the test's duration.
func clearOTELEnv(t testing.TB) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "OTEL_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

func TestSpanTreeArrivesWithTheInjectedTraceID(t *testing.T) {
	clearOTELEnv(t)
	rcv := newReceiver(t)
	ctx := context.Background()
	tr, err := NewTracing(ctx, TraceOptions{Endpoint: rcv.URL, ServiceName: "broker-under-test", Headers: map[string]string{"X-Api-Key": "k"}})
	if err != nil {
		t.Fatal(err)
	}

	callCtx, call := tr.Tracer().Start(ctx, "mcp.call")
	_, authorize := tr.Tracer().Start(callCtx, "authorize")
	authorize.End()
	forwardCtx, forward := tr.Tracer().Start(callCtx, "forward")
	upstream := http.Header{}
	tr.Inject(forwardCtx, upstream)
	meta := map[string]any{"progressToken": 1}
	tr.InjectMeta(forwardCtx, meta)
	forward.End()
	call.End()

	traceparent := upstream.Get("Traceparent")
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || parts[0] != "00" || parts[3] != "01" {
		t.Fatalf("traceparent %q", traceparent)
	}
	if meta["traceparent"] != traceparent || meta["progressToken"] != 1 {
		t.Errorf("_meta: %v, want traceparent %q beside what was there", meta, traceparent)
	}
	if got := TraceID(forwardCtx); got != parts[1] {
		t.Errorf("TraceID %q, traceparent's %q", got, parts[1])
	}

	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Shutdown returned: every ended span has been exported.
	spans := rcv.received()
	if len(spans) != 3 {
		t.Fatalf("received %d spans, want 3: %v", len(spans), spans)
	}
	root := spans["mcp.call"]
	if root == nil || len(root.GetParentSpanId()) != 0 {
		t.Fatalf("mcp.call: %v, want a root span", root)
	}
	for _, name := range []string{"mcp.call", "authorize", "forward"} {
		s := spans[name]
		if got := hex.EncodeToString(s.GetTraceId()); got != parts[1] {
			t.Errorf("%s: trace id %s, traceparent's %s", name, got, parts[1])
		}
		if name != "mcp.call" && string(s.GetParentSpanId()) != string(root.GetSpanId()) {
			t.Errorf("%s: parent %x, want mcp.call's %x", name, s.GetParentSpanId(), root.GetSpanId())
		}
	}
	if got := hex.EncodeToString(spans["forward"].GetSpanId()); got != parts[2] {
		t.Errorf("traceparent names span %s, want the forward span %s", parts[2], got)
	}
	if rcv.services[0] != "broker-under-test" || rcv.paths[0] != "/v1/traces" || rcv.headers[0].Get("X-Api-Key") != "k" {
		t.Errorf("service %q, path %q, api key %q", rcv.services[0], rcv.paths[0], rcv.headers[0].Get("X-Api-Key"))
	}
}

func TestExtractContinuesTheClientsTrace(t *testing.T) {
	clearOTELEnv(t)
	const (
		clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan  = "00f067aa0ba902b7"
	)
	tests := []struct {
		name    string
		extract func(*Tracing, context.Context) context.Context
	}{
		{"headers", func(tr *Tracing, ctx context.Context) context.Context {
			h := http.Header{}
			h.Set("Traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
			h.Set("Tracestate", "vendor=x")
			return tr.Extract(ctx, h)
		}},
		{"_meta", func(tr *Tracing, ctx context.Context) context.Context {
			meta := map[string]any{"traceparent": "00-" + clientTrace + "-" + clientSpan + "-01", "tracestate": "vendor=x"}
			return tr.ExtractMeta(ctx, meta)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t)
			tr, err := NewTracing(context.Background(), TraceOptions{Endpoint: rcv.URL})
			if err != nil {
				t.Fatal(err)
			}
			ctx, call := tr.Tracer().Start(tt.extract(tr, context.Background()), "mcp.call")
			if got := TraceID(ctx); got != clientTrace {
				t.Errorf("TraceID %q, want the client's %q", got, clientTrace)
			}
			upstream := http.Header{}
			tr.Inject(ctx, upstream)
			call.End()
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}

			if got := upstream.Get("Tracestate"); got != "vendor=x" {
				t.Errorf("tracestate to the upstream %q, want the client's", got)
			}
			s := rcv.received()["mcp.call"]
			if s == nil {
				t.Fatal("mcp.call was not exported")
			}
			if got := hex.EncodeToString(s.GetTraceId()); got != clientTrace {
				t.Errorf("trace id %s, want the client's %s", got, clientTrace)
			}
			if got := hex.EncodeToString(s.GetParentSpanId()); got != clientSpan {
				t.Errorf("parent %s, want the client's span %s", got, clientSpan)
			}
			if rcv.services[0] != defaultServiceName {
				t.Errorf("service %q, want %q", rcv.services[0], defaultServiceName)
			}
		})
	}
}

func TestTracingOff(t *testing.T) {
	clearOTELEnv(t)
	for _, tr := range []*Tracing{mustTracing(t, TraceOptions{}), nil} {
		ctx, span := tr.Tracer().Start(context.Background(), "mcp.call")
		if span.IsRecording() || TraceID(ctx) != "" {
			t.Errorf("tracing off, yet a span was started: %v", span.SpanContext())
		}
		h := http.Header{}
		tr.Inject(ctx, h)
		if len(h) != 0 {
			t.Errorf("tracing off, no client trace, yet headers were written: %v", h)
		}

		// A client's trace context still goes on to the upstream.
		client := http.Header{}
		client.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		ctx, span = tr.Tracer().Start(tr.Extract(context.Background(), client), "mcp.call")
		span.End()
		h = http.Header{}
		tr.Inject(ctx, h)
		if got := h.Get("Traceparent"); got != client.Get("Traceparent") {
			t.Errorf("traceparent to the upstream %q, want the client's %q", got, client.Get("Traceparent"))
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

func TestTracingFromEnvironment(t *testing.T) {
	rcv := newReceiver(t)
	tests := []struct {
		name   string
		env    map[string]string
		wantOn bool
	}{
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rcv.URL + "/v1/traces"}, true},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL, "OTEL_TRACES_EXPORTER": "none"}, false},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL, "OTEL_SDK_DISABLED": "true"}, false},
		{"nothing", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTELEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			before := len(rcv.received())
			tr := mustTracing(t, TraceOptions{})
			_, span := tr.Tracer().Start(context.Background(), "mcp.call "+tt.name)
			span.End()
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if on := span.IsRecording() || len(rcv.received()) > before; on != tt.wantOn {
				t.Errorf("tracing on: %v, want %v", on, tt.wantOn)
			}
			if _, got := rcv.received()["mcp.call "+tt.name]; got != tt.wantOn {
				t.Errorf("span exported: %v, want %v", got, tt.wantOn)
			}
		})
	}
}

func TestTraceOptionsRefused(t *testing.T) {
	tests := []struct {
		name string
		o    TraceOptions
		env  map[string]string
	}{
		{"ratio above 1", TraceOptions{Endpoint: "collector:4318", SampleRatio: 1.5}, nil},
		{"negative ratio", TraceOptions{Endpoint: "collector:4318", SampleRatio: -0.1}, nil},
		{"not http", TraceOptions{Endpoint: "ftp://collector:4318"}, nil},
		{"no host", TraceOptions{Endpoint: "http:///v1/traces"}, nil},
		{"grpc", TraceOptions{Endpoint: "collector:4317"}, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTELEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if _, err := NewTracing(context.Background(), tt.o); !errors.Is(err, ErrTraceOptions) {
				t.Errorf("got %v, want ErrTraceOptions", err)
			}
		})
	}
}

func TestSampleRatioFollowsTheClient(t *testing.T) {
	clearOTELEnv(t)
	rcv := newReceiver(t)
	tr := mustTracing(t, TraceOptions{Endpoint: rcv.URL, SampleRatio: 0.000001})
	h := http.Header{}
	h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	_, sampled := tr.Tracer().Start(tr.Extract(context.Background(), h), "sampled by the client")
	sampled.End()
	h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	_, unsampled := tr.Tracer().Start(tr.Extract(context.Background(), h), "not sampled by the client")
	unsampled.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := rcv.received()
	if got["sampled by the client"] == nil || got["not sampled by the client"] != nil {
		t.Errorf("exported %v, want only the span the client sampled", got)
	}
}

func mustTracing(t testing.TB, o TraceOptions) *Tracing {
	t.Helper()
	tr, err := NewTracing(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
