package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// instrumentationName names the broker's tracer.
const instrumentationName = "github.com/mcpbroker/mcpbroker"

// defaultServiceName is the service.name of the broker's spans unless the
// options or OTEL_SERVICE_NAME say otherwise.
const defaultServiceName = "mcpbroker"

// TraceOptions says where and how the broker exports traces.
type TraceOptions struct {
	// Endpoint is the OTLP/HTTP collector: a URL ("https://collector:4318",
	// to which /v1/traces is added when it has no path) or host:port,
	// spoken to over TLS unless Insecure is set. Empty leaves it to the
	// standard OTEL_EXPORTER_OTLP_* variables; when none names an endpoint
	// (and OTEL_TRACES_EXPORTER is not "otlp"), tracing is off.
	Endpoint string
	// Insecure sends to a host:port Endpoint over plain HTTP.
	Insecure bool
	// SampleRatio is the share of traces started by the broker that are
	// recorded, between 0 and 1; a client's sampling decision is followed.
	// 0 leaves it to OTEL_TRACES_SAMPLER, whose default records every trace.
	SampleRatio float64
	// ServiceName is the service.name of the spans; empty means
	// OTEL_SERVICE_NAME, or "mcpbroker".
	ServiceName string
	// Headers are sent with every export, such as a collector's API key;
	// nil leaves them to OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string
}

// Tracing is the broker's tracer and its W3C trace context propagation.
// When tracing is off, spans cost next to nothing: Tracer starts none, and
// a client's trace context is still passed on to the upstreams. A nil
// *Tracing is off.
type Tracing struct {
	provider *sdktrace.TracerProvider // nil when off
	tracer   trace.Tracer
}

// propagator reads and writes traceparent and tracestate.
var propagator = propagation.TraceContext{}

// ErrTraceOptions is wrapped by the errors of NewTracing about options.
var ErrTraceOptions = errors.New("telemetry: trace options")

// NewTracing starts the export of traces as the options and the OTEL_*
// environment say, or returns a Tracing that is off.
func NewTracing(ctx context.Context, o TraceOptions) (*Tracing, error) {
	if !tracingOn(o) {
		return &Tracing{tracer: offTracer{}}, nil
	}
	if math.IsNaN(o.SampleRatio) || o.SampleRatio < 0 || o.SampleRatio > 1 {
		return nil, fmt.Errorf("%w: sample ratio %v is not between 0 and 1", ErrTraceOptions, o.SampleRatio)
	}
	exportOptions, err := exportOptions(o)
	if err != nil {
		return nil, err
	}
	exporter, err := otlptracehttp.New(ctx, exportOptions...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: trace exporter: %w", err)
	}
	res, err := newResource(ctx, o.ServiceName)
	if err != nil {
		return nil, err
	}
	providerOptions := []sdktrace.TracerProviderOption{
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
	}
	if o.SampleRatio > 0 {
		providerOptions = append(providerOptions,
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SampleRatio))))
	}
	provider := sdktrace.NewTracerProvider(providerOptions...)
	return &Tracing{provider: provider, tracer: provider.Tracer(instrumentationName)}, nil
}

// tracingOn reports whether traces are to be exported: an endpoint in the
// options, or in the environment, unless the environment turns the SDK or
// the trace exporter off.
func tracingOn(o TraceOptions) bool {
	if o.Endpoint != "" {
		return true
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// exportOptions are the exporter's options from o; what o leaves empty the
// exporter reads from the environment.
func exportOptions(o TraceOptions) ([]otlptracehttp.Option, error) {
	if protocol := tracesProtocol(); protocol != "" && protocol != "http/protobuf" {
		return nil, fmt.Errorf("%w: OTLP protocol %q is not supported; use http/protobuf", ErrTraceOptions, protocol)
	}
	var opts []otlptracehttp.Option
	if o.Endpoint != "" {
		if strings.Contains(o.Endpoint, "://") {
			u, err := url.Parse(o.Endpoint)
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return nil, fmt.Errorf("%w: endpoint %q is not an http or https URL", ErrTraceOptions, o.Endpoint)
			}
			if u.Path == "" || u.Path == "/" {
				u.Path = "/v1/traces"
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
		} else {
			opts = append(opts, otlptracehttp.WithEndpoint(o.Endpoint))
			if o.Insecure {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
	}
	if o.Headers != nil {
		opts = append(opts, otlptracehttp.WithHeaders(o.Headers))
	}
	return opts, nil
}

func tracesProtocol() string {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(name)); v != "" {
			return v
		}
	}
	return ""
}

// newResource describes the broker's process: service.name from the
// options over OTEL_SERVICE_NAME over the default, the attributes of
// OTEL_RESOURCE_ATTRIBUTES, and the SDK's.
func newResource(ctx context.Context, serviceName string) (*resource.Resource, error) {
	opts := []resource.Option{resource.WithTelemetrySDK()}
	if serviceName == "" {
		opts = append(opts, resource.WithAttributes(attribute.String("service.name", defaultServiceName)), resource.WithFromEnv())
	} else {
		opts = append(opts, resource.WithFromEnv(), resource.WithAttributes(attribute.String("service.name", serviceName)))
	}
	res, err := resource.New(ctx, opts...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: trace resource: %w", err)
	}
	return res, nil
}

// Tracer starts the broker's spans. Callers should build attributes only
// when span.IsRecording(), which is false when tracing is off.
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return offTracer{}
	}
	return t.tracer
}

// Shutdown exports the spans that have ended and not yet been sent, then
// stops the export. It returns when ctx is done, at the latest.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: trace shutdown: %w", err)
	}
	return nil
}

// Extract returns ctx with the trace context of a client's request, from
// its traceparent and tracestate headers, so that the broker's spans
// continue the client's trace.
func (t *Tracing) Extract(ctx context.Context, h http.Header) context.Context {
	if len(h.Values("Traceparent")) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// Inject writes the trace context of ctx to the headers of a request to an
// upstream.
func (t *Tracing) Inject(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// InjectMeta writes the trace context of ctx to an MCP params._meta object,
// under the "traceparent" and "tracestate" keys MCP reserves for it, for
// the upstreams that read it there (stdio ones have no headers).
func (t *Tracing) InjectMeta(ctx context.Context, meta map[string]any) {
	if meta == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, metaCarrier(meta))
}

// ExtractMeta returns ctx with the trace context of a client's message
// from its params._meta object, for clients that put it there rather than
// in headers (stdio bridges do).
func (t *Tracing) ExtractMeta(ctx context.Context, meta map[string]any) context.Context {
	if _, ok := meta["traceparent"].(string); !ok {
		return ctx
	}
	return propagator.Extract(ctx, metaCarrier(meta))
}

// TraceID returns the hex trace id of the span in ctx, or "" when there is
// none; the broker's logs and audit records carry it.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// metaCarrier is an MCP _meta object as a carrier of trace context.
type metaCarrier map[string]any

func (m metaCarrier) Get(key string) string {
	s, _ := m[key].(string)
	return s
}

func (m metaCarrier) Set(key, value string) { m[key] = value }

func (m metaCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// offTracer is the tracer when tracing is off. It starts no span: the span
// of ctx stays current, so a client's trace context is passed on as it
// came, and starting and ending spans allocates nothing.
type offTracer struct{ noop.Tracer }

func (offTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		// Another tracer's span: whoever ends this one must not end it.
		span = inertSpan
	}
	return ctx, span
}

var inertSpan trace.Span = noop.Span{}
