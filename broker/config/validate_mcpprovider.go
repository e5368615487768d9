package config

import (
	"fmt"
	"net"
	"strings"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

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
		if !stream.Session.Enabled {
			// Served without sessions: what only a session has is refused.
			if stream.Session.AllowClientTermination {
				v.add(field(path, "session.allowClientTermination"), "there are no sessions to end with session.enabled: false")
			}
			if !stream.Session.Key.IsZero() {
				v.add(field(path, "session.key"), "there are no session ids to seal with session.enabled: false")
			}
		}
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
	v.unauthenticated(provider)
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
	if session.MaxSessions < 1 || session.MaxSessions > 1_000_000 {
		v.add(field(path, "maxSessions"), fmt.Sprintf("want 1 to 1000000, got %d", session.MaxSessions))
	}
	for _, limit := range []struct {
		key   string
		value int
	}{{"maxPerSubject", session.MaxPerSubject}, {"maxPerAddress", session.MaxPerAddress}} {
		if limit.value < 1 || limit.value > max(session.MaxSessions, 1) {
			v.add(field(path, limit.key), fmt.Sprintf("want 1 to maxSessions (%d), got %d", session.MaxSessions, limit.value))
		}
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
	if oauth.TLS != nil {
		v.upstreamTLS(field(path, "tls"), oauth.TLS, "https")
	}
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

// unauthenticated insists that serving agents without authentication is
// said, and said twice for an address beyond loopback.
func (v *validator) unauthenticated(provider *MCPProvider) {
	const path = "mcpProvider.authorization"
	authorization := &provider.Authorization
	open := authorization.ServesUnauthenticated()
	switch {
	case !provider.Enabled:
	case authorization.Authenticates() && open:
		v.add(path, "set oauth.enabled or unauthenticated.enabled, not both")
	case !authorization.Authenticates() && !open:
		v.add(path, "agents are not authenticated: set oauth.enabled: true with servers, or say unauthenticated: {enabled: true} to serve agents without authentication")
	case open && !authorization.Unauthenticated.AllowNonLoopback && !loopbackListen(v.config.HTTP.Address):
		v.add("http.address", fmt.Sprintf("%s is not a loopback address and agents are not authenticated: anyone who reaches it may use every app; "+
			"listen on 127.0.0.1, enable oauth, or set mcpProvider.authorization.unauthenticated.allowNonLoopback: true", quote(v.config.HTTP.Address)))
	}
	if u := authorization.Unauthenticated; u != nil && !u.Enabled && u.AllowNonLoopback {
		v.add(path+".unauthenticated.allowNonLoopback", "has no effect unless unauthenticated.enabled is true")
	}
}

// loopbackListen reports whether a listen address accepts loopback
// connections only.
func loopbackListen(address string) bool {
	host, _, err := net.SplitHostPort(address)
	return err == nil && host != "" && oauth.IsLoopbackHost(host)
}
