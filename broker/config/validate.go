package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Bounds that Validate enforces.
const (
	minBodyBytes       = 1 << 10
	maxBodyBytes       = 64 << 20
	sessionKeyBytes    = 32
	maxClockSkew       = Duration(5 * time.Minute)
	minRefreshInterval = Duration(time.Minute)
	maxToolTTL         = Duration(time.Hour)
	// embeddedIdentityProvider names the embedded authorization server in
	// tokenExchange.idp, which is why no connector may take the name.
	embeddedIdentityProvider = "embedded"
	// defaultExchangeTool names the tokenExchange.tools entry for tools
	// without one of their own.
	defaultExchangeTool = "*"
)

var (
	appNamePattern       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	toolNamespacePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)
)

// Validate reports every problem with c as Problems, each with its path; nil
// means c is usable. It expects defaults to have been applied (Parse and Load
// do) and is pure: it reads no files, environment or network, so it can run
// on every reload and in `mcpbroker check`.
func (c *Config) Validate() error {
	v := &validator{config: c}
	switch c.Version {
	case 1:
	case 0:
		v.add("version", "required, must be 1")
	default:
		v.add("version", fmt.Sprintf("unsupported version %d, must be 1", c.Version))
	}
	v.http(&c.HTTP)
	v.storage(&c.Storage)
	v.connectors(c.Connectors)
	v.authProvider(c.AuthProvider)
	v.mcpProvider(&c.MCPProvider, len(c.Apps) > 0)
	v.apps(c.Apps)
	return v.err()
}

type validator struct {
	problemList
	config *Config
}

func (v *validator) http(http *HTTP) {
	if message := hostPortProblem(http.Address); message != "" {
		v.add("http.address", message)
	}
	if tls := http.TLS; tls != nil {
		switch {
		case tls.CertFile != "" && tls.KeyFile == "":
			v.add("http.tls.keyFile", "required when certFile is set")
		case tls.CertFile == "" && tls.KeyFile != "":
			v.add("http.tls.certFile", "required when keyFile is set")
		}
	}
	for i, host := range http.AllowedHosts {
		if strings.TrimSpace(host) == "" {
			v.add(index("http.allowedHosts", i), "must not be empty")
		}
	}
	for i, origin := range http.AllowedOrigins {
		if message := originProblem(origin); message != "" {
			v.add(index("http.allowedOrigins", i), message)
		}
	}
	if http.MaxBodyBytes < minBodyBytes || http.MaxBodyBytes > maxBodyBytes {
		v.add("http.maxBodyBytes", fmt.Sprintf("must be between %d (1 KiB) and %d (64 MiB), got %d", minBodyBytes, maxBodyBytes, http.MaxBodyBytes))
	}
	if http.ShutdownTimeout < 0 {
		v.add("http.shutdownTimeout", "must not be negative")
	}
	if d := time.Duration(http.ReadBodyTimeout); d < time.Second || d > 10*time.Minute {
		v.add("http.readBodyTimeout", fmt.Sprintf("must be between 1s and 10m, got %s", d))
	}
	if http.MaxConnections < 1 {
		v.add("http.maxConnections", fmt.Sprintf("must be at least 1, got %d", http.MaxConnections))
	}
	switch {
	case http.MaxConnectionsPerAddress < 1:
		v.add("http.maxConnectionsPerAddress", fmt.Sprintf("must be at least 1, got %d", http.MaxConnectionsPerAddress))
	case http.MaxConnections >= 1 && http.MaxConnectionsPerAddress > http.MaxConnections:
		v.add("http.maxConnectionsPerAddress", fmt.Sprintf("must not exceed http.maxConnections (%d), got %d", http.MaxConnections, http.MaxConnectionsPerAddress))
	}
}

func (v *validator) storage(storage *Storage) {
	if storage.Bolt != nil && storage.Redis != nil {
		v.add("storage", "set bolt or redis, not both")
	}
	if bolt := storage.Bolt; bolt != nil && strings.TrimSpace(bolt.Path) == "" {
		v.add("storage.bolt.path", "required")
	}
	if redis := storage.Redis; redis != nil {
		if len(redis.Addresses) == 0 {
			v.add("storage.redis.addresses", "at least one address is required")
		}
		for i, address := range redis.Addresses {
			message := hostPortProblem(address)
			if message == "" && strings.HasPrefix(address, ":") {
				message = fmt.Sprintf("want host:port with a host, got %s", quote(address))
			}
			if message != "" {
				v.add(index("storage.redis.addresses", i), message)
			}
		}
		if redis.DB < 0 {
			v.add("storage.redis.db", "must not be negative")
		}
	}
}

func (v *validator) connectors(connectors []Connector) {
	firstByName := map[string]int{}
	for i, connector := range connectors {
		path := index("connectors", i)
		switch first, duplicate := firstByName[connector.Name]; {
		case connector.Name == "":
			v.add(field(path, "name"), "must not be empty")
		case connector.Name == embeddedIdentityProvider:
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

func (v *validator) authProvider(provider *AuthProvider) {
	if provider == nil || !provider.Enabled {
		return
	}
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
	case parsed.Scheme == "http" && isLoopback(parsed.Hostname()):
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

// servedPath is a path the listener routes, for detecting two features that
// would claim the same requests.
type servedPath struct{ value, path string }

func (v *validator) mcpProvider(provider *MCPProvider, hasApps bool) {
	if hasApps && !provider.Enabled {
		v.add("mcpProvider.enabled", "must be true when apps are configured: agents reach apps only through the MCP provider")
	}
	var served []servedPath
	serve := func(path, value string, enabled bool) {
		if message := routePathProblem(value); message != "" {
			v.add(path, message)
			return
		}
		if enabled {
			served = append(served, servedPath{value: value, path: path})
		}
	}
	const transports = "mcpProvider.transports"
	stream, sse := provider.Transports.Stream, provider.Transports.SSE
	streamEnabled := stream != nil && stream.Enabled
	sseEnabled := sse != nil && sse.Enabled
	if provider.Enabled && !streamEnabled && !sseEnabled {
		v.add(transports, "enable at least one of stream and sse")
	}
	if stream != nil {
		path := field(transports, "stream")
		serve(field(path, "path"), stream.Path, streamEnabled)
		v.session(field(path, "session"), &stream.Session)
	}
	if sse != nil {
		path := field(transports, "sse")
		serve(field(path, "path"), sse.Path, sseEnabled)
		serve(field(path, "messagePath"), sse.MessagePath, sseEnabled)
		if sse.KeepAlive.Enabled && sse.KeepAlive.Interval <= 0 {
			v.add(field(path, "keepAlive.interval"), "must be > 0")
		}
	}
	if oauth := provider.Authorization.OAuth; oauth != nil && oauth.Enabled {
		path := "mcpProvider.authorization.oauth"
		serve(field(path, "metadataPath"), oauth.MetadataPath, true)
		v.oauth(path, oauth)
	}
	firstByValue := map[string]string{}
	for _, route := range served {
		if first, ok := firstByValue[route.value]; ok {
			v.add(route.path, fmt.Sprintf("%s is already served by %s", quote(route.value), first))
			continue
		}
		firstByValue[route.value] = route.path
	}
}

func (v *validator) session(path string, session *StreamSession) {
	if !isHeaderToken(session.HeaderName) {
		v.add(field(path, "headerName"), fmt.Sprintf("want an HTTP header name, got %s", quote(session.HeaderName)))
	}
	if session.Timeout <= 0 {
		v.add(field(path, "timeout"), "must be > 0")
	}
	if _, err := session.DecodedKey(); err != nil {
		v.add(field(path, "key"), strings.TrimPrefix(err.Error(), "config: session key: "))
	}
}

// DecodedKey returns the key that seals session ids, or nil when none is set
// (each process then uses a random key). Validate reports the same error, so
// after a successful Load it returns none. The error never contains the key.
func (session *StreamSession) DecodedKey() ([]byte, error) {
	key := session.Key.Value()
	if key == "" {
		return nil, nil
	}
	decoded, ok := decodeBase64(key)
	if !ok {
		return nil, fmt.Errorf("config: session key: want %d random bytes in base64, got something that is not base64", sessionKeyBytes)
	}
	if len(decoded) != sessionKeyBytes {
		return nil, fmt.Errorf("config: session key: want %d random bytes in base64, got %d bytes", sessionKeyBytes, len(decoded))
	}
	return decoded, nil
}

func (v *validator) oauth(path string, oauth *OAuth) {
	if len(oauth.Servers) == 0 {
		v.add(field(path, "servers"), "at least one server is required when oauth is enabled")
	}
	for i, server := range oauth.Servers {
		serverPath := index(field(path, "servers"), i)
		if message := endpointProblem(server.WellKnownEndpoint); message != "" {
			v.add(field(serverPath, "wellKnownEndpoint"), message)
		}
		if server.RefreshInterval < minRefreshInterval {
			v.add(field(serverPath, "refreshInterval"), fmt.Sprintf("must be at least %s, got %s", minRefreshInterval, server.RefreshInterval))
		}
		validation := field(serverPath, "tokenValidation")
		switch server.TokenValidation.Method {
		case "jwt", "introspection":
		case "":
			v.add(field(validation, "method"), `required, want "jwt" or "introspection"`)
		default:
			v.add(field(validation, "method"), fmt.Sprintf(`unknown method %s, want "jwt" or "introspection"`, quote(server.TokenValidation.Method)))
		}
		audiences := server.TokenValidation.ExpectedAudiences
		if len(audiences) == 0 {
			v.add(field(validation, "expectedAudiences"), "at least one audience is required: tokens minted for another resource must be refused")
		}
		for j, audience := range audiences {
			if message := audienceProblem(audience); message != "" {
				v.add(index(field(validation, "expectedAudiences"), j), message)
			}
		}
		if skew := server.TokenValidation.JWT.ClockSkew; skew < 0 || skew > maxClockSkew {
			v.add(field(validation, "jwt.clockSkew"), fmt.Sprintf("must be between 0s and %s, got %s", maxClockSkew, skew))
		}
		for j, alg := range server.TokenValidation.JWT.Algorithms {
			if !asymmetricAlgorithms[alg] {
				v.add(index(field(validation, "jwt.algorithms"), j), fmt.Sprintf("%s is not an allowed signature algorithm (asymmetric only: RS*, PS*, ES*, EdDSA)", quote(alg)))
			}
		}
		if server.TokenValidation.Method == "introspection" {
			in := server.TokenValidation.Introspection
			switch {
			case in == nil || in.Connector == "":
				v.add(field(validation, "introspection.connector"), "required for introspection: the connector whose client credentials authenticate the broker")
			case v.config.Connector(in.Connector) == nil:
				v.add(field(validation, "introspection.connector"), fmt.Sprintf("no connector named %s", quote(in.Connector)))
			}
		}
	}
	if oauth.Resource != "" {
		if message := audienceProblem(oauth.Resource); message != "" {
			v.add(field(path, "resource"), message)
		}
	}
	for j, scope := range oauth.RequiredScopes {
		if scope == "" || strings.ContainsAny(scope, " \"\\") {
			v.add(index(field(path, "requiredScopes"), j), "must be a non-empty scope token")
		}
	}
	for j, scope := range oauth.ScopesSupported {
		if scope == "" || strings.ContainsAny(scope, " \"\\") {
			v.add(index(field(path, "scopesSupported"), j), "must be a non-empty scope token")
		}
	}
}

// asymmetricAlgorithms are the JWS algorithms accepted for access tokens.
var asymmetricAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true, "EdDSA": true,
}

func (v *validator) apps(apps []App) {
	firstByName := map[string]int{}
	for i := range apps {
		app := &apps[i]
		path := index("apps", i)
		switch first, duplicate := firstByName[app.Name]; {
		case app.Name == "":
			v.add(field(path, "name"), "must not be empty")
		case !appNamePattern.MatchString(app.Name):
			v.add(field(path, "name"), fmt.Sprintf(`want 1 to 63 letters, digits, "_" or "-", starting with a letter or digit, got %s`, quote(app.Name)))
		case duplicate:
			v.add(field(path, "name"), fmt.Sprintf("duplicate name %s, also used by apps[%d]", quote(app.Name), first))
		default:
			firstByName[app.Name] = i
		}
		switch app.Type {
		case "mcpProxy":
		case "mcpBridge":
			v.add(field(path, "type"), `"mcpBridge" is not supported in this version; want "mcpProxy"`)
		case "":
			v.add(field(path, "type"), `required, want "mcpProxy"`)
		default:
			v.add(field(path, "type"), fmt.Sprintf(`unknown type %s, want "mcpProxy"`, quote(app.Type)))
		}
		v.toolNamespace(path, app)
		v.resourceNamespace(path, app)
		v.upstream(field(path, "upstream"), &app.Upstream)
		if app.Authorization != nil {
			v.appAuthorization(field(path, "authorization"), app.Authorization)
		}
	}
	v.namespaceCollisions(apps)
	v.resourceNamespaceOverlaps(apps)
	v.outboundAudiences(apps)
}

func (v *validator) toolNamespace(path string, app *App) {
	namespace := app.ToolNamespace
	if namespace == nil || namespace.Disabled {
		return
	}
	derived := namespace.Name == app.Name+"_"
	switch {
	case namespace.Name == "" && app.Name == "":
		// Reported as apps[i].name; the namespace is derived from it.
	case toolNamespacePattern.MatchString(namespace.Name):
	case derived && !appNamePattern.MatchString(app.Name):
		// Reported as apps[i].name.
	case derived:
		v.add(field(path, "toolNamespace.name"), fmt.Sprintf(`the default %s (the app name and "_") is longer than 32 characters; set a shorter toolNamespace.name`, quote(namespace.Name)))
	default:
		v.add(field(path, "toolNamespace.name"), fmt.Sprintf(`want 1 to 32 letters, digits, "_", "." or "-", got %s`, quote(namespace.Name)))
	}
}

// namespaceCollisions reports apps whose tool namespaces make routing
// ambiguous: a tool named "ledger_x" cannot go to both "ledger_" and
// "led". Each app is reported once, against the first earlier app it
// collides with, in time linear in the number of apps.
func (v *validator) namespaceCollisions(apps []App) {
	whole := map[string]int{}   // an earlier namespace -> its app
	partial := map[string]int{} // a proper prefix of an earlier namespace -> its app
	for i := range apps {
		namespace := apps[i].ToolNamespace
		if namespace == nil || namespace.Disabled || !toolNamespacePattern.MatchString(namespace.Name) {
			continue
		}
		name := namespace.Name
		message := ""
		if first, ok := whole[name]; ok {
			message = fmt.Sprintf("%s is also the namespace of apps[%d] (%s)", quote(name), first, quote(apps[first].Name))
		} else if first, ok := partial[name]; ok {
			message = fmt.Sprintf("%s is a prefix of %s, the namespace of apps[%d] (%s); a tool name could belong to either app", quote(name), quote(apps[first].ToolNamespace.Name), first, quote(apps[first].Name))
		} else {
			for end := 1; end < len(name); end++ {
				if first, ok := whole[name[:end]]; ok {
					message = fmt.Sprintf("%s starts with %s, the namespace of apps[%d] (%s); a tool name could belong to either app", quote(name), quote(name[:end]), first, quote(apps[first].Name))
					break
				}
			}
		}
		if message != "" {
			v.add(field(index("apps", i), "toolNamespace.name"), message)
			continue
		}
		whole[name] = i
		for end := 1; end < len(name); end++ {
			if _, ok := partial[name[:end]]; !ok {
				partial[name[:end]] = i
			}
		}
	}
}

func (v *validator) upstream(path string, upstream *Upstream) {
	switch upstream.Transport {
	case "stream":
		if upstream.Stream == nil {
			v.add(field(path, "stream"), `required when transport is "stream"`)
		}
	case "sse", "stdio":
		v.add(field(path, "transport"), fmt.Sprintf(`%s is not supported in this version; want "stream"`, quote(upstream.Transport)))
	case "":
		v.add(field(path, "transport"), `required, want "stream"`)
	default:
		v.add(field(path, "transport"), fmt.Sprintf(`unknown transport %s, want "stream"`, quote(upstream.Transport)))
	}
	if upstream.Timeout <= 0 {
		v.add(field(path, "timeout"), "must be > 0")
	}
	stream := upstream.Stream
	if stream == nil {
		return
	}
	streamPath := field(path, "stream")
	if stream.URL == "" {
		v.add(field(streamPath, "url"), "required")
	} else if parsed, err := url.Parse(stream.URL); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		v.add(field(streamPath, "url"), fmt.Sprintf("want an absolute http or https URL with a host, got %s", quote(stream.URL)))
	}
	connection := field(streamPath, "connection")
	if stream.Connection.DialTimeout <= 0 {
		v.add(field(connection, "dialTimeout"), "must be > 0")
	}
	if stream.Connection.Pool.MaxIdleConns < 0 {
		v.add(field(connection, "pool.maxIdleConns"), "must not be negative")
	}
	if stream.Connection.Pool.MaxIdleConnsPerHost < 0 {
		v.add(field(connection, "pool.maxIdleConnsPerHost"), "must not be negative")
	}
}

func (v *validator) appAuthorization(path string, authorization *AppAuthorization) {
	if inbound := authorization.Inbound; inbound != nil && inbound.OPA != nil {
		opa := inbound.OPA
		opaPath := field(path, "inbound.opa")
		if opa.Name == "" {
			v.add(field(opaPath, "name"), "required")
		}
		switch {
		case opa.Rego != "" && opa.File != "":
			v.add(opaPath, "set rego or file, not both")
		case opa.Rego == "" && opa.File == "":
			v.add(opaPath, "set one of rego (the policy inline) or file")
		}
	}
	outbound := authorization.Outbound
	if outbound == nil {
		return
	}
	outboundPath := field(path, "outbound")
	switch outbound.Type {
	case "tokenExchange":
		if outbound.TokenExchange == nil {
			v.add(field(outboundPath, "tokenExchange"), `required when type is "tokenExchange"`)
		}
		if oauth := v.config.MCPProvider.Authorization.OAuth; oauth == nil || !oauth.Enabled {
			v.add(field(outboundPath, "type"), `"tokenExchange" issues tokens for the authenticated agent; enable mcpProvider.authorization.oauth`)
		}
	case "unprotected":
		if outbound.TokenExchange != nil {
			v.add(field(outboundPath, "tokenExchange"), `only allowed when type is "tokenExchange"`)
		}
	case "":
		v.add(field(outboundPath, "type"), `required, want "tokenExchange" or "unprotected"`)
	default:
		v.add(field(outboundPath, "type"), fmt.Sprintf(`unknown type %s, want "tokenExchange" or "unprotected"`, quote(outbound.Type)))
	}
	if outbound.TokenExchange != nil {
		v.tokenExchange(field(outboundPath, "tokenExchange"), outbound.TokenExchange)
	}
}

// outboundAudiences keeps every upstream's tokens its own: an audience two
// apps share makes one upstream's tokens good at the other, and an
// audience the broker accepts from agents makes every upstream able to
// call the broker as the agent.
func (v *validator) outboundAudiences(apps []App) {
	inbound := map[string]bool{}
	if oauth := v.config.MCPProvider.Authorization.OAuth; oauth != nil {
		for _, server := range oauth.Servers {
			for _, audience := range server.TokenValidation.ExpectedAudiences {
				inbound[audience] = true
			}
		}
	}
	if ap := v.config.AuthProvider; ap != nil && ap.Enabled {
		for _, audience := range ap.Audiences {
			inbound[audience] = true
		}
	}
	firstByAudience := map[string]int{}
	for i, app := range apps {
		if app.Authorization == nil || app.Authorization.Outbound == nil || app.Authorization.Outbound.TokenExchange == nil {
			continue
		}
		audience := app.Authorization.Outbound.TokenExchange.Audience
		if audience == "" {
			continue
		}
		path := field(index("apps", i), "authorization.outbound.tokenExchange.audience")
		if inbound[audience] {
			v.add(path, fmt.Sprintf("%s is an audience the broker accepts agent tokens for; an upstream's tokens must not be usable at the broker", quote(audience)))
		}
		if first, ok := firstByAudience[audience]; ok {
			v.add(path, fmt.Sprintf("%s is also apps[%d]'s audience; each upstream needs its own, so that one's tokens are no good at another", quote(audience), first))
		} else {
			firstByAudience[audience] = i
		}
	}
}

func (v *validator) tokenExchange(path string, exchange *TokenExchange) {
	switch exchange.Type {
	case "delegation", "impersonation":
	case "":
		v.add(field(path, "type"), `required, want "delegation" or "impersonation"`)
	default:
		v.add(field(path, "type"), fmt.Sprintf(`unknown type %s, want "delegation" or "impersonation"`, quote(exchange.Type)))
	}
	v.identityProvider(field(path, "idp"), exchange.IDP)
	if exchange.Audience == "" {
		v.add(field(path, "audience"), "required")
	}
	firstByName := map[string]int{}
	for i, tool := range exchange.Tools {
		toolPath := index(field(path, "tools"), i)
		switch first, duplicate := firstByName[tool.Name]; {
		case tool.Name == "":
			v.add(field(toolPath, "name"), "must not be empty")
		case tool.Name != defaultExchangeTool && strings.Contains(tool.Name, defaultExchangeTool):
			v.add(field(toolPath, "name"), fmt.Sprintf(`%s: names are exact; "*" alone names the default entry`, quote(tool.Name)))
		case duplicate:
			v.add(field(toolPath, "name"), fmt.Sprintf("duplicate tool %s, also configured at tools[%d]", quote(tool.Name), first))
		default:
			firstByName[tool.Name] = i
		}
		if tool.TTL <= 0 || tool.TTL > maxToolTTL {
			v.add(field(toolPath, "ttl"), fmt.Sprintf("must be > 0 and at most %s (tokens are per call and short-lived), got %s", maxToolTTL, tool.TTL))
		}
		for j, scope := range tool.Scopes {
			switch {
			case scope.Name == "":
				v.add(field(index(field(toolPath, "scopes"), j), "name"), "must not be empty")
			case !isScopeToken(scope.Name):
				v.add(field(index(field(toolPath, "scopes"), j), "name"), fmt.Sprintf("not a scope token (RFC 6749 §3.3): %s", quote(scope.Name)))
			}
		}
	}
}

func (v *validator) identityProvider(path, name string) {
	if name == "" {
		v.add(path, `required: "embedded" or the name of a connector`)
		return
	}
	if name == embeddedIdentityProvider {
		if provider := v.config.AuthProvider; provider == nil || !provider.Enabled {
			v.add(path, `"embedded" requires authProvider.enabled: true`)
		}
		return
	}
	var names []string
	for _, connector := range v.config.Connectors {
		if connector.Name == name {
			return
		}
		if connector.Name != "" {
			names = append(names, connector.Name)
		}
	}
	want := `"embedded"`
	if len(names) > 0 {
		want += " or a connector (" + strings.Join(names, ", ") + ")"
	} else {
		want += " (no connectors are configured)"
	}
	v.add(path, fmt.Sprintf("unknown identity provider %s, want %s", quote(name), want))
}

// hostPortProblem checks a listen or dial address such as "127.0.0.1:8080",
// ":8080" or "[::1]:6379".
func hostPortProblem(address string) string {
	if address == "" {
		return "required, want host:port"
	}
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Sprintf("want host:port, got %s", quote(address))
	}
	if number, err := strconv.Atoi(port); err != nil || number < 0 || number > 65535 {
		return fmt.Sprintf("want a port number from 0 to 65535, got %s", quote(port))
	}
	return ""
}

// originProblem checks a value as a browser would send it in Origin.
func originProblem(origin string) string {
	parsed, err := url.Parse(origin)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" ||
		parsed.Path != "" || parsed.RawQuery != "" || parsed.ForceQuery || parsed.Fragment != "" || parsed.User != nil {
		return fmt.Sprintf(`want an origin such as "https://app.example" (scheme and host, no path or trailing slash), got %s`, quote(origin))
	}
	return ""
}

// endpointProblem checks the URL of something the broker fetches or trusts:
// https, or http for a loopback host, where nothing on the network can read
// or alter the traffic.
func endpointProblem(raw string) string {
	if raw == "" {
		return "required"
	}
	parsed, err := url.Parse(raw)
	if err != nil || parsed.Scheme == "" || parsed.Host == "" {
		return fmt.Sprintf("want an absolute URL, got %s", quote(raw))
	}
	if parsed.User != nil {
		return "must not contain credentials"
	}
	switch parsed.Scheme {
	case "https":
		return ""
	case "http":
		if isLoopback(parsed.Hostname()) {
			return ""
		}
		return fmt.Sprintf("want https; http is allowed only for loopback hosts (localhost, 127.0.0.1, [::1]), got %s", quote(raw))
	}
	return fmt.Sprintf("want an https URL, got scheme %s", quote(parsed.Scheme))
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// audienceProblem accepts any non-empty string, but a value that looks like a
// URL must be an absolute one: "https//broker/mcp" would otherwise never
// match and every token would be refused with no hint why.
func audienceProblem(audience string) string {
	if strings.TrimSpace(audience) == "" {
		return "must not be empty"
	}
	if strings.Contains(audience, "://") {
		if parsed, err := url.Parse(audience); err != nil || parsed.Scheme == "" || parsed.Host == "" {
			return fmt.Sprintf("want an absolute URL, got %s", quote(audience))
		}
	}
	return ""
}

// routePathProblem checks a path the listener serves.
func routePathProblem(path string) string {
	switch {
	case !strings.HasPrefix(path, "/"):
		return fmt.Sprintf(`want a path starting with "/", got %s`, quote(path))
	case strings.ContainsAny(path, "?#"):
		return fmt.Sprintf(`want a path without "?" or "#", got %s`, quote(path))
	}
	return ""
}

// isHeaderToken reports whether name is an HTTP field name (RFC 9110 token).
func isHeaderToken(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}

// decodeBase64 accepts standard and URL-safe base64, padded or not, since
// `openssl rand -base64 32` and many secret stores produce different ones.
func decodeBase64(text string) ([]byte, bool) {
	for _, encoding := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if decoded, err := encoding.DecodeString(text); err == nil {
			return decoded, true
		}
	}
	return nil, false
}
