package provider

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// ResourceMetadata configures the Protected Resource Metadata documents
// (RFC 9728) that tell clients which authorization servers issue tokens
// for the broker.
type ResourceMetadata struct {
	// Path is the well-known prefix, "/.well-known/oauth-protected-resource".
	Path string
	// Resource overrides the resource identifier of the Streamable HTTP
	// endpoint, for a broker behind a proxy that changes scheme or host.
	Resource string
	// AuthorizationServers lists the issuers; asked on every request so
	// discovery can update it.
	AuthorizationServers func() []string
	ScopesSupported      []string
}

// endpoints are the MCP endpoint paths the provider serves.
func (p *Provider) endpoints() []string {
	var out []string
	if p.opts.StreamEnabled {
		out = append(out, p.opts.StreamPath)
	}
	if p.opts.SSEEnabled {
		out = append(out, p.opts.SSEPath, p.opts.MessagePath)
	}
	return out
}

// registerResourceMetadata serves the document at the path-inserted URL of
// each endpoint and, for the primary endpoint, at the root.
func (p *Provider) registerResourceMetadata(mux *http.ServeMux) {
	m := p.opts.ResourceMetadata
	if m == nil {
		return
	}
	prefix := strings.TrimSuffix(m.Path, "/")
	endpoints := p.endpoints()
	for _, endpoint := range endpoints {
		mux.Handle(prefix+endpoint, p.resourceMetadataHandler(endpoint))
	}
	if len(endpoints) > 0 {
		mux.Handle(prefix, p.resourceMetadataHandler(endpoints[0]))
	}
}

// origin is the scheme and host a client used, or those of the configured
// resource.
func (p *Provider) origin(r *http.Request) string {
	if m := p.opts.ResourceMetadata; m != nil && m.Resource != "" {
		if u, err := url.Parse(m.Resource); err == nil {
			return u.Scheme + "://" + u.Host
		}
	}
	scheme := "http"
	if r.TLS != nil || r.URL.Scheme == "https" {
		// r.URL.Scheme of a server request is set only from a trusted
		// proxy's forwarded scheme.
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// resourceFor is the resource identifier of an endpoint: byte for byte the
// URL a client uses to reach it.
func (p *Provider) resourceFor(r *http.Request, endpoint string) string {
	if m := p.opts.ResourceMetadata; m != nil && m.Resource != "" && endpoint == p.opts.StreamPath {
		return m.Resource
	}
	return p.origin(r) + endpoint
}

// ResourceMetadataURL is the metadata document for the endpoint a request
// went to, for WWW-Authenticate challenges.
func (p *Provider) ResourceMetadataURL(r *http.Request) string {
	m := p.opts.ResourceMetadata
	if m == nil {
		return ""
	}
	endpoint := r.URL.Path
	if endpoint == p.opts.MessagePath && p.opts.SSEEnabled {
		endpoint = p.opts.SSEPath
	}
	return p.origin(r) + strings.TrimSuffix(m.Path, "/") + endpoint
}

func (p *Provider) resourceMetadataHandler(endpoint string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := p.guard.check(r); err != nil {
			writeHTTPError(w, err)
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			writeHTTPError(w, httpError(http.StatusMethodNotAllowed, -32000, "method not allowed"))
			return
		}
		m := p.opts.ResourceMetadata
		doc := struct {
			Resource               string   `json:"resource"`
			AuthorizationServers   []string `json:"authorization_servers"`
			BearerMethodsSupported []string `json:"bearer_methods_supported"`
			ScopesSupported        []string `json:"scopes_supported,omitempty"`
			ResourceName           string   `json:"resource_name,omitempty"`
		}{
			Resource:               p.resourceFor(r, endpoint),
			AuthorizationServers:   m.AuthorizationServers(),
			BearerMethodsSupported: []string{"header"},
			ScopesSupported:        m.ScopesSupported,
			ResourceName:           "mcpbroker",
		}
		body, _ := json.Marshal(doc)
		w.Header().Set("Cache-Control", "max-age=300")
		// Browser-based clients read this document cross-origin.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		writeJSON(w, http.StatusOK, body)
	})
}
