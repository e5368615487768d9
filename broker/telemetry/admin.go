package telemetry

import "net/http"

// AdminHandler serves the admin listener: /metrics (when m is not nil),
// /healthz and /readyz (when h is not nil), for GET and HEAD; every other
// path is not found, so the listener exposes nothing else by accident.
func AdminHandler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", http.NotFoundHandler())
	if m != nil {
		mux.Handle("/metrics", getOnly(m.Handler().ServeHTTP))
	}
	if h != nil {
		mux.Handle("/healthz", h.Live())
		mux.Handle("/readyz", h.Ready())
	}
	return mux
}
