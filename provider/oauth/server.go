package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// ServerConfig describes one authorization server whose tokens the broker
// accepts.
type ServerConfig struct {
	// MetadataURL is the AS's RFC 8414 or OIDC discovery document URL. The
	// issuer is derived from it, and the document must name that issuer.
	MetadataURL string
	// RefreshInterval is how often metadata and JWKS are refetched in the
	// background. Default 24h.
	RefreshInterval time.Duration
	// Method is MethodJWT (default) or MethodIntrospection.
	Method string
	// ExpectedAudiences: a token's aud must contain one of them (RFC 8707).
	ExpectedAudiences []string
	// RelaxedAudience accepts any audience. It re-opens mistake 4 (tokens
	// minted for another resource are accepted here); the caller logs it
	// loudly at start.
	RelaxedAudience bool
	// ClockSkew tolerated for exp, nbf and iat. Default 15s, at most 5m.
	ClockSkew time.Duration
	// Algorithms is the signature algorithm allow-list. Default: ES256,
	// ES384, ES512, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA. "none"
	// and HS* cannot be configured.
	Algorithms []string
	// AllowMissingTyp accepts JWTs without typ, or with the generic typ
	// "JWT", for IdPs that do not follow RFC 9068. Any other typ must still
	// be at+jwt or application/at+jwt.
	AllowMissingTyp bool
	// GroupsClaim names the claim that lists the subject's groups.
	// Default "groups".
	GroupsClaim string
	// ClientID and ClientSecret authenticate introspection requests
	// (client_secret_basic). Required for MethodIntrospection.
	ClientID, ClientSecret string
	// IntrospectionCacheTTL caps how long a positive introspection result
	// is reused (never past the token's exp). Default 5m; negative turns
	// the cache off for this server. It is the window in which a revoked
	// token is still accepted.
	IntrospectionCacheTTL time.Duration
}

const (
	defaultRefreshInterval       = 24 * time.Hour
	defaultClockSkew             = 15 * time.Second
	maxClockSkew                 = 5 * time.Minute
	defaultGroupsClaim           = "groups"
	defaultIntrospectionCacheTTL = 5 * time.Minute
	// discoveryRetryInterval keeps a down IdP from being asked again by
	// every request: after a failed first discovery, requests fail fast
	// with ErrUnavailable for this long.
	discoveryRetryInterval = 5 * time.Second
	maxBackgroundBackoff   = 5 * time.Minute
)

// server is the runtime state of one authorization server.
type server struct {
	index         int
	config        ServerConfig
	derivedIssuer string
	algorithms    []string
	verifier      *Verifier
	logger        *slog.Logger

	state atomic.Pointer[serverState]

	// lock makes fetches single-flight; it is a channel so that a waiting
	// request can give up when its context ends.
	lock chan struct{}
	// Guarded by lock.
	lastDiscoveryFailure time.Time
	lastDiscoveryError   error
	lastKeyFetch         time.Time
}

// serverState is an immutable snapshot of what was discovered.
type serverState struct {
	metadata *metadata
	keys     *KeySet // nil for introspection servers
}

func (s *server) acquire(ctx context.Context) error {
	select {
	case s.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *server) release() { <-s.lock }

func (s *server) unavailable(err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, s.derivedIssuer, err)
}

// issuer is the discovered issuer, or the derived one before discovery.
func (s *server) issuer() string {
	if state := s.state.Load(); state != nil {
		return state.metadata.Issuer
	}
	return s.derivedIssuer
}

// claimsIssuer tells whether a token's unverified iss may belong to this
// server. Before discovery the exact issuer is not known yet (a trailing
// slash is allowed either way); verification compares it exactly later.
func (s *server) claimsIssuer(issuer string) bool {
	if state := s.state.Load(); state != nil {
		return issuer == state.metadata.Issuer
	}
	return issuerMatches(issuer, s.derivedIssuer)
}

// ready returns the discovered state, discovering first if needed.
func (s *server) ready(ctx context.Context) (*serverState, error) {
	if state := s.state.Load(); state != nil {
		return state, nil
	}
	if err := s.acquire(ctx); err != nil {
		return nil, s.unavailable(err)
	}
	defer s.release()
	if state := s.state.Load(); state != nil {
		return state, nil
	}
	now := s.verifier.now()
	if !s.lastDiscoveryFailure.IsZero() && now.Sub(s.lastDiscoveryFailure) < discoveryRetryInterval {
		return nil, s.unavailable(s.lastDiscoveryError)
	}
	state, err := s.fetch(ctx, nil)
	if err != nil {
		// A request that went away is not a sign of a broken IdP.
		if ctx.Err() == nil {
			s.lastDiscoveryFailure, s.lastDiscoveryError = now, err
			s.logger.Warn("oauth: discovery failed", "issuer", s.derivedIssuer, "error", err)
		}
		return nil, s.unavailable(err)
	}
	s.store(state)
	return state, nil
}

// fetch gets metadata and, for JWT servers, the JWKS. With a previous
// state, a failed JWKS fetch returns the new metadata with the previous
// keys and the error. Called with lock held.
func (s *server) fetch(ctx context.Context, previous *serverState) (*serverState, error) {
	body, err := s.verifier.fetcher.Get(ctx, s.config.MetadataURL)
	if err != nil {
		return nil, err
	}
	md, err := parseMetadata(body, s.derivedIssuer, s.config.Method)
	if err != nil {
		return nil, err
	}
	state := &serverState{metadata: md}
	if s.config.Method != MethodJWT {
		return state, nil
	}
	s.lastKeyFetch = s.verifier.now()
	keys, err := s.fetchKeys(ctx, md.JWKSURI)
	if err != nil {
		if previous == nil || previous.keys == nil {
			return nil, err
		}
		// Keep serving with the keys we have; the error still tells the
		// background loop to retry soon.
		state.keys = previous.keys
		return state, fmt.Errorf("jwks: %w", err)
	}
	state.keys = keys
	return state, nil
}

func (s *server) fetchKeys(ctx context.Context, jwksURI string) (*KeySet, error) {
	body, err := s.verifier.fetcher.Get(ctx, jwksURI)
	if err != nil {
		return nil, err
	}
	keys, skipped, err := parseJWKS(body)
	for _, reason := range skipped {
		s.logger.Debug("oauth: jwks key skipped", "issuer", s.derivedIssuer, "reason", reason)
	}
	return keys, err
}

// refreshKeys refetches the JWKS because a token named a key we do not
// have (a rotation, or an attacker). Single-flight, and at most once per
// MinKeyRefreshInterval per server, so unknown kids cannot turn the broker
// into a load generator against the IdP. Returns the state to retry with.
func (s *server) refreshKeys(ctx context.Context, seen *serverState) *serverState {
	if err := s.acquire(ctx); err != nil {
		return s.state.Load()
	}
	defer s.release()
	current := s.state.Load()
	if current != seen {
		return current // someone else refreshed while we waited
	}
	now := s.verifier.now()
	if now.Sub(s.lastKeyFetch) < s.verifier.minKeyRefresh {
		return current
	}
	s.lastKeyFetch = now
	keys, err := s.fetchKeys(ctx, current.metadata.JWKSURI)
	if err != nil {
		s.logger.Warn("oauth: jwks refresh for unknown kid failed, keeping cached keys", "issuer", current.metadata.Issuer, "error", err)
		return current
	}
	next := &serverState{metadata: current.metadata, keys: keys}
	s.store(next)
	return next
}

// store publishes a new state. Cached principals were verified with keys
// that may now be withdrawn (a key compromise is the usual reason to pull
// a key early), so the token cache is cleared when a key disappears.
func (s *server) store(next *serverState) {
	previous := s.state.Swap(next)
	s.lastDiscoveryFailure, s.lastDiscoveryError = time.Time{}, nil
	if previous != nil && previous.keys != nil && next.keys != nil && next.keys.removedSince(previous.keys) {
		s.logger.Info("oauth: signing key withdrawn, clearing verified-token cache", "issuer", next.metadata.Issuer)
		s.verifier.purgeCache()
	}
}

// refresh is one background refresh of metadata and keys.
func (s *server) refresh(ctx context.Context) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	previous := s.state.Load()
	state, err := s.fetch(ctx, previous)
	if state != nil {
		s.store(state)
	}
	if err != nil {
		if previous != nil {
			s.logger.Warn("oauth: metadata refresh failed, keeping cached metadata and keys", "issuer", previous.metadata.Issuer, "error", err)
		} else {
			s.logger.Warn("oauth: discovery failed", "issuer", s.derivedIssuer, "error", err)
		}
		return err
	}
	return nil
}

// run refreshes in the background until ctx ends: right away if nothing
// was discovered yet, then every RefreshInterval; after a failure sooner,
// with a doubling backoff.
func (s *server) run(ctx context.Context) {
	delay := time.Duration(0)
	if s.state.Load() != nil {
		delay = s.config.RefreshInterval
	}
	backoff := discoveryRetryInterval
	for {
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		err := s.refresh(ctx)
		switch {
		case err == nil:
			delay, backoff = s.config.RefreshInterval, discoveryRetryInterval
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return
		default:
			delay = min(backoff, s.config.RefreshInterval)
			backoff = min(backoff*2, maxBackgroundBackoff)
		}
	}
}
