package oauth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

const (
	wellKnownOAuth = "/.well-known/oauth-authorization-server"
	wellKnownOIDC  = "/.well-known/openid-configuration"
)

// IssuerFromMetadataURL returns the issuer a metadata URL belongs to:
//
//	https://as/.well-known/oauth-authorization-server/tenant  → https://as/tenant  (RFC 8414 §3.1, insertion)
//	https://as/.well-known/openid-configuration/tenant        → https://as/tenant  (insertion, as MCP clients try)
//	https://as/tenant/.well-known/openid-configuration        → https://as/tenant  (OIDC Discovery §4, suffix)
//
// Both specifications strip a terminating "/" from the issuer before
// building the URL, so the document's issuer may be the derived value or
// the derived value plus "/"; issuerMatches decides.
func IssuerFromMetadataURL(metadataURL string) (string, error) {
	if err := CheckURL(metadataURL); err != nil {
		return "", err
	}
	u, err := url.Parse(metadataURL)
	if err != nil {
		return "", err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return "", errors.New("metadata url must not have a query")
	}
	path := u.EscapedPath()
	var issuerPath string
	switch {
	case path == wellKnownOAuth || strings.HasPrefix(path, wellKnownOAuth+"/"):
		issuerPath = strings.TrimPrefix(path, wellKnownOAuth)
	case strings.HasPrefix(path, wellKnownOIDC+"/"):
		issuerPath = strings.TrimPrefix(path, wellKnownOIDC)
	case strings.HasSuffix(path, wellKnownOIDC):
		issuerPath = strings.TrimSuffix(path, wellKnownOIDC)
	default:
		return "", fmt.Errorf("metadata url path must be %s[/path], %s[/path] or [/path]%s", wellKnownOAuth, wellKnownOIDC, wellKnownOIDC)
	}
	if strings.HasSuffix(issuerPath, "/") {
		return "", errors.New("metadata url must not leave a trailing slash on the issuer path")
	}
	return u.Scheme + "://" + u.Host + issuerPath, nil
}

// issuerMatches: RFC 8414 §3.3 and OIDC Discovery §4.3 require the
// document's issuer to be the one the URL was built from.
func issuerMatches(documentIssuer, derived string) bool {
	return documentIssuer == derived || documentIssuer == derived+"/"
}

// metadata is the part of an RFC 8414 / OIDC discovery document we use.
type metadata struct {
	Issuer                string
	JWKSURI               string
	IntrospectionEndpoint string
}

// parseMetadata decodes and checks a metadata document for a server.
func parseMetadata(body []byte, derivedIssuer, method string) (*metadata, error) {
	document, err := DecodeObject(body)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	var m metadata
	var ok bool
	if m.Issuer, ok = document["issuer"].(string); !ok || m.Issuer == "" {
		return nil, errors.New("metadata: issuer missing")
	}
	if !issuerMatches(m.Issuer, derivedIssuer) {
		return nil, fmt.Errorf("metadata: issuer %q does not match %q derived from the metadata url (RFC 8414 §3.3)", m.Issuer, derivedIssuer)
	}
	if v, present := document["jwks_uri"]; present {
		if m.JWKSURI, ok = v.(string); !ok {
			return nil, errors.New("metadata: jwks_uri is not a string")
		}
	}
	if v, present := document["introspection_endpoint"]; present {
		if m.IntrospectionEndpoint, ok = v.(string); !ok {
			return nil, errors.New("metadata: introspection_endpoint is not a string")
		}
	}
	switch method {
	case MethodJWT:
		if m.JWKSURI == "" {
			return nil, errors.New("metadata: jwks_uri is required for jwt validation")
		}
		if err := CheckURL(m.JWKSURI); err != nil {
			return nil, fmt.Errorf("metadata: jwks_uri: %w", err)
		}
	case MethodIntrospection:
		if m.IntrospectionEndpoint == "" {
			return nil, errors.New("metadata: introspection_endpoint is required for introspection")
		}
		if err := CheckURL(m.IntrospectionEndpoint); err != nil {
			return nil, fmt.Errorf("metadata: introspection_endpoint: %w", err)
		}
	}
	return &m, nil
}
