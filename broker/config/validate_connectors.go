package config

import (
	"fmt"
	"net/url"
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
	}
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
