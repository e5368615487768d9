package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

func (v *validator) authProvider(provider *AuthProvider) {
	if provider == nil || !provider.Enabled {
		return
	}
	v.idJagIssuing("authProvider.idJag", provider.IDJAG)
	message := endpointProblem(provider.Issuer)
	if message == "" {
		if parsed, _ := url.Parse(provider.Issuer); parsed.RawQuery != "" || parsed.ForceQuery || parsed.Fragment != "" {
			message = "must not have a query or fragment"
		}
	}
	if message != "" {
		v.add("authProvider.issuer", message)
	}
	const path = "authProvider"
	for i, audience := range provider.Audiences {
		if message := absoluteURIProblem(audience); message != "" {
			v.add(index(field(path, "audiences"), i), message)
		}
	}
	supported := map[string]bool{}
	for i, scope := range provider.Scopes {
		if !isScopeToken(scope) {
			v.add(index(field(path, "scopes"), i), fmt.Sprintf("not a scope token (RFC 6749 §3.3): %s", quote(scope)))
		}
		supported[scope] = true
	}
	if provider.AccessTokenTTL < Duration(time.Second) || provider.AccessTokenTTL > maxToolTTL {
		v.add(field(path, "accessTokenTTL"), fmt.Sprintf("must be at least 1s and at most %s, got %s", maxToolTTL, provider.AccessTokenTTL))
	}
	if provider.ExchangeTTL < Duration(time.Second) || provider.ExchangeTTL > maxToolTTL {
		v.add(field(path, "exchangeTTL"), fmt.Sprintf("must be at least 1s and at most %s, got %s", maxToolTTL, provider.ExchangeTTL))
	}
	if provider.RefreshTokenTTL < provider.AccessTokenTTL {
		v.add(field(path, "refreshTokenTTL"), fmt.Sprintf("must be at least accessTokenTTL (%s), got %s", provider.AccessTokenTTL, provider.RefreshTokenTTL))
	}
	if provider.KeyRotation < Duration(time.Hour) {
		v.add(field(path, "keyRotation"), fmt.Sprintf("must be at least 1h, got %s", provider.KeyRotation))
	}
	switch provider.SigningAlgorithm {
	case "ES256", "EdDSA":
	default:
		v.add(field(path, "signingAlgorithm"), fmt.Sprintf(`want "ES256" or "EdDSA", got %s`, quote(provider.SigningAlgorithm)))
	}
	v.login(field(path, "login"), &provider.Login)
	v.providerClients(field(path, "clients"), provider.Clients, supported)
}

func (v *validator) login(path string, login *Login) {
	if len(login.Users) > 0 && login.Connector != "" {
		v.add(path, "set users or connector, not both")
	}
	if login.Connector != "" && v.config.Connector(login.Connector) == nil {
		v.add(field(path, "connector"), fmt.Sprintf("unknown connector %s", quote(login.Connector)))
	}
	seen := map[string]int{}
	var firstCost string
	var firstCostUser int
	for i, user := range login.Users {
		userPath := index(field(path, "users"), i)
		if user.Username == "" {
			v.add(field(userPath, "username"), "required")
		} else if first, ok := seen[user.Username]; ok {
			v.add(field(userPath, "username"), fmt.Sprintf("duplicate user %s, also at users[%d]", quote(user.Username), first))
		} else {
			seen[user.Username] = i
		}
		hash := user.PasswordHash.Value()
		if !isBcryptHash(hash) {
			v.add(field(userPath, "passwordHash"), "want a bcrypt hash ($2a$, $2b$ or $2y$); mcpbroker token hash-password prints one")
			continue
		}
		// One cost for everyone: a sign-in with a cheaper hash answers
		// faster, which tells whether the username exists.
		if cost := hash[4:6]; firstCost == "" {
			firstCost, firstCostUser = cost, i
		} else if cost != firstCost {
			v.add(field(userPath, "passwordHash"), fmt.Sprintf("bcrypt cost %s differs from users[%d]'s %s; use one cost for every user (sign-in time would reveal which usernames exist)", cost, firstCostUser, firstCost))
		}
	}
}

// grantTypes a configured client may be given.
var grantTypes = map[string]bool{
	"authorization_code": true, "refresh_token": true, "client_credentials": true,
	"urn:ietf:params:oauth:grant-type:token-exchange": true,
	"urn:ietf:params:oauth:grant-type:jwt-bearer":     true,
}

func (v *validator) providerClients(path string, clients []ProviderClient, supported map[string]bool) {
	seen := map[string]int{}
	for i, client := range clients {
		clientPath := index(path, i)
		if client.ClientID == "" {
			v.add(field(clientPath, "clientID"), "required")
		} else if first, ok := seen[client.ClientID]; ok {
			v.add(field(clientPath, "clientID"), fmt.Sprintf("duplicate client %s, also at clients[%d]", quote(client.ClientID), first))
		} else {
			seen[client.ClientID] = i
		}
		public := client.ClientSecret.IsZero()
		if !public && len(client.ClientSecret.Value()) < 16 {
			v.add(field(clientPath, "clientSecret"), "must be at least 16 characters")
		}
		codeFlow := len(client.GrantTypes) == 0
		for j, grant := range client.GrantTypes {
			grantPath := index(field(clientPath, "grantTypes"), j)
			switch {
			case !grantTypes[grant]:
				v.add(grantPath, fmt.Sprintf("unknown grant type %s", quote(grant)))
			case public && grant != "authorization_code" && grant != "refresh_token":
				v.add(grantPath, fmt.Sprintf("%s needs a confidential client (set clientSecret)", quote(grant)))
			}
			codeFlow = codeFlow || grant == "authorization_code"
		}
		if codeFlow && len(client.RedirectURIs) == 0 {
			v.add(field(clientPath, "redirectURIs"), "required for the authorization_code grant")
		}
		for j, redirect := range client.RedirectURIs {
			if message := redirectURIProblem(redirect); message != "" {
				v.add(index(field(clientPath, "redirectURIs"), j), message)
			}
		}
		for j, scope := range client.Scopes {
			if len(supported) > 0 && !supported[scope] {
				v.add(index(field(clientPath, "scopes"), j), fmt.Sprintf("%s is not in authProvider.scopes", quote(scope)))
			}
		}
		for j, audience := range client.Audiences {
			if message := absoluteURIProblem(audience); message != "" {
				v.add(index(field(clientPath, "audiences"), j), message)
			}
		}
		for j, audience := range client.SubjectAudiences {
			if message := absoluteURIProblem(audience); message != "" {
				v.add(index(field(clientPath, "subjectAudiences"), j), message)
			}
		}
		if client.Introspect && public {
			v.add(field(clientPath, "introspect"), "needs a confidential client (set clientSecret)")
		}
	}
}

// redirectURIProblem enforces exact https redirect URIs, or http on a
// loopback host (RFC 8252 §7.3), without fragments.
func redirectURIProblem(raw string) string {
	parsed, err := url.Parse(raw)
	if err != nil || parsed.Host == "" {
		return fmt.Sprintf("want an absolute URL, got %s", quote(raw))
	}
	if parsed.Fragment != "" || strings.Contains(raw, "#") {
		return "must not have a fragment"
	}
	switch {
	case parsed.Scheme == "https":
	case parsed.Scheme == "http" && oauth.IsLoopbackHost(parsed.Hostname()):
	default:
		return fmt.Sprintf("want https, or http on a loopback host, got %s", quote(raw))
	}
	return ""
}

func absoluteURIProblem(raw string) string {
	parsed, err := url.Parse(raw)
	if err != nil || parsed.Scheme == "" {
		return fmt.Sprintf("want an absolute URI, got %s", quote(raw))
	}
	if parsed.Fragment != "" {
		return "must not have a fragment"
	}
	return ""
}

func isBcryptHash(hash string) bool {
	return len(hash) == 60 && (strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$"))
}

// isScopeToken reports whether s is a scope token: printable ASCII
// without space, double quote or backslash (RFC 6749 §3.3).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
