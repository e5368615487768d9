package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/provider"
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
	fetcher := oauth.NewFetcher(oauth.FetcherOptions{AllowPrivateNetworks: o.AllowPrivateNetworks})
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
	if b.auth == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		principal, err := b.auth.authenticate(r)
		if err != nil {
			provider.WriteError(w, b.challenge(r, err))
			return
		}
		ctx := oauth.WithPrincipal(r.Context(), principal)
		ctx = provider.WithIdentity(ctx, provider.Identity{Subject: sessionSubject(principal), User: sessionUser(principal)})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (a *authenticator) authenticate(r *http.Request) (*oauth.Principal, error) {
	if q := r.URL.Query(); q.Has("access_token") {
		return nil, errTokenInQuery
	}
	token, err := oauth.BearerFromHeader(r.Header)
	if err != nil {
		return nil, err
	}
	principal, err := a.verifier.Verify(r.Context(), token)
	if err != nil {
		return nil, err
	}
	if a.revoked != nil && a.revoked(r.Context(), principal.Issuer, principal.TokenID) {
		return nil, &oauth.InvalidTokenError{Reason: oauth.ReasonInactive, Detail: "revoked at the authorization server"}
	}
	for _, scope := range a.requiredScopes {
		if !slices.Contains(principal.Scopes, scope) {
			return nil, errInsufficientScope
		}
	}
	return principal, nil
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

// startAuthentication keeps the verifier's keys fresh until ctx ends.
func (b *Broker) startAuthentication(ctx context.Context) {
	if b.auth != nil {
		b.auth.verifier.Start(ctx)
	}
}
