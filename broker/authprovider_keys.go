package broker

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// Where the embedded Auth Provider publishes its keys, under the issuer's
// path: the paths its authorization server serves them at.
const (
	wellKnownAuthorizationServer = "/.well-known/oauth-authorization-server"
	jwksPath                     = "/jwks.json"
)

// publishKeys serves the Auth Provider's RFC 8414 metadata and JWKS on
// mux, so that upstreams can verify the tokens the broker mints for them.
// The metadata names the issuer and its keys.
func (p *authProvider) publishKeys(mux *http.ServeMux, issuer string) error {
	if p == nil {
		return nil
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(u.EscapedPath(), "/")
	metadata, err := json.Marshal(map[string]any{
		"issuer":   issuer,
		"jwks_uri": strings.TrimSuffix(issuer, "/") + jwksPath,
	})
	if err != nil {
		return err
	}
	mux.HandleFunc("GET "+wellKnownAuthorizationServer+base, func(w http.ResponseWriter, _ *http.Request) {
		writeDocument(w, metadata)
	})
	mux.HandleFunc("GET "+base+jwksPath, func(w http.ResponseWriter, _ *http.Request) {
		jwks, err := json.Marshal(p.keys.JWKS())
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		writeDocument(w, jwks)
	})
	return nil
}

func writeDocument(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(body)
}
