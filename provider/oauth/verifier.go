package oauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Options are the runtime dependencies of a Verifier; nil and zero fields
// mean defaults.
type Options struct {
	// Fetcher does all HTTP; nil means NewFetcher(FetcherOptions{}).
	Fetcher *Fetcher
	// CacheSize is the number of verified tokens remembered. Default
	// 10000; negative turns the cache off.
	CacheSize int
	// Logger; nil means slog.Default(). Tokens are never logged.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MinKeyRefreshInterval rate-limits JWKS refetches caused by unknown
	// kids, per server. Default 30s.
	MinKeyRefreshInterval time.Duration
}

const (
	defaultCacheSize             = 10000
	defaultMinKeyRefreshInterval = 30 * time.Second
	// negativeCacheTTL: an inactive introspection answer is reused this
	// long, so a client retrying a dead token does not hammer the AS.
	negativeCacheTTL  = 5 * time.Second
	negativeCacheSize = 1000
)

// Verifier checks access tokens for the broker acting as OAuth resource
// server. It is safe for concurrent use.
type Verifier struct {
	servers       []*server
	fetcher       *Fetcher
	logger        *slog.Logger
	now           func() time.Time
	minKeyRefresh time.Duration
	cache         *lru.Cache[[sha256.Size]byte, cachedPrincipal]
	negative      *lru.Cache[[sha256.Size]byte, time.Time]
	startOnce     sync.Once
}

type cachedPrincipal struct {
	principal *Principal
	until     time.Time
}

// NewVerifier validates the configuration, reporting every problem at
// once, and builds a Verifier. It does no I/O: discovery happens in Start
// or on the first Verify.
func NewVerifier(servers []ServerConfig, opts Options) (*Verifier, error) {
	v := &Verifier{
		fetcher:       opts.Fetcher,
		logger:        opts.Logger,
		now:           opts.Now,
		minKeyRefresh: opts.MinKeyRefreshInterval,
	}
	if v.fetcher == nil {
		v.fetcher = NewFetcher(FetcherOptions{})
	}
	if v.logger == nil {
		v.logger = slog.Default()
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.minKeyRefresh <= 0 {
		v.minKeyRefresh = defaultMinKeyRefreshInterval
	}

	var problems []error
	if len(servers) == 0 {
		problems = append(problems, errors.New("servers: at least one authorization server is required"))
	}
	for i, config := range servers {
		s, errs := newServer(i, config, v)
		problems = append(problems, errs...)
		if s == nil {
			continue
		}
		for _, other := range v.servers {
			if other.derivedIssuer == s.derivedIssuer {
				problems = append(problems, fmt.Errorf("servers[%d].metadataURL: issuer %q is already served by servers[%d]", i, s.derivedIssuer, other.index))
			}
		}
		v.servers = append(v.servers, s)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}

	size := opts.CacheSize
	if size == 0 {
		size = defaultCacheSize
	}
	if size > 0 {
		v.cache, _ = lru.New[[sha256.Size]byte, cachedPrincipal](size)
		v.negative, _ = lru.New[[sha256.Size]byte, time.Time](min(size, negativeCacheSize))
	}
	return v, nil
}

func newServer(index int, c ServerConfig, v *Verifier) (*server, []error) {
	var problems []error
	add := func(field, format string, args ...any) {
		problems = append(problems, fmt.Errorf("servers[%d].%s: %s", index, field, fmt.Sprintf(format, args...)))
	}
	if c.Method == "" {
		c.Method = MethodJWT
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = defaultRefreshInterval
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = defaultClockSkew
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = defaultGroupsClaim
	}
	if c.IntrospectionCacheTTL == 0 {
		c.IntrospectionCacheTTL = defaultIntrospectionCacheTTL
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = supportedAlgorithms
	}
	c.ExpectedAudiences = slices.Clone(c.ExpectedAudiences)
	c.Algorithms = slices.Clone(c.Algorithms)

	derived, err := IssuerFromMetadataURL(c.MetadataURL)
	if err != nil {
		add("metadataURL", "%v", err)
	}
	switch c.Method {
	case MethodJWT:
	case MethodIntrospection:
		if c.ClientID == "" || c.ClientSecret == "" {
			add("clientID", "client id and secret are required for introspection")
		}
	default:
		add("method", "must be %q or %q", MethodJWT, MethodIntrospection)
	}
	if c.RefreshInterval < time.Minute {
		add("refreshInterval", "must be at least 1m")
	}
	if c.ClockSkew < 0 || c.ClockSkew > maxClockSkew {
		add("clockSkew", "must be between 0 and %s", maxClockSkew)
	}
	if len(c.ExpectedAudiences) == 0 && !c.RelaxedAudience {
		add("expectedAudiences", "at least one audience is required (or relaxedAudience)")
	}
	for i, audience := range c.ExpectedAudiences {
		if audience == "" {
			add(fmt.Sprintf("expectedAudiences[%d]", i), "must not be empty")
		}
	}
	for i, algorithm := range c.Algorithms {
		if !slices.Contains(supportedAlgorithms, algorithm) {
			add(fmt.Sprintf("algorithms[%d]", i), "%q is not allowed; choose from %s", algorithm, strings.Join(supportedAlgorithms, ", "))
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return &server{
		index:         index,
		config:        c,
		derivedIssuer: derived,
		algorithms:    c.Algorithms,
		verifier:      v,
		logger:        v.logger,
		lock:          make(chan struct{}, 1),
	}, nil
}

// Start refreshes every server's metadata and keys in the background until
// ctx ends, beginning with discovery for servers not discovered yet. It
// returns at once; calls after the first do nothing. Without Start,
// discovery happens on the first Verify and keys are then refreshed only
// for unknown kids.
func (v *Verifier) Start(ctx context.Context) {
	v.startOnce.Do(func() {
		for _, s := range v.servers {
			go s.run(ctx)
		}
	})
}

// Issuers lists the issuers tokens are accepted from, in configuration
// order, for Protected Resource Metadata's authorization_servers: the
// discovered issuer, or before discovery the one derived from the metadata
// URL.
func (v *Verifier) Issuers() []string {
	issuers := make([]string, len(v.servers))
	for i, s := range v.servers {
		issuers[i] = s.issuer()
	}
	return issuers
}

// Verify checks an access token and returns who it speaks for. Failures
// are ErrInvalidToken (with a Reason) or ErrUnavailable; the token never
// appears in an error or a log line.
//
// A token shaped like a JWS is routed by its (unverified) iss to the one
// server with exactly that issuer, and verified locally or introspected
// according to that server's Method. Any other token is opaque and goes to
// the introspection servers in configuration order until one says active.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	principal, _, err := v.VerifyCached(ctx, token)
	return principal, err
}

// VerifyCached is Verify, and says whether the answer came from the cache
// of verified and refused tokens.
func (v *Verifier) VerifyCached(ctx context.Context, token string) (_ *Principal, cached bool, _ error) {
	if !isB64Token(token) {
		return nil, false, invalid(ReasonMalformed, "not a b64token of at most 16 KiB")
	}
	now := v.now()
	key := sha256.Sum256([]byte(token))
	if v.cache != nil {
		if entry, ok := v.cache.Get(key); ok {
			if now.Before(entry.until) {
				return entry.principal, true, nil
			}
			v.cache.Remove(key)
		}
		if until, ok := v.negative.Get(key); ok {
			if now.Before(until) {
				return nil, true, invalid(ReasonInactive, "")
			}
			v.negative.Remove(key)
		}
	}

	principal, until, err := v.verify(ctx, token, now)
	if v.cache != nil {
		switch {
		case err == nil && now.Before(until):
			v.cache.Add(key, cachedPrincipal{principal: principal, until: until})
		case ReasonOf(err) == ReasonInactive:
			v.negative.Add(key, now.Add(negativeCacheTTL))
		}
	}
	return principal, false, err
}

// verify does the work of Verify and says how long the answer may be reused.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*Principal, time.Time, error) {
	parsed, parseErr := parseJWT(token)
	if parseErr == nil {
		s := v.serverFor(parsed.issuer)
		if s == nil {
			return nil, time.Time{}, invalid(ReasonIssuer, "no configured issuer matches")
		}
		if s.config.Method == MethodIntrospection {
			return s.introspect(ctx, token, now)
		}
		principal, err := s.verifyJWT(ctx, token, parsed, now)
		if err != nil {
			return nil, time.Time{}, err
		}
		return principal, principal.Expiry, nil
	}

	// Not a JWT we could read: an opaque token, if anyone introspects.
	var unavailable error
	introspected := false
	for _, s := range v.servers {
		if s.config.Method != MethodIntrospection {
			continue
		}
		introspected = true
		principal, until, err := s.introspect(ctx, token, now)
		switch {
		case err == nil:
			return principal, until, nil
		case errors.Is(err, ErrUnavailable):
			unavailable = err
		case ReasonOf(err) != ReasonInactive:
			// Active, but refused by our checks: that answer is final.
			return nil, time.Time{}, err
		}
	}
	switch {
	case !introspected:
		return nil, time.Time{}, parseErr
	case unavailable != nil:
		// Some server could not answer; it might have said active.
		return nil, time.Time{}, unavailable
	}
	return nil, time.Time{}, invalid(ReasonInactive, "")
}

// serverFor picks the server whose issuer is exactly iss.
func (v *Verifier) serverFor(issuer string) *server {
	for _, s := range v.servers {
		if s.claimsIssuer(issuer) {
			return s
		}
	}
	return nil
}

func (v *Verifier) purgeCache() {
	if v.cache != nil {
		v.cache.Purge()
	}
}
