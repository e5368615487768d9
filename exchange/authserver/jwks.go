package authserver

import "net/http"

// serveJWKS publishes the public signing keys, active and retired. Keys
// rotate, so caches keep them only briefly; verifiers fetch again when
// they meet an unknown kid. Where brokers share the keys, they are read
// again first unless that was done a moment ago: a verifier that met the
// kid of a key another broker just made must find it here.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	s.keys.ReloadIfStale(r.Context())
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, s.keys.JWKS())
}
