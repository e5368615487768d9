package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/bridge"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

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
		if app.Type != AppMCPBridge {
			v.upstream(field(path, "upstream"), &app.Upstream)
		}
		switch app.Type {
		case AppMCPProxy:
			if app.Bridge != nil {
				v.add(field(path, "bridge"), `applies to mcpBridge apps; this one is "mcpProxy"`)
			}
		case AppMCPBridge:
			v.bridge(field(path, "bridge"), app)
		case "":
			v.add(field(path, "type"), `required, want "mcpProxy" or "mcpBridge"`)
		default:
			v.add(field(path, "type"), fmt.Sprintf(`unknown type %s, want "mcpProxy" or "mcpBridge"`, quote(string(app.Type))))
		}
		v.toolNamespace(path, app)
		v.resourceNamespace(path, app)
		if app.Authorization != nil {
			v.appAuthorization(field(path, "authorization"), app.Authorization)
		}
		v.identityHeaders(field(path, "identityHeaders"), app.IdentityHeaders)
		if stdio := app.Upstream.Stdio; stdio != nil && app.Upstream.Transport == "stdio" {
			if len(app.IdentityHeaders) > 0 {
				v.add(field(path, "identityHeaders"), "a stdio upstream has no HTTP headers; it is told the caller's identity in each request's _meta")
			}
			exchanged := app.Authorization != nil && app.Authorization.Outbound != nil && app.Authorization.Outbound.TokenExchange != nil
			if stdio.TokenEnv != "" && !exchanged {
				v.add(field(path, "upstream.stdio.tokenEnv"), "needs authorization.outbound.tokenExchange: it carries the token exchanged for the process")
			}
		}
		if app.ListCache != nil {
			v.listCache(field(path, "listCache"), app.ListCache)
		}
		if app.ToolPinning != nil {
			v.toolPinning(field(path, "toolPinning"), app.ToolPinning)
		}
		if app.Validation != nil {
			v.validation(field(path, "validation"), app.Validation, int(v.config.HTTP.MaxBodyBytes))
		}
		if app.Redaction != nil {
			v.redaction(field(path, "redaction"), app.Redaction)
		}
		v.labels(field(path, "labels"), app.Labels)
		v.appTools(field(path, "tools"), app.Tools)
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

// bridge checks an mcpBridge app: its REST API, and no upstream. The
// document itself is read, and its tools made, when the apps are built,
// which check does too.
func (v *validator) bridge(path string, app *App) {
	u := app.Upstream
	if u.Transport != "" || u.Stream != nil || u.SSE != nil || u.Stdio != nil || u.TLS != nil || u.Proxy != nil {
		v.add(field(strings.TrimSuffix(path, ".bridge"), "upstream"), "not used by mcpBridge apps: bridge.baseURL says where the REST API is")
	}
	b := app.Bridge
	if b == nil {
		v.add(path, "required for mcpBridge apps")
		return
	}
	if parsed, err := url.Parse(b.BaseURL); b.BaseURL == "" || err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" || parsed.RawQuery != "" || parsed.Fragment != "" || parsed.User != nil {
		v.add(field(path, "baseURL"), fmt.Sprintf("want an absolute http or https URL with a host and no query, fragment or credentials, got %s", quote(b.BaseURL)))
	}
	declared := 0
	for _, t := range b.Tools {
		if t.OperationID == "" {
			declared++
		}
	}
	switch file, u := strings.TrimSpace(b.OpenAPI.File), strings.TrimSpace(b.OpenAPI.URL); {
	case file != "" && u != "":
		v.add(field(path, "openapi"), "file or url, not both")
	case file == "" && u == "" && declared == 0:
		v.add(field(path, "openapi.file"), "required: the API's OpenAPI document, as file or url (or tools declared with method and path)")
	case u != "":
		if parsed, err := url.Parse(u); err != nil || (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
			v.add(field(path, "openapi.url"), fmt.Sprintf("want an absolute https URL (http only on loopback), got %s", quote(u)))
		}
	}
	if b.OpenAPI.AllowPrivateNetworks && strings.TrimSpace(b.OpenAPI.URL) == "" {
		v.add(field(path, "openapi.allowPrivateNetworks"), "applies to openapi.url")
	}
	if b.Timeout <= 0 {
		v.add(field(path, "timeout"), "must be > 0")
	}
	seen := map[string]int{}
	for i, t := range b.Tools {
		p := index(field(path, "tools"), i)
		if t.OperationID != "" {
			if first, dup := seen["id "+t.OperationID]; dup {
				v.add(field(p, "operationId"), fmt.Sprintf("duplicate of tools[%d]", first))
			} else {
				seen["id "+t.OperationID] = i
			}
			if t.Method != "" || t.Path != "" || len(t.Parameters) > 0 || t.Body != nil {
				v.add(p, "a tool with an operationId changes what the document's operation says; method, path, parameters and body declare a tool of their own (leave operationId out)")
			}
			continue
		}
		v.declaredTool(p, t)
		if first, dup := seen["name "+t.Name]; dup && t.Name != "" {
			v.add(field(p, "name"), fmt.Sprintf("duplicate of tools[%d]", first))
		} else {
			seen["name "+t.Name] = i
		}
	}
}

// declaredTool checks a tool declared by hand: a name, an HTTP method, a
// path, parameters an OpenAPI document could hold.
func (v *validator) declaredTool(path string, t BridgeTool) {
	if t.Name == "" {
		v.add(field(path, "name"), "required: a declared tool's name (or operationId, to change one of the document's)")
	} else if !bridge.ValidToolName(t.Name) {
		v.add(field(path, "name"), fmt.Sprintf("want 1 to 128 of A-Z a-z 0-9 _ - ., got %s", quote(t.Name)))
	}
	switch t.Method {
	case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD":
	default:
		v.add(field(path, "method"), fmt.Sprintf("want GET, POST, PUT, PATCH, DELETE or HEAD, got %s", quote(t.Method)))
	}
	if !strings.HasPrefix(t.Path, "/") || strings.ContainsAny(t.Path, "?#") {
		v.add(field(path, "path"), fmt.Sprintf("want a path starting with / without query or fragment, got %s", quote(t.Path)))
	}
	for i, p := range t.Parameters {
		pp := index(field(path, "parameters"), i)
		if p.Name == "" {
			v.add(field(pp, "name"), "required")
		}
		switch p.In {
		case "path", "query", "header", "cookie":
		default:
			v.add(field(pp, "in"), fmt.Sprintf("want path, query, header or cookie, got %s", quote(p.In)))
		}
		if p.In == "path" && !strings.Contains(t.Path, "{"+p.Name+"}") {
			v.add(field(pp, "name"), fmt.Sprintf("a path parameter the path %s does not hold", quote(t.Path)))
		}
	}
	if t.Body != nil && (t.Method == "GET" || t.Method == "HEAD") {
		v.add(field(path, "body"), "a GET or HEAD request has no body")
	}
}

func (v *validator) upstream(path string, upstream *Upstream) {
	const want = `want "stream", "sse" or "stdio"`
	blocks := map[string]bool{"stream": upstream.Stream != nil, "sse": upstream.SSE != nil, "stdio": upstream.Stdio != nil}
	switch upstream.Transport {
	case "stream", "sse", "stdio":
		if !blocks[upstream.Transport] {
			v.add(field(path, upstream.Transport), fmt.Sprintf("required when transport is %s", quote(upstream.Transport)))
		}
		for _, other := range []string{"stream", "sse", "stdio"} {
			if other != upstream.Transport && blocks[other] {
				v.add(field(path, other), fmt.Sprintf("not used: transport is %s", quote(upstream.Transport)))
			}
		}
	case "":
		v.add(field(path, "transport"), "required, "+want)
	default:
		v.add(field(path, "transport"), fmt.Sprintf("unknown transport %s, %s", quote(upstream.Transport), want))
	}
	if upstream.Timeout <= 0 {
		v.add(field(path, "timeout"), "must be > 0")
	}
	v.upstreamProxy(field(path, "proxy"), upstream.Proxy)
	// The block of the transport in use is checked; the others were
	// reported as unused.
	switch {
	case upstream.Transport == "stdio" && upstream.Stdio != nil:
		v.stdioUpstream(path, upstream)
	case upstream.Transport == "sse" && upstream.SSE != nil:
		v.httpUpstream(path, field(path, "sse"), upstream.SSE.URL, upstream.SSE.Connection, upstream.TLS)
	case upstream.Stream != nil && upstream.Transport != "stdio" && upstream.Transport != "sse":
		v.httpUpstream(path, field(path, "stream"), upstream.Stream.URL, upstream.Stream.Connection, upstream.TLS)
		switch version := upstream.Stream.ProtocolVersion; version {
		case "", "auto", ModernProtocolVersion:
		default:
			v.add(field(path, "stream.protocolVersion"), fmt.Sprintf("want %s or \"auto\" (left out: sessions opened with initialize), got %s", quote(ModernProtocolVersion), quote(version)))
		}
	}
}

// ModernProtocolVersion is the protocol version without sessions.
const ModernProtocolVersion = jsonrpc.ModernVersion

// httpUpstream checks what Streamable HTTP and HTTP+SSE upstreams share.
func (v *validator) httpUpstream(path, streamPath, rawURL string, conn Connection, tls *UpstreamTLS) {
	if rawURL == "" {
		v.add(field(streamPath, "url"), "required")
	} else if parsed, err := url.Parse(rawURL); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		v.add(field(streamPath, "url"), fmt.Sprintf("want an absolute http or https URL with a host, got %s", quote(rawURL)))
	} else {
		v.upstreamTLS(field(path, "tls"), tls, parsed.Scheme)
	}
	connection := field(streamPath, "connection")
	if conn.DialTimeout <= 0 {
		v.add(field(connection, "dialTimeout"), "must be > 0")
	}
	if conn.Pool.MaxIdleConns < 0 {
		v.add(field(connection, "pool.maxIdleConns"), "must not be negative")
	}
	if conn.Pool.MaxIdleConnsPerHost < 0 {
		v.add(field(connection, "pool.maxIdleConnsPerHost"), "must not be negative")
	}
}

// envNamePattern is a portable environment variable name.
var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// stdioUpstream checks a local program upstream. Whether the command can
// be found and run is checked when the apps are built, which check does
// too.
func (v *validator) stdioUpstream(path string, upstream *Upstream) {
	stdio := upstream.Stdio
	stdioPath := field(path, "stdio")
	if upstream.TLS != nil {
		v.add(field(path, "tls"), "applies to https upstreams; a stdio upstream is a local program")
	}
	if upstream.Proxy != nil {
		v.add(field(path, "proxy"), "applies to HTTP upstreams; a stdio upstream is a local program")
	}
	if strings.TrimSpace(stdio.Command) == "" {
		v.add(field(stdioPath, "command"), "required: the program to run")
	} else if strings.ContainsRune(stdio.Command, 0) {
		v.add(field(stdioPath, "command"), "must not contain NUL")
	}
	for i, arg := range stdio.Args {
		if strings.ContainsRune(arg, 0) {
			v.add(field(stdioPath, index("args", i)), "must not contain NUL")
		}
	}
	names := make(map[string]int, len(stdio.Env))
	for i, e := range stdio.Env {
		p := index(field(stdioPath, "env"), i)
		switch first, dup := names[e.Name]; {
		case !envNamePattern.MatchString(e.Name):
			v.add(field(p, "name"), fmt.Sprintf("want a variable name (letters, digits, _; not starting with a digit), got %s", quote(e.Name)))
		case dup:
			v.add(field(p, "name"), fmt.Sprintf("duplicate of env[%d]", first))
		case e.Name == stdio.TokenEnv:
			v.add(field(p, "name"), "is tokenEnv, which the broker sets")
		default:
			names[e.Name] = i
		}
		if strings.ContainsRune(e.Value.Value(), 0) {
			v.add(field(p, "value"), "must not contain NUL")
		}
	}
	switch stdio.Isolation {
	case StdioPerSession, StdioPerSubject, StdioShared:
	default:
		v.add(field(stdioPath, "isolation"), fmt.Sprintf(`want "perSession", "perSubject" or "shared", got %s`, quote(stdio.Isolation)))
	}
	if stdio.IdleTimeout < Duration(time.Second) || stdio.IdleTimeout > Duration(24*time.Hour) {
		v.add(field(stdioPath, "idleTimeout"), fmt.Sprintf("want 1s to 24h, got %s", stdio.IdleTimeout))
	}
	switch {
	case stdio.MaxProcesses < 1 || stdio.MaxProcesses > 10000:
		v.add(field(stdioPath, "maxProcesses"), fmt.Sprintf("want 1 to 10000, got %d", stdio.MaxProcesses))
	case stdio.Isolation == StdioShared && stdio.MaxProcesses != 1:
		v.add(field(stdioPath, "maxProcesses"), "a shared app runs one process; leave maxProcesses out")
	}
	if stdio.TokenEnv != "" {
		switch {
		case !envNamePattern.MatchString(stdio.TokenEnv):
			v.add(field(stdioPath, "tokenEnv"), fmt.Sprintf("want a variable name, got %s", quote(stdio.TokenEnv)))
		case stdio.Isolation == StdioShared:
			v.add(field(stdioPath, "tokenEnv"), "a shared process serves every user: no one user's token may be given to it; use perSession or perSubject")
		}
	}
}

// upstreamTLS checks an upstream's TLS settings; the files are read when
// the apps are built, which `check` does too.
func (v *validator) upstreamTLS(path string, t *UpstreamTLS, scheme string) {
	if t == nil {
		return
	}
	if scheme != "https" {
		v.add(path, "applies to https upstreams; the URL is "+scheme)
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.add(field(path, "keyFile"), "required when certFile is set")
	case t.CertFile == "" && t.KeyFile != "":
		v.add(field(path, "certFile"), "required when keyFile is set")
	}
	switch t.MinVersion {
	case "", "1.2", "1.3":
	default:
		v.add(field(path, "minVersion"), fmt.Sprintf(`want "1.2" or "1.3", got %s`, quote(t.MinVersion)))
	}
}

func (v *validator) upstreamProxy(path string, p *UpstreamProxy) {
	if p == nil {
		return
	}
	switch {
	case p.URL != "" && p.FromEnvironment:
		v.add(path, "set url or fromEnvironment, not both")
	case p.URL == "" && !p.FromEnvironment:
		v.add(path, "set url (the proxy) or fromEnvironment: true (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)")
	case p.URL != "":
		if parsed, err := url.Parse(p.URL); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" || parsed.Path != "" && parsed.Path != "/" {
			v.add(field(path, "url"), fmt.Sprintf("want an http or https proxy URL like http://proxy.internal:3128, got %s", quote(p.URL)))
		}
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
	case OutboundTokenExchange:
		if outbound.TokenExchange == nil {
			v.add(field(outboundPath, "tokenExchange"), `required when type is "tokenExchange"`)
		}
		if oauth := v.config.MCPProvider.Authorization.OAuth; oauth == nil || !oauth.Enabled {
			v.add(field(outboundPath, "type"), `"tokenExchange" issues tokens for the authenticated agent; enable mcpProvider.authorization.oauth`)
		}
	case OutboundIDJAG:
		v.outboundIDJAG(field(outboundPath, "idJag"), outbound.IDJAG)
		if outbound.TokenExchange != nil {
			v.add(field(outboundPath, "tokenExchange"), `only allowed when type is "tokenExchange"`)
		}
	case OutboundUnprotected:
		if outbound.TokenExchange != nil {
			v.add(field(outboundPath, "tokenExchange"), `only allowed when type is "tokenExchange"`)
		}
	case "":
		v.add(field(outboundPath, "type"), `required, want "tokenExchange", "idJag" or "unprotected"`)
	default:
		v.add(field(outboundPath, "type"), fmt.Sprintf(`unknown type %s, want "tokenExchange", "idJag" or "unprotected"`, quote(string(outbound.Type))))
	}
	if outbound.IDJAG != nil && outbound.Type != OutboundIDJAG {
		v.add(field(outboundPath, "idJag"), `only allowed when type is "idJag"`)
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
	case ExchangeDelegation, ExchangeImpersonation:
	case "":
		v.add(field(path, "type"), `required, want "delegation" or "impersonation"`)
	default:
		v.add(field(path, "type"), fmt.Sprintf(`unknown type %s, want "delegation" or "impersonation"`, quote(string(exchange.Type))))
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
	v.tokenShape(path, exchange)
	switch {
	case exchange.SigningAlgorithm == "":
	case exchange.SigningAlgorithm != "EdDSA" && exchange.SigningAlgorithm != "ES256":
		v.add(field(path, "signingAlgorithm"), fmt.Sprintf(`want "EdDSA" or "ES256", got %s`, quote(exchange.SigningAlgorithm)))
	case exchange.IDP != EmbeddedIdentityProvider:
		v.add(field(path, "signingAlgorithm"), fmt.Sprintf(`applies to tokens the embedded authorization server mints (idp: embedded); connector %s signs its own`, quote(exchange.IDP)))
	}
}

// registeredClaims are the claims the minter sets itself: a configured
// claim may not replace them.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "act", "scope", "client_id", "may_act", "sub_iss", "cnf", "azp"}

// tokenShape checks the actor, subject format and claims, which only
// tokens the embedded authorization server mints take.
func (v *validator) tokenShape(path string, exchange *TokenExchange) {
	minted := exchange.IDP == EmbeddedIdentityProvider
	shaped := func(key string) {
		if !minted && exchange.IDP != "" {
			v.add(field(path, key), fmt.Sprintf(`applies to tokens the embedded authorization server mints (idp: embedded); connector %s shapes its own`, quote(exchange.IDP)))
		}
	}
	switch exchange.Actor {
	case "", ActorAgent:
	case ActorGateway:
		shaped("actor")
		if exchange.Type == ExchangeImpersonation {
			v.add(field(path, "actor"), `"gateway" names the broker in act; impersonation tokens have no act (use type: delegation)`)
		}
	default:
		v.add(field(path, "actor"), fmt.Sprintf(`want "agent" or "gateway", got %s`, quote(exchange.Actor)))
	}
	switch exchange.SubjectFormat {
	case "", SubjectFormatPlain:
	case SubjectFormatQualified:
		shaped("subjectFormat")
	default:
		v.add(field(path, "subjectFormat"), fmt.Sprintf(`want "plain" or "qualified", got %s`, quote(exchange.SubjectFormat)))
	}
	if len(exchange.Claims) > 0 {
		shaped("claims")
	}
	seen := map[string]bool{}
	for i, claim := range exchange.Claims {
		claimPath := index(field(path, "claims"), i)
		switch {
		case claim.Name == "":
			v.add(field(claimPath, "name"), "required")
		case slices.Contains(registeredClaims, claim.Name):
			v.add(field(claimPath, "name"), fmt.Sprintf("%s is set by the broker itself", quote(claim.Name)))
		case seen[claim.Name]:
			v.add(field(claimPath, "name"), fmt.Sprintf("%s is named twice", quote(claim.Name)))
		}
		seen[claim.Name] = true
		if from, ok := strings.CutPrefix(claim.From, "user."); !ok || from == "" {
			v.add(field(claimPath, "from"), fmt.Sprintf(`want "user.<claim>", a claim of the agent's token, got %s`, quote(claim.From)))
		}
	}
}

// headerName is an HTTP field name (RFC 9110 token).
var headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// reservedHeaders carry the protocol; an identity header may not replace
// them.
var reservedHeaders = []string{"authorization", "host", "content-type", "content-length", "transfer-encoding", "connection",
	"upgrade", "te", "trailer", "accept", "accept-encoding", "cookie", "mcp-session-id", "mcp-protocol-version",
	"last-event-id", "traceparent", "tracestate", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}

func (v *validator) identityHeaders(path string, headers []IdentityHeader) {
	seen := map[string]bool{}
	for i, h := range headers {
		headerPath := index(path, i)
		name := strings.ToLower(h.Header)
		switch {
		case h.Header == "":
			v.add(field(headerPath, "header"), "required")
		case !headerName.MatchString(h.Header):
			v.add(field(headerPath, "header"), fmt.Sprintf("not an HTTP header name: %s", quote(h.Header)))
		case slices.Contains(reservedHeaders, name) || strings.HasPrefix(name, "proxy-"):
			v.add(field(headerPath, "header"), fmt.Sprintf("%s carries the protocol; choose another name", quote(h.Header)))
		case seen[name]:
			v.add(field(headerPath, "header"), fmt.Sprintf("%s is named twice", quote(h.Header)))
		}
		seen[name] = true
		if h.Claim == "" || strings.HasPrefix(h.Claim, ".") || strings.HasSuffix(h.Claim, ".") || strings.Contains(h.Claim, "..") {
			v.add(field(headerPath, "claim"), fmt.Sprintf(`want a claim of the agent's token, such as "sub", "groups" or "act.sub", got %s`, quote(h.Claim)))
		}
	}
}

func (v *validator) identityProvider(path, name string) {
	if name == "" {
		v.add(path, `required: "embedded" or the name of a connector`)
		return
	}
	if name == EmbeddedIdentityProvider {
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

// Bounds of listCache.ttl: below a second the cache would hardly serve a
// listing twice; above a day a list an upstream changed without saying so
// would be shown too long.
const (
	minListCacheTTL = Duration(time.Second)
	maxListCacheTTL = Duration(24 * time.Hour)
)

func (v *validator) listCache(path string, lc *ListCache) {
	switch lc.Scope {
	case ListCacheSubject, ListCacheShared:
	default:
		v.add(field(path, "scope"), fmt.Sprintf(`want "subject" or "shared", got %s`, quote(lc.Scope)))
	}
	if lc.TTL < minListCacheTTL || lc.TTL > maxListCacheTTL {
		v.add(field(path, "ttl"), fmt.Sprintf("want 1s to 24h, got %s", lc.TTL))
	}
}
