package config

import (
	"fmt"
	"net/url"
	"strings"
)

func (v *validator) connectors(connectors []Connector) {
	firstByName := map[string]int{}
	for i, connector := range connectors {
		path := index("connectors", i)
		switch first, duplicate := firstByName[connector.Name]; {
		case connector.Name == "":
			v.add(field(path, "name"), "must not be empty")
		case connector.Name == EmbeddedIdentityProvider:
			v.add(field(path, "name"), `"embedded" is reserved for the embedded authorization server (authProvider)`)
		case duplicate:
			v.add(field(path, "name"), fmt.Sprintf("duplicate name %s, also used by connectors[%d]", quote(connector.Name), first))
		default:
			firstByName[connector.Name] = i
		}
		switch connector.Type {
		case "oidc":
		case "":
			v.add(field(path, "type"), `required, want "oidc"`)
		default:
			v.add(field(path, "type"), fmt.Sprintf(`unknown type %s, want "oidc"`, quote(connector.Type)))
		}
		if message := endpointProblem(connector.OIDCWellKnownURL); message != "" {
			v.add(field(path, "oidcWellKnownURL"), message)
		}
		if connector.OAuthClientID == "" {
			v.add(field(path, "oauthClientID"), "required")
		}
		v.redirects(field(path, "oauthLoginRedirect"), connector.OAuthLoginRedirect)
		v.redirects(field(path, "oauthLogoutRedirect"), connector.OAuthLogoutRedirect)
		if r := connector.OAuthLoginRedirect; r != nil && len(r.URLs) > 0 {
			if u, err := url.Parse(r.URLs[0]); err == nil && v.servedPath(u.Path) {
				v.add(index(field(field(path, "oauthLoginRedirect"), "urls"), 0), fmt.Sprintf("path %s is served by the MCP provider; choose another for the sign-in callback", quote(u.Path)))
			}
		}
		if ap := v.config.AuthProvider; connector.IDJAGIssuer && (ap == nil || !ap.Enabled) {
			v.add(field(path, "idJagIssuer"), "the Auth Provider takes the grants, and it is off: enable authProvider")
		}
		for i, scope := range connector.Scopes {
			if !isScopeToken(scope) {
				v.add(index(field(path, "scopes"), i), fmt.Sprintf("not a scope token (RFC 6749 §3.3): %s", quote(scope)))
			}
		}
		if t := connector.TLS; t != nil {
			if u, err := url.Parse(connector.OIDCWellKnownURL); err == nil {
				v.upstreamTLS(field(path, "tls"), t, u.Scheme)
			}
		}
	}
}

// servedPath reports whether the MCP provider serves path itself.
func (v *validator) servedPath(path string) bool {
	if strings.HasPrefix(path, "/.well-known/") {
		return true
	}
	t := v.config.MCPProvider.Transports
	if t.Stream != nil && t.Stream.Path == path {
		return true
	}
	return t.SSE != nil && (t.SSE.Path == path || t.SSE.MessagePath == path)
}

func (v *validator) redirects(path string, redirects *Redirects) {
	if redirects == nil {
		return
	}
	for i, raw := range redirects.URLs {
		parsed, err := url.Parse(raw)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			v.add(index(field(path, "urls"), i), fmt.Sprintf("want an absolute http or https URL, got %s", quote(raw)))
		}
	}
}
