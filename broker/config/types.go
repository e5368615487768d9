package config

// The configuration tree. Keys are camelCase and follow Strata Maverics'
// orchestrator configuration, so mcpProvider, connectors and apps blocks carry
// over unchanged. Every struct here is decoded strictly: a key that has no
// field is an error reported with its path.

// Config is the whole broker configuration file.
type Config struct {
	// Version is the format of this file; 1, the only one, when left out
	// (Strata's files do not say).
	Version      *int          `yaml:"version"`
	HTTP         HTTP          `yaml:"http"`
	Storage      Storage       `yaml:"storage"`
	Connectors   []Connector   `yaml:"connectors"`
	AuthProvider *AuthProvider `yaml:"authProvider"`
	MCPProvider  MCPProvider   `yaml:"mcpProvider"`
	Apps         []App         `yaml:"apps"`
	Admin        Admin         `yaml:"admin"`
	Audit        Audit         `yaml:"audit"`
	Telemetry    Telemetry     `yaml:"telemetry"`
	Reload       Reload        `yaml:"reload"`
	RateLimits   RateLimits    `yaml:"rateLimits"`
	// SessionHistory, when set, keeps each session's calls for the
	// policies (input.session); nil keeps none.
	SessionHistory *SessionHistory `yaml:"sessionHistory"`
	// Approvals bounds the calls held for a person's approval.
	Approvals Approvals `yaml:"approvals"`
	// Console is the operators' web console on the admin listener.
	Console Console `yaml:"console"`
	// SecretProviders resolve secrets written as "<provider.key>", as in
	// Strata's files.
	SecretProviders []SecretProvider `yaml:"secretProviders"`
}

// SecretProvider is where "<name.key>" secrets are read from when a file
// is loaded: the environment (type env: the variable prefix + key), a
// YAML file of key: value (type file), or a folder with a file per key,
// as Kubernetes mounts a secret (type directory). Paths are relative to
// the configuration file.
type SecretProvider struct {
	Name   string `yaml:"name"`
	Type   string `yaml:"type"`
	Prefix string `yaml:"prefix"`
	Path   string `yaml:"path"`
}

// RateLimits bound how often agents may call, and how many calls may be in
// flight to one app.
type RateLimits struct {
	// OnStoreFailure: closed refuses calls while the limits' store cannot
	// be reached; open serves them unlimited (logged and counted).
	OnStoreFailure string          `yaml:"onStoreFailure"`
	Rules          []RateLimitRule `yaml:"rules"`
	// Concurrency bounds the calls in flight to an app, so one slow
	// upstream cannot hold every worker.
	Concurrency []ConcurrencyLimit `yaml:"concurrency"`
}

// RateLimitRule is one budget. Of the rules whose match fits a call, the
// most specific (the most match fields given) applies, the first written
// among equals.
type RateLimitRule struct {
	Name  string         `yaml:"name"`
	Match RateLimitMatch `yaml:"match"`
	// Per names whose budget it is: any of subject, client, app, tool;
	// default [subject, client]. Empty ([]) shares one budget among all
	// calls the rule matches.
	Per []string `yaml:"per"`
	// Rate calls per Period, with bursts of up to Burst calls.
	Rate   int      `yaml:"rate"`
	Period Duration `yaml:"period"`
	Burst  int      `yaml:"burst"`
}

// RateLimitMatch selects the calls a rule counts; an empty field matches
// anything.
type RateLimitMatch struct {
	Subject string `yaml:"subject"`
	Client  string `yaml:"client"`
	Group   string `yaml:"group"`
	App     string `yaml:"app"`
	Tool    string `yaml:"tool"`
	Method  string `yaml:"method"`
}

// ConcurrencyLimit bounds the calls in flight to one app.
type ConcurrencyLimit struct {
	App string `yaml:"app"`
	Max int    `yaml:"max"`
}

// Admin is the operator's listener: /metrics, /healthz and /readyz, apart
// from the agents' listener. On by default, on loopback.
type Admin struct {
	Disabled bool   `yaml:"disabled"`
	Address  string `yaml:"address"`
	// Token is the bearer token the operator endpoints (/pins, what
	// `mcpbroker tools` uses) require; without it they are not served.
	Token Secret `yaml:"token"`
}

// Audit is the audit trail: one record per decision, in hash-chained JSON
// Lines files with signed checkpoints. On by default.
type Audit struct {
	Disabled bool `yaml:"disabled"`
	// Dir holds the trail; relative paths are from the configuration
	// file's folder. Default data/audit.
	Dir string `yaml:"dir"`
	// Durability: sync answers a call only once its record is on disk;
	// async answers at once and writes behind, through a bounded queue.
	Durability string `yaml:"durability"`
	// OnFailure: refuse answers calls with an error while records cannot
	// be written; continue serves them, logged and counted.
	OnFailure  string          `yaml:"onFailure"`
	QueueSize  int             `yaml:"queueSize"`
	Rotation   AuditRotation   `yaml:"rotation"`
	Checkpoint AuditCheckpoint `yaml:"checkpoint"`
	Arguments  AuditArguments  `yaml:"arguments"`
	Sinks      AuditSinks      `yaml:"sinks"`
}

// AuditRotation starts a new file past a size or an age.
type AuditRotation struct {
	MaxFileBytes int64    `yaml:"maxFileBytes"`
	MaxAge       Duration `yaml:"maxAge"`
}

// AuditCheckpoint signs the chain every so many records or so often.
type AuditCheckpoint struct {
	Every    int      `yaml:"every"`
	Interval Duration `yaml:"interval"`
}

// AuditArguments puts a call's arguments in its record, with the members
// named in Redact replaced at any depth. Off by default: records carry the
// arguments' digest only.
type AuditArguments struct {
	Record bool     `yaml:"record"`
	Redact []string `yaml:"redact"`
}

// AuditSinks are copies of every record besides the trail, best effort.
type AuditSinks struct {
	Stdout StdoutSink `yaml:"stdout"`
	OTLP   OTLPSink   `yaml:"otlp"`
}

// StdoutSink writes records as JSON lines on standard output.
type StdoutSink struct {
	Enabled bool `yaml:"enabled"`
}

// OTLPSink exports records as OpenTelemetry log records over OTLP/HTTP.
type OTLPSink struct {
	Enabled  bool   `yaml:"enabled"`
	Endpoint string `yaml:"endpoint"`
	Insecure bool   `yaml:"insecure"`
}

// Telemetry is what the broker tells observability systems.
type Telemetry struct {
	Traces Traces `yaml:"traces"`
}

// Traces exports OpenTelemetry traces over OTLP/HTTP: one span per call,
// the pipeline's stages as its children. Without an endpoint the standard
// OTEL_EXPORTER_OTLP_* variables decide.
type Traces struct {
	Enabled       bool   `yaml:"enabled"`
	Endpoint      string `yaml:"endpoint"`
	Insecure      bool   `yaml:"insecure"`
	SamplePercent int    `yaml:"samplePercent"`
	ServiceName   string `yaml:"serviceName"`
}

// Reload re-reads the configuration on SIGHUP, and on every change of the
// file when Watch is set.
type Reload struct {
	Watch bool `yaml:"watch"`
}

// HTTP is the listener every transport is served on.
type HTTP struct {
	// Address to listen on; loopback by default.
	Address string `yaml:"address"`
	TLS     *TLS   `yaml:"tls"`
	// AllowedHosts lists the Host header values accepted (host or host:port).
	// Empty means: loopback names only when bound to loopback, any otherwise.
	AllowedHosts []string `yaml:"allowedHosts"`
	// AllowedOrigins lists the Origin header values accepted besides
	// same-origin requests. A request without Origin is accepted.
	AllowedOrigins []string `yaml:"allowedOrigins"`
	// TrustedProxies are the addresses (CIDRs or IPs) of the proxies and
	// load balancers in front of the broker: only from them are
	// X-Forwarded-For and Forwarded believed, for the client's address in
	// policies, throttles, limits and audit records.
	TrustedProxies []string `yaml:"trustedProxies"`
	// ForwardedHost also believes, from trusted proxies, the host and
	// scheme the client used (X-Forwarded-Host and -Proto, or Forwarded
	// host= and proto=), for the resource URL and its metadata.
	ForwardedHost bool `yaml:"forwardedHost"`
	// MaxBodyBytes caps one request body; 0 means the default (4 MiB).
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// ShutdownTimeout bounds graceful shutdown (default 10s).
	ShutdownTimeout Duration `yaml:"shutdownTimeout"`
	// ReadBodyTimeout bounds how long a request's body may take to arrive
	// (default 30s); requests without a body, such as event streams, are
	// not cut by it.
	ReadBodyTimeout Duration `yaml:"readBodyTimeout"`
	// MaxConnections bounds the open connections (default 10000);
	// MaxConnectionsPerAddress bounds those from one client address
	// (default 256). Connections beyond them are closed as they arrive.
	MaxConnections           int `yaml:"maxConnections"`
	MaxConnectionsPerAddress int `yaml:"maxConnectionsPerAddress"`
}

// TLS names a certificate and key in PEM files.
type TLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ClientCA, a PEM file of CA certificates, makes clients present a
	// certificate one of them issued (mutual TLS).
	ClientCA string `yaml:"clientCA"`
	// ClientAuth is "require" (the default with clientCA: no certificate,
	// no connection) or "verifyIfGiven" (a certificate given must verify).
	ClientAuth string `yaml:"clientAuth"`
}

// Storage selects where state lives.
type Storage struct {
	Bolt  *BoltStorage  `yaml:"bolt"`
	Redis *RedisStorage `yaml:"redis"`
}

// BoltStorage is the embedded single-file store.
type BoltStorage struct {
	Path string `yaml:"path"`
}

// RedisStorage is the shared store for several replicas.
type RedisStorage struct {
	// Addresses: one for a single server; several for a cluster
	// (Cluster) or the sentinels of MasterName.
	Addresses  []string `yaml:"addresses"`
	MasterName string   `yaml:"masterName"`
	Cluster    bool     `yaml:"cluster"`
	Username   string   `yaml:"username"`
	Password   Secret   `yaml:"password"`
	DB         int      `yaml:"db"`
	// KeyPrefix begins every key the broker writes, so that several
	// deployments can share a server. Default "mcpbroker:".
	KeyPrefix string    `yaml:"keyPrefix"`
	TLS       *RedisTLS `yaml:"tls"`
}

// RedisTLS connects to Redis over TLS.
type RedisTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"caFile"`     // PEM; default the system's roots
	ServerName string `yaml:"serverName"` // default the address's host
}

// Connector is an external identity provider.
type Connector struct {
	Name              string `yaml:"name"`
	Type              string `yaml:"type"`
	OIDCWellKnownURL  string `yaml:"oidcWellKnownURL"`
	OAuthClientID     string `yaml:"oauthClientID"`
	OAuthClientSecret Secret `yaml:"oauthClientSecret"`
	// OAuthLoginRedirect's first URL is where the identity provider sends
	// the browser back after a federated sign-in (registered with it);
	// the broker serves the callback at its path. Default <issuer>/callback.
	OAuthLoginRedirect *Redirects `yaml:"oauthLoginRedirect"`
	// OAuthLogoutRedirect lists where <issuer>/logout may send the browser
	// after signing out (the first unless the request names another),
	// through the identity provider's RP-initiated logout when it offers
	// one.
	OAuthLogoutRedirect *Redirects `yaml:"oauthLogoutRedirect"`
	// Scopes asked for at sign-in (openid is always asked); default
	// openid, profile, email. OfflineAccess adds offline_access.
	Scopes        []string `yaml:"scopes"`
	OfflineAccess bool     `yaml:"offlineAccess"`
	// DisablePKCE leaves PKCE out of the sign-in, for identity providers
	// that refuse it.
	DisablePKCE bool `yaml:"disablePKCE"`
	// TLS reaches the identity provider through the enterprise's own PKI
	// (sign-in: discovery, keys, code redemption).
	TLS *UpstreamTLS `yaml:"tls"`
	// IDJAGIssuer: the Auth Provider takes the Identity Assertion JWT
	// Authorization Grants this provider signs (the JWT bearer grant of
	// MCP's enterprise-managed authorization).
	IDJAGIssuer bool `yaml:"idJagIssuer"`
}

// Connector returns the connector with the given name, or nil.
func (c *Config) Connector(name string) *Connector {
	for i := range c.Connectors {
		if c.Connectors[i].Name == name {
			return &c.Connectors[i]
		}
	}
	return nil
}

// Redirects is a list of redirect URLs.
type Redirects struct {
	URLs []string `yaml:"urls"`
}

// AuthProvider is the embedded authorization server: the Auth Provider role.
// It issues access tokens to agents (authorization code with PKCE, refresh,
// client credentials) and serves the token-exchange grant to other brokers.
type AuthProvider struct {
	Enabled bool `yaml:"enabled"`
	// Issuer is the base URL the server is reached at; its metadata, JWKS
	// and endpoints are served under it on this broker's listener.
	Issuer string `yaml:"issuer"`
	// Audiences are the resources tokens may be issued for (RFC 8707
	// resource indicators); the first is used when a client names none.
	// Default: this broker's MCP endpoint under the issuer.
	Audiences []string `yaml:"audiences"`
	// Scopes are the scopes clients may request (scopes_supported).
	Scopes []string `yaml:"scopes"`
	// AccessTokenTTL is the lifetime of tokens issued to agents (default 1h, at most 1h).
	AccessTokenTTL Duration `yaml:"accessTokenTTL"`
	// RefreshTokenTTL is the lifetime of refresh tokens (default 720h).
	RefreshTokenTTL Duration `yaml:"refreshTokenTTL"`
	// ExchangeTTL is the lifetime of tokens from the token-exchange grant
	// (default 60s, at most 1h).
	ExchangeTTL Duration `yaml:"exchangeTTL"`
	// KeyRotation replaces the signing keys this often (default 720h); a
	// replaced key stays published until its tokens have expired.
	KeyRotation Duration `yaml:"keyRotation"`
	// SigningAlgorithm for the tokens it mints: EdDSA (default) or ES256.
	SigningAlgorithm string `yaml:"signingAlgorithm"`
	Login            Login  `yaml:"login"`
	// Registration is RFC 7591 dynamic client registration.
	Registration Registration     `yaml:"registration"`
	Clients      []ProviderClient `yaml:"clients"`
	// IDJAG, when set, makes the Auth Provider the company's identity
	// provider for enterprise-managed authorization: it issues Identity
	// Assertion JWT Authorization Grants for the resource applications
	// listed, as the policy decides.
	IDJAG *IDJAGIssuing `yaml:"idJag"`
}

// Login is how users sign in at the authorization endpoint: local users,
// or federated through an OIDC connector. Exactly one of the two.
type Login struct {
	Users     []LoginUser `yaml:"users"`
	Connector string      `yaml:"connector"`
}

// LoginUser is a local user. PasswordHash is a bcrypt hash
// (mcpbroker token hash-password prints one).
type LoginUser struct {
	Username     string   `yaml:"username"`
	PasswordHash Secret   `yaml:"passwordHash"`
	Name         string   `yaml:"name"`
	Email        string   `yaml:"email"`
	Groups       []string `yaml:"groups"`
}

// Registration configures RFC 7591 dynamic client registration. Registered
// clients are public (PKCE, no secret) or confidential with a generated
// secret; they get the authorization_code and refresh_token grants only.
type Registration struct {
	Enabled bool `yaml:"enabled"`
	// ClientIDMetadataDocuments lets clients use an https URL as their
	// client_id, whose JSON document the server fetches and trusts for
	// redirect URIs (draft-ietf-oauth-client-id-metadata-document, as MCP
	// clients use it); such clients are public.
	ClientIDMetadataDocuments bool `yaml:"clientIDMetadataDocuments"`
}

// ProviderClient is a client registered in configuration.
type ProviderClient struct {
	ClientID string `yaml:"clientID"`
	// ClientSecret makes the client confidential; empty means public
	// (authorization code with PKCE only).
	ClientSecret Secret   `yaml:"clientSecret"`
	Name         string   `yaml:"name"`
	RedirectURIs []string `yaml:"redirectURIs"`
	// GrantTypes allowed: authorization_code, refresh_token,
	// client_credentials, urn:ietf:params:oauth:grant-type:token-exchange.
	// Default: authorization_code and refresh_token.
	GrantTypes []string `yaml:"grantTypes"`
	// Scopes the client may request; default: authProvider.scopes.
	Scopes []string `yaml:"scopes"`
	// Audiences the client may request tokens for; default: authProvider.audiences.
	Audiences []string `yaml:"audiences"`
	// SubjectAudiences are the audiences of the subject tokens this client
	// may exchange (token-exchange grant); default: authProvider.audiences,
	// the resources agents get tokens for — never tokens minted for an
	// upstream.
	SubjectAudiences []string `yaml:"subjectAudiences"`
	// Introspect lets this confidential client call the introspection
	// endpoint (RFC 7662); resource servers that take opaque checks.
	Introspect bool `yaml:"introspect"`
	// Groups are put in client_credentials tokens, where the client is the subject.
	Groups []string `yaml:"groups"`
	// SkipConsent is for first-party clients whose consent is implied.
	SkipConsent bool `yaml:"skipConsent"`
}

// MCPProvider is the MCP front end agents connect to.
type MCPProvider struct {
	Enabled       bool                  `yaml:"enabled"`
	Transports    Transports            `yaml:"transports"`
	Authorization ProviderAuthorization `yaml:"authorization"`
}

// Transports are the MCP transports served to agents.
type Transports struct {
	SSE    *SSETransport    `yaml:"sse"`
	Stream *StreamTransport `yaml:"stream"`
}

// SSETransport is the legacy HTTP+SSE transport (protocol 2024-11-05).
type SSETransport struct {
	Enabled     bool      `yaml:"enabled"`
	Path        string    `yaml:"path"`
	MessagePath string    `yaml:"messagePath"`
	KeepAlive   KeepAlive `yaml:"keepAlive"`
}

// KeepAlive sends SSE comments so idle intermediaries keep the stream open.
type KeepAlive struct {
	Enabled  bool     `yaml:"enabled"`
	Interval Duration `yaml:"interval"`
}

// StreamTransport is the Streamable HTTP transport.
type StreamTransport struct {
	Enabled bool          `yaml:"enabled"`
	Path    string        `yaml:"path"`
	Session StreamSession `yaml:"session"`
}

// StreamSession configures Streamable HTTP sessions.
type StreamSession struct {
	Enabled bool `yaml:"enabled"`
	// HeaderName carries the session id (default Mcp-Session-Id).
	HeaderName             string `yaml:"headerName"`
	AllowClientTermination bool   `yaml:"allowClientTermination"`
	// Timeout ends a session idle this long (default 1h).
	Timeout Duration `yaml:"timeout"`
	// Key seals session ids (32 bytes, base64). Replicas that share a key
	// serve each other's sessions. Empty: a random key per process.
	Key Secret `yaml:"key"`
	// MaxSessions bounds the live sessions of this process (default
	// 10000); MaxPerSubject those of one user (100), MaxPerAddress those
	// of one client address (1000), the only bound on one client when
	// nothing is authenticated. Both transports count against them.
	MaxSessions   int `yaml:"maxSessions"`
	MaxPerSubject int `yaml:"maxPerSubject"`
	MaxPerAddress int `yaml:"maxPerAddress"`
}

// ProviderAuthorization is how agents authenticate to the provider.
type ProviderAuthorization struct {
	OAuth *OAuth `yaml:"oauth"`
	// Unauthenticated serves agents without authentication: it must be
	// said, since then nothing is known of who calls.
	Unauthenticated *Unauthenticated `yaml:"unauthenticated"`
}

// Unauthenticated says, in so many words, that agents are not
// authenticated. The broker then listens on loopback only, unless
// AllowNonLoopback says so again.
type Unauthenticated struct {
	Enabled          bool `yaml:"enabled"`
	AllowNonLoopback bool `yaml:"allowNonLoopback"`
}

// Authenticates reports whether agents are authenticated (oauth enabled).
func (a *ProviderAuthorization) Authenticates() bool { return a.OAuth != nil && a.OAuth.Enabled }

// Unauthenticated reports whether agents are served without
// authentication, as configured.
func (a *ProviderAuthorization) ServesUnauthenticated() bool {
	return a.Unauthenticated != nil && a.Unauthenticated.Enabled
}

// OAuth makes the provider an OAuth 2.1 resource server.
type OAuth struct {
	Enabled bool `yaml:"enabled"`
	// MetadataPath serves the Protected Resource Metadata (RFC 9728;
	// default /.well-known/oauth-protected-resource).
	MetadataPath string        `yaml:"metadataPath"`
	Servers      []OAuthServer `yaml:"servers"`
	// Resource is the resource identifier clients use (RFC 8707/9728). Empty:
	// the URL of the endpoint as the client called it.
	Resource string `yaml:"resource"`
	// RequiredScopes must all be granted to a token, else 403
	// insufficient_scope.
	RequiredScopes []string `yaml:"requiredScopes"`
	// ScopesSupported is advertised in Protected Resource Metadata;
	// default: RequiredScopes.
	ScopesSupported []string `yaml:"scopesSupported"`
	// AllowPrivateNetworks lets metadata, JWKS and introspection requests
	// reach private addresses (RFC 1918, ULA), for on-premises identity
	// providers. Link-local addresses stay refused.
	AllowPrivateNetworks bool `yaml:"allowPrivateNetworks"`
	// TLS reaches the servers (metadata, keys, introspection) through the
	// enterprise's own PKI: its roots, a client certificate.
	TLS *UpstreamTLS `yaml:"tls"`
}

// OAuthServer is one trusted authorization server.
type OAuthServer struct {
	WellKnownEndpoint string `yaml:"wellKnownEndpoint"`
	// RefreshInterval is how often metadata and keys are fetched again
	// (default 24h, at least 1m).
	RefreshInterval Duration        `yaml:"refreshInterval"`
	TokenValidation TokenValidation `yaml:"tokenValidation"`
}

// TokenValidation says how access tokens from a server are checked.
type TokenValidation struct {
	Method            string         `yaml:"method"`
	ExpectedAudiences []string       `yaml:"expectedAudiences"`
	JWT               JWT            `yaml:"jwt"`
	Introspection     *Introspection `yaml:"introspection"`
	// RelaxedAudience accepts tokens whatever their audience, for identity
	// providers without resource indicators (RFC 8707). It is logged loudly:
	// a token minted for another service is then accepted here.
	RelaxedAudience bool `yaml:"relaxedAudience"`
	// GroupsClaim names the claim that carries groups or roles ("groups").
	GroupsClaim string `yaml:"groupsClaim"`
}

// Introspection names the connector whose client credentials authenticate
// the broker to the introspection endpoint (RFC 7662).
type Introspection struct {
	Connector string `yaml:"connector"`
}

// JWT tunes JWT access-token validation.
type JWT struct {
	// ClockSkew is the leeway for exp and nbf (default 15s, at most 5m).
	ClockSkew Duration `yaml:"clockSkew"`
	// Algorithms is the signature allow-list (asymmetric algorithms only).
	Algorithms []string `yaml:"algorithms"`
	// AllowMissingTyp accepts access tokens without typ at+jwt, for
	// identity providers that omit it.
	AllowMissingTyp bool `yaml:"allowMissingTyp"`
}

// AppType is the kind of an app.
type AppType string

// App types.
const (
	AppMCPProxy  AppType = "mcpProxy"  // an upstream MCP server
	AppMCPBridge AppType = "mcpBridge" // a REST API described by OpenAPI
)

// OutboundType is how an app's upstream is authenticated to.
type OutboundType string

// Outbound types.
const (
	OutboundTokenExchange OutboundType = "tokenExchange"
	OutboundIDJAG         OutboundType = "idJag"
	OutboundUnprotected   OutboundType = "unprotected"
)

// ExchangeType is what an exchanged token says of the agent.
type ExchangeType string

// Exchange types.
const (
	ExchangeDelegation    ExchangeType = "delegation"
	ExchangeImpersonation ExchangeType = "impersonation"
)

// EmbeddedIdentityProvider names the embedded authorization server
// (authProvider) in tokenExchange.idp, which is why no connector may take
// the name; any other name is a connector's.
const EmbeddedIdentityProvider = "embedded"

// App is one upstream application.
type App struct {
	Name string  `yaml:"name"`
	Type AppType `yaml:"type"`
	// ToolNamespace left out means enabled, named after the app with "_"
	// appended; after ApplyDefaults it is never nil.
	ToolNamespace *ToolNamespace `yaml:"toolNamespace"`
	// ResourceNamespace left out means the app declares no resource URIs
	// of its own: it is routed the URIs it lists that no app declared.
	ResourceNamespace *ResourceNamespace `yaml:"resourceNamespace"`
	Upstream          Upstream           `yaml:"upstream"`
	// Bridge is an mcpBridge app's REST API; only those have it.
	Bridge        *Bridge           `yaml:"bridge"`
	Authorization *AppAuthorization `yaml:"authorization"`
	// IdentityHeaders tell the upstream who calls beside the token: each
	// request carries the header with the value of a claim of the agent's
	// token. Only the broker sets them.
	IdentityHeaders []IdentityHeader `yaml:"identityHeaders"`
	// ListCache says for how long and for whom the app's lists are kept;
	// after ApplyDefaults it is never nil.
	ListCache *ListCache `yaml:"listCache"`
	// ToolPinning holds the app's tool, prompt and resource-template
	// definitions to what was approved; after ApplyDefaults it is never
	// nil.
	ToolPinning *ToolPinning `yaml:"toolPinning"`
	// Validation checks tools/call arguments against the tool's
	// inputSchema, and structuredContent against its outputSchema; after
	// ApplyDefaults it is never nil.
	Validation *Validation `yaml:"validation"`
	// Redaction finds secrets and personal data in the app's results (and
	// in arguments before the audit trail records them).
	Redaction *Redaction `yaml:"redaction"`
	// Labels are data labels every call to the app carries in the session
	// history and the policy input (confidential for a source, external
	// for a sink, ...).
	Labels []string `yaml:"labels"`
	// Tools say of single tools, by their upstream name, what labels they
	// add and whether each call needs a person's approval.
	Tools []AppTool `yaml:"tools"`
}

// AppTool is what the configuration says of one of an app's tools.
type AppTool struct {
	// Name is the tool's upstream name (without the app's prefix).
	Name   string   `yaml:"name"`
	Labels []string `yaml:"labels"`
	// Approval, when required, holds every call of the tool until a
	// person approves exactly that call.
	Approval *ToolApproval `yaml:"approval"`
}

// ToolApproval holds a tool's calls for approval.
type ToolApproval struct {
	Required bool `yaml:"required"`
	// Approvers is "self" (the user the call is made for; the default) or
	// the name of a group whose members, never the user, approve.
	Approvers string `yaml:"approvers"`
	// TTL is how long an approval stays good for its one call (default
	// approvals.ttl).
	TTL Duration `yaml:"ttl"`
	// Reason is shown to the approver and told the agent.
	Reason string `yaml:"reason"`
}

// Console is the web console the people who run the broker sign in to,
// served on the admin listener.
type Console struct {
	Enabled bool `yaml:"enabled"`
	// Listener serves it: "admin" (the default: admin.address) or
	// "main" (http.address, beside the agents' endpoints).
	Listener string `yaml:"listener"`
	// Path is where the listener serves it (default /console).
	Path string `yaml:"path"`
	// URL is the console's address as browsers reach it, for the
	// sign-in's redirect (default http://<admin.address><path>, or on the
	// main listener the Auth Provider's issuer or http://<http.address>
	// followed by the path).
	URL string `yaml:"url"`
	// SignIn says where people sign in: the embedded Auth Provider (the
	// default), or an OIDC connector, at which <url>/callback must be
	// registered for the connector's client.
	SignIn ConsoleSignIn `yaml:"signIn"`
	// Operators are the groups whose members may act (approve and revoke
	// pins); Viewers those who may look. Anyone else is refused.
	Operators []string `yaml:"operators"`
	Viewers   []string `yaml:"viewers"`
	// SessionTTL is how long a sign-in lasts (default 8h).
	SessionTTL Duration `yaml:"sessionTTL"`
	// TraceURL links a record's trace id to where traces are read:
	// {traceId} is replaced (https://tempo.example/trace/{traceId}).
	TraceURL string `yaml:"traceURL"`
}

// ConsoleSignIn names where people sign in to the console.
type ConsoleSignIn struct {
	Connector string `yaml:"connector"`
}

// IDJAGIssuing is the Auth Provider issuing ID-JAGs.
type IDJAGIssuing struct {
	// TTL is how long a grant lives (default 5m, at most 10m).
	TTL Duration `yaml:"ttl"`
	// Resources are the resource applications grants may be issued for.
	Resources []IDJAGResource `yaml:"resources"`
	// Policy decides (package orchestrator, rule result): input.client_id,
	// input.subject.{sub,groups}, input.resource_application.{name,
	// audience,resource}, input.scopes; result {"allowed", "scopes"?,
	// "external_message"?}.
	Policy *OPAPolicy `yaml:"policy"`
}

// IDJAGResource is a resource application: its authorization server's
// issuer (audience), its resources and the scopes grants may carry.
type IDJAGResource struct {
	Name      string   `yaml:"name"`
	Audience  string   `yaml:"audience"`
	Resources []string `yaml:"resources"`
	Scopes    []string `yaml:"scopes"`
}

// SessionHistory bounds what is kept of each session's calls: the last
// MaxCalls within Window.
type SessionHistory struct {
	MaxCalls int      `yaml:"maxCalls"`
	Window   Duration `yaml:"window"`
}

// Approvals are the defaults and bounds of calls held for approval.
type Approvals struct {
	// TTL is how long a request waits for its approver and an approval
	// stays good, when the policy or the tool does not say (default 10m).
	TTL Duration `yaml:"ttl"`
	// MaxPendingPerUser bounds the approvals one user has waiting
	// (default 20).
	MaxPendingPerUser int `yaml:"maxPendingPerUser"`
}

// Bridge is a REST API served as MCP tools: one per operation of its
// OpenAPI document that the operations selectors keep.
type Bridge struct {
	// BaseURL is where the API is; every request goes under it.
	BaseURL string `yaml:"baseURL"`
	// OpenAPI names the document (3.0 or 3.1, JSON or YAML); a relative
	// file is relative to the configuration file.
	OpenAPI BridgeOpenAPI `yaml:"openapi"`
	// Operations keep (include) or drop (exclude) operations, each by
	// operationId, "tag:<tag>" or "<METHOD> <path>".
	Operations BridgeOperations `yaml:"operations"`
	// Tools say of single tools, by operationId, what the document does
	// not, or otherwise.
	Tools []BridgeTool `yaml:"tools"`
	// Timeout bounds one REST call (default 30s).
	Timeout Duration `yaml:"timeout"`
}

// BridgeOpenAPI names an OpenAPI document: a file, or a URL it is
// fetched from when the apps are built (https, or http on loopback; no
// redirects; link-local and, unless allowed, private addresses refused).
type BridgeOpenAPI struct {
	File                 string `yaml:"file"`
	URL                  string `yaml:"url"`
	AllowPrivateNetworks bool   `yaml:"allowPrivateNetworks"`
}

// BridgeOperations select a document's operations.
type BridgeOperations struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// BridgeTool overrides what one operation's tool says of itself.
type BridgeTool struct {
	OperationID string `yaml:"operationId"`
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Annotations replace the hints the HTTP method gives.
	Annotations *BridgeAnnotations `yaml:"annotations"`
	// A tool declared here, for an API without a document, has no
	// operationId but its name, method and path, its parameters (OpenAPI
	// parameter objects) and its JSON body.
	Method     string            `yaml:"method"`
	Path       string            `yaml:"path"`
	Parameters []BridgeParameter `yaml:"parameters"`
	Body       *BridgeBody       `yaml:"body"`
}

// BridgeParameter is an OpenAPI parameter object.
type BridgeParameter struct {
	Name        string    `yaml:"name"`
	In          string    `yaml:"in"`
	Description string    `yaml:"description"`
	Required    bool      `yaml:"required"`
	Style       string    `yaml:"style"`
	Explode     *bool     `yaml:"explode"`
	Schema      JSONValue `yaml:"schema"`
}

// BridgeBody is a declared tool's JSON request body.
type BridgeBody struct {
	Required bool      `yaml:"required"`
	Schema   JSONValue `yaml:"schema"`
}

// JSONValue is any YAML value JSON can write (a JSON Schema), kept as
// JSON.
type JSONValue []byte

// BridgeAnnotations are the MCP tool annotations an operator gives.
type BridgeAnnotations struct {
	Title           string `yaml:"title"`
	ReadOnlyHint    *bool  `yaml:"readOnlyHint"`
	DestructiveHint *bool  `yaml:"destructiveHint"`
	IdempotentHint  *bool  `yaml:"idempotentHint"`
	OpenWorldHint   *bool  `yaml:"openWorldHint"`
}

// ToolPinning keeps, per app and definition, the SHA-256 of its canonical
// form, and what a changed or new definition gets.
type ToolPinning struct {
	// Mode is "enforce" (a definition that differs from its pin, or is not
	// clean, is left out of lists and refused on call), "warn" (served and
	// reported) or "off" (the default).
	Mode string `yaml:"mode"`
	// TrustOnFirstUse pins a definition seen for the first time (default
	// true); false holds it until an operator approves it.
	TrustOnFirstUse *bool `yaml:"trustOnFirstUse"`
	// Limits bound a definition's size; bigger ones are refused like a
	// changed pin.
	Limits DefinitionLimits `yaml:"limits"`
	// Pins are declared here rather than approved in the store; they win
	// over the store and cannot be approved away.
	Pins []DeclaredPin `yaml:"pins"`
}

// DefinitionLimits bound what an upstream may list, in bytes.
type DefinitionLimits struct {
	DescriptionBytes int `yaml:"descriptionBytes"`
	SchemaBytes      int `yaml:"schemaBytes"`
	DefinitionBytes  int `yaml:"definitionBytes"`
}

// DeclaredPin is one pin of toolPinning.pins.
type DeclaredPin struct {
	// Kind is "tool" (default), "prompt" or "resourceTemplate".
	Kind string `yaml:"kind"`
	// Name is the upstream's name of the tool or prompt, or the URI
	// template of a resource template.
	Name string `yaml:"name"`
	// SHA256 is the hex digest `mcpbroker tools list` shows.
	SHA256 string `yaml:"sha256"`
}

// Tool pinning modes, also those of validation.
const (
	PinningEnforce = "enforce"
	PinningWarn    = "warn"
	PinningOff     = "off"
)

// Validation checks what crosses the broker against the tool's own
// schemas, and bounds arguments.
type Validation struct {
	// Arguments: "enforce" answers a tools/call whose arguments do not
	// match the inputSchema with an isError result naming the failing
	// paths, before the policy and the upstream see it; "off" (default).
	Arguments string `yaml:"arguments"`
	// Results: "enforce" turns a result whose structuredContent does not
	// match the outputSchema into an isError result; "off" (default).
	Results string           `yaml:"results"`
	Limits  ValidationLimits `yaml:"limits"`
}

// ValidationLimits bound a tools/call's arguments, checked whenever
// validation.arguments is enforce.
type ValidationLimits struct {
	ArgumentBytes int `yaml:"argumentBytes"`
	Depth         int `yaml:"depth"`
	StringBytes   int `yaml:"stringBytes"`
}

// Redaction masks, blocks or only reports what its detectors find in
// results: text content, structuredContent and embedded resources.
type Redaction struct {
	// Detectors name what to look for; empty: every detector.
	Detectors []string `yaml:"detectors"`
	// Action is "mask" (each finding replaced by [REDACTED:<kind>]),
	// "block" (the result replaced by an isError result) or "audit" (the
	// result passes, the audit record says what was found).
	Action string `yaml:"action"`
	// Tools override detectors and action for single tools.
	Tools []ToolRedaction `yaml:"tools"`
}

// ToolRedaction is the redaction of one tool.
type ToolRedaction struct {
	Name      string   `yaml:"name"`
	Detectors []string `yaml:"detectors"`
	Action    string   `yaml:"action"`
}

// Redaction actions.
const (
	RedactMask  = "mask"
	RedactBlock = "block"
	RedactAudit = "audit"
)

// ListCache keeps what an app's upstream lists (tools, prompts,
// resources, templates), so listings do not ask it again until it says a
// list changed, the TTL passes or the app is reloaded.
type ListCache struct {
	// Scope is "subject" (each caller's lists apart: an upstream that
	// learns who calls may tailor them) or "shared" (one copy for
	// everyone). Default: subject when the app receives exchanged tokens
	// or identity headers, else shared.
	Scope string `yaml:"scope"`
	// TTL bounds how long a list is served without asking (default 5m).
	TTL Duration `yaml:"ttl"`
	// Disabled asks the upstream at every listing.
	Disabled bool `yaml:"disabled"`
}

// List cache scopes.
const (
	ListCacheSubject = "subject"
	ListCacheShared  = "shared"
)

// IdentityHeader names a header and the claim of the agent's token it
// carries ("sub", "email", "groups", "act.sub": a dotted path reaches
// into objects).
type IdentityHeader struct {
	Header string `yaml:"header"`
	Claim  string `yaml:"claim"`
}

// ResourceNamespace declares the resource URIs an app owns. URIs are not
// rewritten: the prefixes say which app a URI belongs to, so no other app
// can list it or be sent its reads.
type ResourceNamespace struct {
	// URIPrefixes are the beginnings of the app's URIs, each starting
	// with a scheme and ":", like "ledger://". No two apps' prefixes may
	// nest.
	URIPrefixes []string `yaml:"uriPrefixes"`
}

// ToolNamespace prefixes the names of an app's tools and prompts.
type ToolNamespace struct {
	Disabled bool   `yaml:"disabled"`
	Name     string `yaml:"name"`
}

// Upstream is how the broker reaches an app's MCP server.
type Upstream struct {
	// Transport is "stream" (Streamable HTTP), "sse" (the 2024-11-05
	// HTTP+SSE transport) or "stdio" (a local program the broker runs).
	Transport string          `yaml:"transport"`
	Stream    *StreamUpstream `yaml:"stream"`
	// SSE is a legacy HTTP+SSE upstream: url is its event-stream
	// endpoint.
	SSE   *SSEUpstream   `yaml:"sse"`
	Stdio *StdioUpstream `yaml:"stdio"`
	// Timeout bounds one request to the upstream (default 30s).
	Timeout Duration `yaml:"timeout"`
	// TLS reaches an https upstream through the enterprise's own PKI.
	TLS *UpstreamTLS `yaml:"tls"`
	// Proxy sends the upstream's requests through an HTTP proxy; left out,
	// none is used, whatever the environment says.
	Proxy *UpstreamProxy `yaml:"proxy"`
}

// UpstreamTLS is how an https upstream is reached.
type UpstreamTLS struct {
	// CAFile, PEM, holds the roots the upstream's certificate must chain
	// to, instead of the system's.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile, PEM, are the client certificate the broker
	// presents (mutual TLS).
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName is the name the upstream's certificate must carry, when
	// not the URL's host.
	ServerName string `yaml:"serverName"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `yaml:"minVersion"`
}

// UpstreamProxy is the HTTP proxy an upstream is reached through: url, or
// fromEnvironment for HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
type UpstreamProxy struct {
	URL             string `yaml:"url"`
	FromEnvironment bool   `yaml:"fromEnvironment"`
}

// StdioUpstream is an MCP server the broker runs as a local program and
// speaks to on its standard streams.
type StdioUpstream struct {
	// Command is the program, a path (relative to the configuration
	// file's directory when it holds a "/") or a name looked up in PATH.
	Command string   `yaml:"command"`
	Args    []string `yaml:"args"`
	// Env is the program's environment beside PATH, HOME, LANG and TMPDIR
	// (taken from the broker's); values may be secrets.
	Env []EnvVar `yaml:"env"`
	// WorkingDir is where the program runs (relative to the
	// configuration file's directory); "" the broker's.
	WorkingDir string `yaml:"workingDir"`
	// Isolation is which client sessions share a process: "perSession"
	// (the default), "perSubject" (one per user) or "shared".
	Isolation string `yaml:"isolation"`
	// IdleTimeout stops a process no request used for that long (5m).
	IdleTimeout Duration `yaml:"idleTimeout"`
	// MaxProcesses bounds the app's running processes (100; a shared app
	// runs one).
	MaxProcesses int `yaml:"maxProcesses"`
	// TokenEnv names the environment variable that carries a token
	// exchanged for the process's session or user at its start.
	TokenEnv string `yaml:"tokenEnv"`
}

// Isolation kinds of stdio upstreams.
const (
	StdioPerSession = "perSession"
	StdioPerSubject = "perSubject"
	StdioShared     = "shared"
)

// EnvVar is one environment variable of a stdio upstream.
type EnvVar struct {
	Name  string `yaml:"name"`
	Value Secret `yaml:"value"`
}

// SSEUpstream is a 2024-11-05 HTTP+SSE upstream: URL is its event
// stream.
type SSEUpstream struct {
	URL        string     `yaml:"url"`
	Connection Connection `yaml:"connection"`
}

// StreamUpstream is a Streamable HTTP upstream.
type StreamUpstream struct {
	URL        string     `yaml:"url"`
	Connection Connection `yaml:"connection"`
	// ProtocolVersion picks how a Streamable HTTP upstream is spoken to:
	// "" (default) opens sessions with initialize; "2026-07-28" reaches it
	// without sessions, every request on its own; "auto" asks it with
	// server/discover once and goes on as it answers.
	ProtocolVersion string `yaml:"protocolVersion"`
}

// Connection tunes the upstream connection pool.
type Connection struct {
	// DialTimeout bounds connecting to the upstream (default 10s).
	DialTimeout Duration            `yaml:"dialTimeout"`
	KeepAlive   ConnectionKeepAlive `yaml:"keepAlive"`
	Pool        Pool                `yaml:"pool"`
}

// ConnectionKeepAlive is the TCP keep-alive interval.
type ConnectionKeepAlive struct {
	// Interval between TCP keep-alive probes (default 15s).
	Interval Duration `yaml:"interval"`
}

// Pool bounds idle upstream connections; 0 means the default, 100.
type Pool struct {
	MaxIdleConns        int `yaml:"maxIdleConns"`
	MaxIdleConnsPerHost int `yaml:"maxIdleConnsPerHost"`
}

// AppAuthorization is inbound policy and outbound credentials for an app.
type AppAuthorization struct {
	Inbound  *Inbound  `yaml:"inbound"`
	Outbound *Outbound `yaml:"outbound"`
}

// Inbound authorizes agents' requests with a Rego policy.
type Inbound struct {
	OPA *OPAPolicy `yaml:"opa"`
}

// OPAPolicy is a policy given inline or by file; exactly one of the two.
type OPAPolicy struct {
	Name string `yaml:"name"`
	Rego string `yaml:"rego"`
	File string `yaml:"file"`
}

// Outbound is how the broker authenticates to the upstream for the agent.
type Outbound struct {
	Type          OutboundType   `yaml:"type"`
	TokenExchange *TokenExchange `yaml:"tokenExchange"`
	IDJAG         *IDJAGOutbound `yaml:"idJag"`
}

// IDJAGOutbound obtains the upstream's tokens from its own authorization
// server with identity assertion grants (MCP's enterprise-managed
// authorization): the embedded Auth Provider, the company's identity
// provider, issues an ID-JAG for the user, which the broker redeems there
// as the client ClientID. Each user's token is kept until shortly before
// it expires.
type IDJAGOutbound struct {
	// IDP issues the ID-JAGs: "embedded" (the Auth Provider, with
	// authProvider.idJag listing the upstream's application).
	IDP string `yaml:"idp"`
	// Issuer is the upstream authorization server's issuer (the grants'
	// aud); its metadata is read from RFC 8414's address.
	Issuer string `yaml:"issuer"`
	// Resource is the upstream's resource (the grants' resource).
	Resource     string   `yaml:"resource"`
	ClientID     string   `yaml:"clientID"`
	ClientSecret Secret   `yaml:"clientSecret"`
	Scopes       []string `yaml:"scopes"`
}

// TokenExchange obtains a tool-scoped token per call (RFC 8693); the
// agent's own token never reaches the upstream. A tools/call carries the
// token its tool's entry in Tools describes; a tool without an entry gets
// no token at all, unless an entry named "*" exists, the default for every
// such tool. Every other request of the app's upstream session
// (initialize, lists, reads, notifications, the GET stream, DELETE)
// carries an identity-only token: the audience, no scopes, a 5s lifetime.
// The app needs mcpProvider.authorization.oauth: tokens are issued for the
// authenticated agent.
type TokenExchange struct {
	// Type is delegation (the token names the agent in act, with earlier
	// actors nested inside) or impersonation (no act).
	Type ExchangeType `yaml:"type"`
	// IDP issues the tokens: "embedded" (the embedded authorization
	// server, minting in process) or the name of a connector, whose token
	// endpoint exchanges the agent's token.
	IDP      string         `yaml:"idp"`
	Audience string         `yaml:"audience"`
	Tools    []ExchangeTool `yaml:"tools"`
	// Actor is who a delegation token says acts: "agent" (the default:
	// act names the agent) or "gateway" (act names the broker, the agent
	// nested inside: the shape of Strata's orchestrator's tokens).
	Actor string `yaml:"actor"`
	// SubjectFormat is "plain" (the default: sub is the user's) or
	// "qualified" (sub is "<issuer>|<sub>", Strata's form).
	SubjectFormat string `yaml:"subjectFormat"`
	// Claims are added to the tokens from the agent's token.
	Claims []ExchangeClaim `yaml:"claims"`
	// SigningAlgorithm signs the app's tokens when the embedded
	// authorization server mints them: EdDSA or ES256 (default:
	// authProvider.signingAlgorithm), for upstreams that verify only one.
	SigningAlgorithm string `yaml:"signingAlgorithm"`
}

// Values of TokenExchange.Actor and SubjectFormat.
const (
	ActorAgent             = "agent"
	ActorGateway           = "gateway"
	SubjectFormatPlain     = "plain"
	SubjectFormatQualified = "qualified"
)

// ExchangeClaim adds a claim to an app's tokens: Name, the value of the
// agent's token's claim that From names as "user.<claim>".
type ExchangeClaim struct {
	Name string `yaml:"name"`
	From string `yaml:"from"`
}

// ExchangeTool is the token shape for one tool.
type ExchangeTool struct {
	// Name is the upstream's tool name (without the namespace), or "*"
	// for the default entry.
	Name string `yaml:"name"`
	// TTL is the lifetime of the tool's token (default 5s, at most 1h),
	// rounded up to whole seconds: tokens count time in seconds.
	TTL Duration `yaml:"ttl"`
	// Scopes of the tool's token. The agent's token must hold them all,
	// else the call is refused with 403 insufficient_scope (a step-up);
	// a policy result's scopes narrow them further.
	Scopes []ExchangeScope `yaml:"scopes"`
	// Reuse lets one client session's calls of the tool carry the same
	// token while at least half its ttl remains, for upstreams that do not
	// need a fresh jti per call. Off by default.
	Reuse bool `yaml:"reuse"`
}

// ExchangeScope is one scope granted to a tool's token.
type ExchangeScope struct {
	Name string `yaml:"name"`
}
