package config

import (
	"strings"
	"time"
)

// Defaults. They fill zero values only, so a value written in the file always
// wins; the flip side is that a duration or count cannot be set to zero
// explicitly where a default exists.
const (
	defaultAddress                = "127.0.0.1:8080"
	defaultMaxBodyBytes           = 4 << 20
	defaultShutdownTimeout        = Duration(10 * time.Second)
	defaultReadBodyTimeout        = Duration(30 * time.Second)
	defaultMaxConnections         = 10000
	defaultMaxConnectionsPerAddr  = 256
	defaultStreamPath             = "/mcp"
	defaultSessionHeaderName      = "Mcp-Session-Id"
	defaultSessionTimeout         = Duration(time.Hour)
	defaultSSEPath                = "/mcp/sse"
	defaultSSEMessagePath         = "/mcp/message"
	defaultSSEKeepAliveInterval   = Duration(30 * time.Second)
	defaultMetadataPath           = "/.well-known/oauth-protected-resource"
	defaultRefreshInterval        = Duration(24 * time.Hour)
	defaultClockSkew              = Duration(15 * time.Second)
	defaultUpstreamTimeout        = Duration(30 * time.Second)
	defaultDialTimeout            = Duration(10 * time.Second)
	defaultTCPKeepAliveInterval   = Duration(15 * time.Second)
	defaultMaxIdleConnections     = 100
	defaultMaxIdleConnectionsHost = 100
	defaultToolTTL                = Duration(5 * time.Second)
	defaultAccessTokenTTL         = Duration(time.Hour)
	defaultRefreshTokenTTL        = Duration(30 * 24 * time.Hour)
	defaultExchangeTTL            = Duration(time.Minute)
	defaultKeyRotation            = Duration(30 * 24 * time.Hour)
	defaultSigningAlgorithm       = "EdDSA"
	defaultListCacheTTL           = Duration(5 * time.Minute)
	defaultStdioIdleTimeout       = Duration(5 * time.Minute)
	defaultStdioMaxProcesses      = 100
	defaultDescriptionBytes       = 8 << 10
	defaultSchemaBytes            = 64 << 10
	defaultDefinitionBytes        = 128 << 10
	defaultArgumentBytes          = 64 << 10
	defaultArgumentDepth          = 32
	defaultArgumentStringBytes    = 16 << 10
	defaultAdminAddress           = "127.0.0.1:9464"
	defaultAuditDir               = "data/audit"
	defaultAuditQueueSize         = 10000
	defaultAuditMaxFileBytes      = 100 << 20
	defaultAuditMaxAge            = Duration(24 * time.Hour)
	defaultAuditCheckpointEvery   = 1000
	defaultAuditCheckpointPeriod  = Duration(time.Minute)
	defaultTraceSamplePercent     = 100
	defaultTraceServiceName       = "mcpbroker"
)

// What rate limits do when their store cannot be reached.
const (
	RateLimitsOpen   = "open"
	RateLimitsClosed = "closed"
)

// Audit durability and failure modes.
const (
	AuditSync     = "sync"
	AuditAsync    = "async"
	AuditRefuse   = "refuse"
	AuditContinue = "continue"
)

// defaultRedactedArguments are the argument members never recorded, when
// arguments are recorded and no list is given.
var defaultRedactedArguments = []string{"password", "secret", "token", "apiKey", "authorization", "cookie"}

// CurrentVersion is the format of configuration files this build reads.
const CurrentVersion = 1

// ApplyDefaults fills every zero value that has a default. It is idempotent
// and touches nothing outside c.
//
//	version                                       1 (CurrentVersion)
//	http.address                                  127.0.0.1:8080 (loopback: exposing the broker is a decision)
//	http.maxBodyBytes                             4 MiB
//	http.shutdownTimeout                          10s
//	http.readBodyTimeout                          30s
//	http.maxConnections                           10000
//	http.maxConnectionsPerAddress                 256
//	mcpProvider.transports                        stream enabled at /mcp with sessions, when neither sse nor stream is given
//	  stream.path                                 /mcp
//	  stream.session.headerName                   Mcp-Session-Id
//	  stream.session.timeout                      1h
//	  stream.session.maxSessions                  10000
//	  stream.session.maxPerSubject                100
//	  stream.session.maxPerAddress                1000
//	  sse.path, sse.messagePath                   /mcp/sse, /mcp/message
//	  sse.keepAlive.interval                      30s
//	mcpProvider.authorization.oauth.metadataPath  /.well-known/oauth-protected-resource
//	  servers[].refreshInterval                   24h
//	  servers[].tokenValidation.jwt.clockSkew     15s
//	apps[].toolNamespace                          enabled, named after the app: name + "_"
//	apps[].resourceNamespace                      none: the app shares the URIs no app declared
//	apps[].upstream.timeout                       30s
//	apps[].upstream.stream.connection             dialTimeout 10s, keepAlive.interval 15s,
//	                                              pool.maxIdleConns 100, pool.maxIdleConnsPerHost 100 (sse.connection too)
//	apps[].upstream.stdio                         isolation perSession, idleTimeout 5m, maxProcesses 100 (shared: 1)
//	apps[].authorization.outbound.tokenExchange.tools[].ttl  5s
//	apps[].listCache                              scope subject (exchanged tokens or identity headers) or shared, ttl 5m
//	apps[].toolPinning                            mode off, trustOnFirstUse true, pins[].kind tool,
//	                                              limits descriptionBytes 8 KiB, schemaBytes 64 KiB, definitionBytes 128 KiB
//	apps[].validation                             arguments off, results off,
//	                                              limits argumentBytes 64 KiB, depth 32, stringBytes 16 KiB
//	apps[].redaction.action                       mask (tools[].action: the app's)
//	authProvider.accessTokenTTL                   1h
//	  refreshTokenTTL, keyRotation                720h
//	  exchangeTTL                                 60s
//	  signingAlgorithm                            EdDSA (ES256 available)
//	  audiences                                   the stream endpoint under the issuer (issuer + stream path)
//	admin.address                                 127.0.0.1:9464
//	audit.dir                                     data/audit
//	  durability, onFailure                       sync, refuse
//	  queueSize                                   10000
//	  rotation                                    maxFileBytes 100 MiB, maxAge 24h
//	  checkpoint                                  every 1000 records, interval 1m
//	  arguments.redact                            password, secret, token, apiKey, authorization, cookie
//	telemetry.traces                              samplePercent 100, serviceName mcpbroker
func (c *Config) ApplyDefaults() {
	if c.Version == nil {
		c.Version = new(CurrentVersion)
	}
	setDefault(&c.HTTP.Address, defaultAddress)
	setDefault(&c.HTTP.MaxBodyBytes, defaultMaxBodyBytes)
	setDefault(&c.HTTP.ShutdownTimeout, defaultShutdownTimeout)
	setDefault(&c.HTTP.ReadBodyTimeout, defaultReadBodyTimeout)
	setDefault(&c.HTTP.MaxConnections, defaultMaxConnections)
	setDefault(&c.HTTP.MaxConnectionsPerAddress, defaultMaxConnectionsPerAddr)
	c.MCPProvider.applyDefaults()
	setDefault(&c.Admin.Address, defaultAdminAddress)
	c.Audit.applyDefaults()
	setDefault(&c.RateLimits.OnStoreFailure, RateLimitsClosed)
	if r := c.Storage.Redis; r != nil {
		setDefault(&r.KeyPrefix, "mcpbroker:")
	}
	for i := range c.RateLimits.Rules {
		rule := &c.RateLimits.Rules[i]
		if rule.Per == nil {
			rule.Per = []string{"subject", "client"}
		}
		setDefault(&rule.Burst, 1)
	}
	setDefault(&c.Telemetry.Traces.SamplePercent, defaultTraceSamplePercent)
	setDefault(&c.Telemetry.Traces.ServiceName, defaultTraceServiceName)
	if ap := c.AuthProvider; ap != nil {
		setDefault(&ap.AccessTokenTTL, defaultAccessTokenTTL)
		setDefault(&ap.RefreshTokenTTL, defaultRefreshTokenTTL)
		setDefault(&ap.ExchangeTTL, defaultExchangeTTL)
		setDefault(&ap.KeyRotation, defaultKeyRotation)
		setDefault(&ap.SigningAlgorithm, defaultSigningAlgorithm)
		if ap.IDJAG != nil {
			setDefault(&ap.IDJAG.TTL, Duration(5*time.Minute))
		}
		if len(ap.Audiences) == 0 && strings.Contains(ap.Issuer, "://") {
			if stream := c.MCPProvider.Transports.Stream; stream != nil && stream.Enabled {
				ap.Audiences = []string{strings.TrimSuffix(ap.Issuer, "/") + stream.Path}
			}
		}
	}
	for i := range c.Apps {
		c.Apps[i].applyDefaults()
	}
	if h := c.SessionHistory; h != nil {
		setDefault(&h.MaxCalls, DefaultHistoryCalls)
		setDefault(&h.Window, DefaultHistoryWindow)
	}
	setDefault(&c.Approvals.TTL, DefaultApprovalTTL)
	if c.Console.Enabled {
		setDefault(&c.Console.Listener, ConsoleOnAdmin)
		setDefault(&c.Console.Path, "/console")
		setDefault(&c.Console.SessionTTL, Duration(8*time.Hour))
		host := c.Admin.Address
		if c.Console.Listener == ConsoleOnMain {
			host = c.HTTP.Address
		}
		switch {
		case c.Console.URL != "":
		case c.Console.Listener == ConsoleOnMain && c.AuthProvider != nil && c.AuthProvider.Enabled && c.AuthProvider.Issuer != "":
			c.Console.URL = strings.TrimSuffix(c.AuthProvider.Issuer, "/") + c.Console.Path
		case host != "":
			if strings.HasPrefix(host, ":") {
				host = "127.0.0.1" + host
			}
			c.Console.URL = "http://" + host + c.Console.Path
		}
	}
	setDefault(&c.Approvals.MaxPendingPerUser, DefaultMaxPendingApprovals)
	for i := range c.Apps {
		for j := range c.Apps[i].Tools {
			if a := c.Apps[i].Tools[j].Approval; a != nil {
				setDefault(&a.Approvers, ApproversSelf)
			}
		}
	}
}

// Defaults of session history and approvals.
const (
	DefaultHistoryCalls        = 50
	DefaultHistoryWindow       = Duration(time.Hour)
	DefaultApprovalTTL         = Duration(10 * time.Minute)
	DefaultMaxPendingApprovals = 20
	// ApproversSelf names the user a call is made for as its approver.
	ApproversSelf = "self"
	// Listeners of the console.
	ConsoleOnAdmin = "admin"
	ConsoleOnMain  = "main"
)

func (provider *MCPProvider) applyDefaults() {
	transports := &provider.Transports
	if transports.SSE == nil && transports.Stream == nil {
		// Sessions on: MCP clients expect them, and they bind a
		// conversation to the subject that started it.
		transports.Stream = &StreamTransport{Enabled: true, Session: StreamSession{Enabled: true}}
	}
	if stream := transports.Stream; stream != nil {
		setDefault(&stream.Path, defaultStreamPath)
		setDefault(&stream.Session.HeaderName, defaultSessionHeaderName)
		setDefault(&stream.Session.Timeout, defaultSessionTimeout)
		setDefault(&stream.Session.MaxSessions, 10000)
		setDefault(&stream.Session.MaxPerSubject, 100)
		setDefault(&stream.Session.MaxPerAddress, 1000)
	}
	if sse := transports.SSE; sse != nil {
		setDefault(&sse.Path, defaultSSEPath)
		setDefault(&sse.MessagePath, defaultSSEMessagePath)
		setDefault(&sse.KeepAlive.Interval, defaultSSEKeepAliveInterval)
	}
	if oauth := provider.Authorization.OAuth; oauth != nil {
		setDefault(&oauth.MetadataPath, defaultMetadataPath)
		for i := range oauth.Servers {
			server := &oauth.Servers[i]
			setDefault(&server.RefreshInterval, defaultRefreshInterval)
			setDefault(&server.TokenValidation.JWT.ClockSkew, defaultClockSkew)
			setDefault(&server.TokenValidation.GroupsClaim, "groups")
		}
	}
}

func (app *App) applyDefaults() {
	if app.ToolNamespace == nil {
		app.ToolNamespace = &ToolNamespace{}
	}
	// An app without a name gets no derived namespace: the missing name is
	// reported, and a namespace of "_" would only add a second, confusing
	// problem.
	if !app.ToolNamespace.Disabled && app.Name != "" {
		setDefault(&app.ToolNamespace.Name, app.Name+"_")
	}
	setDefault(&app.Upstream.Timeout, defaultUpstreamTimeout)
	if b := app.Bridge; b != nil {
		setDefault(&b.Timeout, defaultUpstreamTimeout)
	}
	if stdio := app.Upstream.Stdio; stdio != nil {
		setDefault(&stdio.Isolation, StdioPerSession)
		setDefault(&stdio.IdleTimeout, defaultStdioIdleTimeout)
		if stdio.Isolation == StdioShared {
			setDefault(&stdio.MaxProcesses, 1)
		}
		setDefault(&stdio.MaxProcesses, defaultStdioMaxProcesses)
	}
	var connections []*Connection
	if s := app.Upstream.Stream; s != nil {
		connections = append(connections, &s.Connection)
	}
	if s := app.Upstream.SSE; s != nil {
		connections = append(connections, &s.Connection)
	}
	for _, connection := range connections {
		setDefault(&connection.DialTimeout, defaultDialTimeout)
		setDefault(&connection.KeepAlive.Interval, defaultTCPKeepAliveInterval)
		setDefault(&connection.Pool.MaxIdleConns, defaultMaxIdleConnections)
		setDefault(&connection.Pool.MaxIdleConnsPerHost, defaultMaxIdleConnectionsHost)
	}
	exchanged := app.Authorization != nil && app.Authorization.Outbound != nil && app.Authorization.Outbound.TokenExchange != nil
	if exchanged {
		tools := app.Authorization.Outbound.TokenExchange.Tools
		for i := range tools {
			setDefault(&tools[i].TTL, defaultToolTTL)
		}
	}
	if app.ListCache == nil {
		app.ListCache = &ListCache{}
	}
	if exchanged || len(app.IdentityHeaders) > 0 {
		setDefault(&app.ListCache.Scope, ListCacheSubject)
	}
	setDefault(&app.ListCache.Scope, ListCacheShared)
	setDefault(&app.ListCache.TTL, defaultListCacheTTL)
	if app.ToolPinning == nil {
		app.ToolPinning = &ToolPinning{}
	}
	pinning := app.ToolPinning
	setDefault(&pinning.Mode, PinningOff)
	if pinning.TrustOnFirstUse == nil {
		trust := true
		pinning.TrustOnFirstUse = &trust
	}
	setDefault(&pinning.Limits.DescriptionBytes, defaultDescriptionBytes)
	setDefault(&pinning.Limits.SchemaBytes, defaultSchemaBytes)
	setDefault(&pinning.Limits.DefinitionBytes, defaultDefinitionBytes)
	for i := range pinning.Pins {
		setDefault(&pinning.Pins[i].Kind, "tool")
	}
	if app.Validation == nil {
		app.Validation = &Validation{}
	}
	validation := app.Validation
	setDefault(&validation.Arguments, PinningOff)
	setDefault(&validation.Results, PinningOff)
	setDefault(&validation.Limits.ArgumentBytes, defaultArgumentBytes)
	setDefault(&validation.Limits.Depth, defaultArgumentDepth)
	setDefault(&validation.Limits.StringBytes, defaultArgumentStringBytes)
	if r := app.Redaction; r != nil {
		setDefault(&r.Action, RedactMask)
		for i := range r.Tools {
			setDefault(&r.Tools[i].Action, r.Action)
		}
	}
}

// setDefault stores fallback in *value when *value is the zero value.
func setDefault[T comparable](value *T, fallback T) {
	var zero T
	if *value == zero {
		*value = fallback
	}
}

func (audit *Audit) applyDefaults() {
	setDefault(&audit.Dir, defaultAuditDir)
	setDefault(&audit.Durability, AuditSync)
	setDefault(&audit.OnFailure, AuditRefuse)
	setDefault(&audit.QueueSize, defaultAuditQueueSize)
	setDefault(&audit.Rotation.MaxFileBytes, defaultAuditMaxFileBytes)
	setDefault(&audit.Rotation.MaxAge, defaultAuditMaxAge)
	setDefault(&audit.Checkpoint.Every, defaultAuditCheckpointEvery)
	setDefault(&audit.Checkpoint.Interval, defaultAuditCheckpointPeriod)
	if audit.Arguments.Record && audit.Arguments.Redact == nil {
		audit.Arguments.Redact = append([]string(nil), defaultRedactedArguments...)
	}
}
