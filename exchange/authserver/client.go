package authserver

import (
	"time"

	"github.com/ory/fosite"
)

// Token endpoint authentication methods (RFC 7591 §2).
const (
	authMethodNone   = "none"
	authMethodBasic  = "client_secret_basic"
	authMethodPost   = "client_secret_post"
	responseTypeCode = "code"
)

// client is a client as stored: from configuration or registered
// dynamically. Public clients have no secret hash. A registered client
// without Scopes or Audiences gets the server's, as they are at the time
// of the request, so that changing them in configuration reaches every
// registered client.
type client struct {
	ID           string   `json:"client_id"`
	SecretHash   []byte   `json:"secret_hash,omitempty"`
	Name         string   `json:"client_name,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	GrantTypes   []string `json:"grant_types"`
	Scopes       []string `json:"scopes,omitempty"`
	Audiences    []string `json:"audiences,omitempty"`
	// SubjectAudiences are the audiences of the subject tokens the client
	// may exchange; none means the server's audiences.
	SubjectAudiences []string `json:"subject_audiences,omitempty"`
	Groups           []string `json:"groups,omitempty"`
	SkipConsent      bool     `json:"skip_consent,omitempty"`
	// Introspect lets a configured client call the introspection endpoint.
	Introspect bool `json:"introspect,omitempty"`
	// AuthMethod is the token_endpoint_auth_method it registered with.
	AuthMethod string `json:"token_endpoint_auth_method"`
	// Registered marks clients from dynamic registration; the others come
	// from configuration and are rewritten on every start.
	Registered bool      `json:"registered,omitempty"`
	IssuedAt   time.Time `json:"issued_at"`
	// UnusedUntil is when a registered client that no token was issued to
	// is deleted; the first token issued to it clears it. Zero: kept.
	UnusedUntil time.Time `json:"unused_until,omitzero"`

	// The server's defaults, filled in when the client is loaded.
	defaultScopes    []string
	defaultAudiences []string
	// documentHost is the host of the client_id URL of a client described
	// by its metadata document, never stored; empty for the others.
	documentHost string
}

var (
	_ fosite.Client             = (*client)(nil)
	_ fosite.ResponseModeClient = (*client)(nil)
)

// unused reports whether c is a registered client that no token was
// issued to before its time ran out at now.
func (c *client) unused(now time.Time) bool {
	return c.Registered && !c.UnusedUntil.IsZero() && !now.Before(c.UnusedUntil)
}

func (c *client) GetID() string             { return c.ID }
func (c *client) GetHashedSecret() []byte   { return c.SecretHash }
func (c *client) GetRedirectURIs() []string { return c.RedirectURIs }
func (c *client) IsPublic() bool            { return len(c.SecretHash) == 0 }

func (c *client) GetGrantTypes() fosite.Arguments { return c.GrantTypes }

func (c *client) GetResponseTypes() fosite.Arguments {
	if !fosite.Arguments(c.GrantTypes).Has(GrantAuthorizationCode) {
		return nil
	}
	return fosite.Arguments{responseTypeCode}
}

// GetScopes are the scopes the client may ask the user for. A client
// that registered itself asked for its scope, but anyone may register
// asking for every scope, so what it registered does not bound what it
// may ask for later: a resource server's step-up challenge can name a
// scope it did not know of (the user's consent decides). Configured
// clients keep their configured scopes.
func (c *client) GetScopes() fosite.Arguments {
	if c.Scopes == nil || c.Registered {
		return c.defaultScopes
	}
	return c.Scopes
}

func (c *client) GetAudience() fosite.Arguments {
	if c.Audiences == nil {
		return c.defaultAudiences
	}
	return c.Audiences
}

// GetResponseModes lets a request name response_mode=query, the only mode
// served.
func (c *client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeQuery}
}

// displayName is what the login and consent pages call the client. A
// client described by a metadata document names itself, so its host, the
// one thing about it that is verified, goes with its name.
func (c *client) displayName() string {
	switch {
	case c.documentHost != "" && c.Name != "":
		return c.Name + " (" + c.documentHost + ")"
	case c.documentHost != "":
		return c.documentHost
	case c.Name != "":
		return c.Name
	}
	return c.ID
}
