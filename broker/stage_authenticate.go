package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/telemetry"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// authenticator is the first stage: it runs for every HTTP request, every
// method, every transport, sessions included — a session id is never a
// credential.
type authenticator struct {
	verifier       *oauth.Verifier
	requiredScopes []string
	// revoked reports tokens the embedded Auth Provider revoked (RFC 7009),
	// so its own tokens stop working here at once rather than at exp.
	revoked func(ctx context.Context, issuer, tokenID string) bool
}

// Errors of authentication, rendered as OAuth challenges in render.go.
var (
	errTokenInQuery      = errors.New("access tokens are accepted only in the Authorization header")
	errInsufficientScope = oauth.ErrInsufficientScope
)

// newAuthenticator builds the verifier of the configured authorization
// servers; nil when authentication is off.
func newAuthenticator(cfg *config.Config, b *Broker) (*authenticator, error) {
	o := cfg.MCPProvider.Authorization.OAuth
	if o == nil || !o.Enabled {
		return nil, nil
	}
	var servers []oauth.ServerConfig
	for i, s := range o.Servers {
		tv := s.TokenValidation
		sc := oauth.ServerConfig{
			MetadataURL:       s.WellKnownEndpoint,
			RefreshInterval:   timeOf(s.RefreshInterval),
			Method:            tv.Method,
			ExpectedAudiences: tv.ExpectedAudiences,
			RelaxedAudience:   tv.RelaxedAudience,
			ClockSkew:         timeOf(tv.JWT.ClockSkew),
			Algorithms:        tv.JWT.Algorithms,
			AllowMissingTyp:   tv.JWT.AllowMissingTyp,
			GroupsClaim:       tv.GroupsClaim,
		}
		if tv.Introspection != nil {
			if c := cfg.Connector(tv.Introspection.Connector); c != nil {
				sc.ClientID, sc.ClientSecret = c.OAuthClientID, c.OAuthClientSecret.Value()
			}
		}
		if tv.RelaxedAudience {
			b.log.Warn("RELAXED AUDIENCE: tokens from this authorization server are accepted whatever their audience; "+
				"a token issued for any other service is accepted here too",
				"server", fmt.Sprintf("mcpProvider.authorization.oauth.servers[%d]", i), "metadata", s.WellKnownEndpoint)
		}
		servers = append(servers, sc)
	}
	fetchOptions := oauth.FetcherOptions{AllowPrivateNetworks: o.AllowPrivateNetworks}
	if o.TLS != nil {
		tlsConfig, err := (pemFiles{b.baseDir}).upstreamTLS("mcpProvider.authorization.oauth.tls", o.TLS)
		if err != nil {
			return nil, err
		}
		fetchOptions.TLS = tlsConfig
	}
	fetcher := oauth.NewFetcher(fetchOptions)
	v, err := oauth.NewVerifier(servers, oauth.Options{Logger: b.log, Fetcher: fetcher})
	if err != nil {
		return nil, fmt.Errorf("broker: token verification: %w", err)
	}
	return &authenticator{verifier: v, requiredScopes: o.RequiredScopes, revoked: b.authProvider.revoked}, nil
}

// authenticate is the authentication step of every transport request:
// it verifies the bearer token and passes the request on with its
// principal (oauth.PrincipalFrom) and the identity sessions are bound to
// (provider.IdentityFrom), or answers with the challenge. Without
// authentication configured every request is anonymous.
func (b *Broker) authenticate(next http.Handler) http.Handler {
	next = b.recordTransportRefusals(next)
	if b.current().auth == nil {
		// Whether agents are authenticated takes a restart to change.
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := b.current().auth
		principal, cached, err := auth.authenticate(r)
		b.metrics.TokenVerification(verificationResult(err), cached)
		if err != nil {
			refusal := b.challenge(auth, r, err)
			b.recordRefusal(r, refusal, err)
			provider.WriteError(w, refusal)
			return
		}
		ctx := oauth.WithPrincipal(r.Context(), principal)
		ctx = provider.WithIdentity(ctx, provider.Identity{Subject: sessionSubject(principal), User: sessionUser(principal)})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// authenticate verifies the request's token; cached says the verifier
// answered from its cache.
func (a *authenticator) authenticate(r *http.Request) (_ *oauth.Principal, cached bool, _ error) {
	if q := r.URL.Query(); q.Has("access_token") {
		return nil, false, errTokenInQuery
	}
	token, err := oauth.BearerFromHeader(r.Header)
	if err != nil {
		return nil, false, err
	}
	principal, cached, err := a.verifier.VerifyCached(r.Context(), token)
	if err != nil {
		return nil, cached, err
	}
	if a.revoked != nil && a.revoked(r.Context(), principal.Issuer, principal.TokenID) {
		return nil, cached, &oauth.InvalidTokenError{Reason: oauth.ReasonInactive, Detail: "revoked at the authorization server"}
	}
	for _, scope := range a.requiredScopes {
		if !slices.Contains(principal.Scopes, scope) {
			return nil, cached, errInsufficientScope
		}
	}
	return principal, cached, nil
}

// verificationResult is the metric label of a token check.
func verificationResult(err error) string {
	switch {
	case err == nil, errors.Is(err, errInsufficientScope):
		return "valid"
	case errors.Is(err, oauth.ErrNoToken):
		return "missing"
	case errors.Is(err, oauth.ErrUnavailable):
		return "unavailable"
	}
	return "invalid"
}

// recordRefusal records a request refused before it reached the pipeline:
// a missing, malformed, invalid or insufficient token, or an authorization
// server that cannot be reached. The record says why in the verifier's
// words, which never carry token material.
func (b *Broker) recordRefusal(r *http.Request, refusal *provider.HTTPError, err error) {
	body := refusal.Body(jsonrpc.ID{})
	sum := sha256.Sum256(body)
	record := &audit.Record{
		Time:    time.Now(),
		Kind:    audit.KindCall,
		Event:   "request.refused",
		TraceID: telemetry.TraceID(r.Context()),
		Source:  r.RemoteAddr,
		Session: sessionDigest(r.Header.Get(b.provider.SessionHeader())),
		Detail:  err.Error(),
		Result: &audit.Result{
			HTTPStatus: refusal.Status, RPCCode: refusal.Code,
			Bytes: len(body), Digest: "sha256:" + hex.EncodeToString(sum[:]),
		},
	}
	b.metrics.Refusal(refusal.Status)
	if werr := b.audit.write(r.Context(), record); werr != nil {
		b.log.Error("audit record of a refused request not written", "error", werr)
	}
}

// sessionSubject is what a session is bound to: the same user, through the
// same client, at the same issuer.
func sessionSubject(p *oauth.Principal) string {
	return strings.Join([]string{p.Issuer, p.Subject, p.ClientID}, "\x00")
}

// sessionUser is what one user's sessions are counted by: the user at
// the issuer, through whichever client.
func sessionUser(p *oauth.Principal) string {
	return p.Issuer + "\x00" + p.Subject
}

// recordTransportRefusals records the requests the transport refuses
// itself, before any message reaches the pipeline — an unknown or ended
// session (404), a missing one (400), a body that is not JSON-RPC, a batch
// the protocol version forbids, a media type not accepted — with the
// status and the body the client received. Requests the pipeline served
// are recorded there.
func (b *Broker) recordTransportRefusals(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served := new(atomic.Bool)
		rec := &refusalRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), servedKey{}, served)))
		if rec.status < http.StatusBadRequest || served.Load() {
			return
		}
		refusal := &provider.HTTPError{Status: rec.status}
		var m struct {
			Error *struct {
				Code    int64  `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(rec.body, &m) == nil && m.Error != nil {
			refusal.Code, refusal.Message = m.Error.Code, m.Error.Message
		}
		sum := sha256.Sum256(rec.body)
		b.metrics.Refusal(rec.status)
		record := &audit.Record{
			Time: time.Now(), Kind: audit.KindCall, Event: "request.refused",
			TraceID: telemetry.TraceID(r.Context()), Source: r.RemoteAddr,
			Session: sessionDigest(r.Header.Get(b.provider.SessionHeader())),
			Method:  r.Method + " " + r.URL.Path,
			Detail:  refusal.Message,
			Result: &audit.Result{HTTPStatus: rec.status, RPCCode: refusal.Code, Bytes: len(rec.body),
				Digest: "sha256:" + hex.EncodeToString(sum[:])},
		}
		principalFields(record, oauth.PrincipalFrom(r.Context()))
		if err := b.audit.write(r.Context(), record); err != nil {
			b.log.Error("audit record of a refused request not written", "error", err)
		}
	})
}

// servedKey marks, in a request's context, that the pipeline served one
// of its messages (markServed).
type servedKey struct{}

// markServed notes that the pipeline served a message of r.
func markServed(r *http.Request) {
	if r == nil {
		return
	}
	if served, ok := r.Context().Value(servedKey{}).(*atomic.Bool); ok {
		served.Store(true)
	}
}

// maxRecordedRefusal bounds the body of a refusal kept to digest; the
// transport's refusals are short JSON-RPC errors.
const maxRecordedRefusal = 64 << 10

// refusalRecorder passes a response through, noting its status and, for
// an error status, the start of its body.
type refusalRecorder struct {
	http.ResponseWriter
	status int
	body   []byte
}

func (w *refusalRecorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *refusalRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= http.StatusBadRequest && len(w.body) < maxRecordedRefusal {
		w.body = append(w.body, p[:min(len(p), maxRecordedRefusal-len(w.body))]...)
	}
	return w.ResponseWriter.Write(p)
}

// WriteString is Write for event streams, which write strings.
func (w *refusalRecorder) WriteString(s string) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= http.StatusBadRequest && len(w.body) < maxRecordedRefusal {
		w.body = append(w.body, s[:min(len(s), maxRecordedRefusal-len(w.body))]...)
	}
	return io.WriteString(w.ResponseWriter, s)
}

// Unwrap lets http.ResponseController reach the connection (flushing
// event streams, deadlines).
func (w *refusalRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
