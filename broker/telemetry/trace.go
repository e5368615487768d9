package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TraceOptions configures trace export.
type TraceOptions struct {
	Endpoint    string
	Insecure    bool
	SampleRatio float64
	ServiceName string
	Headers     map[string]string
}

// Tracing is the broker's tracer provider and propagator.
type Tracing struct{}

func NewTracing(ctx context.Context, o TraceOptions) (*Tracing, error) { return &Tracing{}, nil }
func (t *Tracing) Tracer() trace.Tracer                                { return noop.NewTracerProvider().Tracer("") }
func (t *Tracing) Shutdown(ctx context.Context) error                  { return nil }
func (t *Tracing) Extract(ctx context.Context, h http.Header) context.Context {
	return ctx
}
func (t *Tracing) Inject(ctx context.Context, h http.Header)           {}
func (t *Tracing) InjectMeta(ctx context.Context, meta map[string]any) {}
func TraceID(ctx context.Context) string                               { return "" }
