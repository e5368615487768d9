package authserver

import "net/http"

// serveJWKS publishes the public signing keys, active and retired. Keys
// rotate, so caches keep them only briefly; verifiers fetch again when
// they meet an unknown kid.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, s.keys.JWKS())
}
