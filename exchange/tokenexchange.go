package exchange

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
)

// DefaultExchangeTTL is the lifetime of exchanged tokens when
// ExchangerOptions names none.
const DefaultExchangeTTL = 60 * time.Second

// ExchangeRequest is a token-exchange request's form parameters as
// received (RFC 8693 §2.1). audience and resource may repeat; Scopes are
// the scope parameter's space-separated values.
type ExchangeRequest struct {
	SubjectToken       string
	SubjectTokenType   string
	ActorToken         string
	ActorTokenType     string
	RequestedTokenType string
	Audiences          []string
	Resources          []string
	Scopes             []string
	// Lifetime bounds the issued token's lifetime when positive
	// (requested_lifetime); the exchanger's TTL bounds it in any case.
	Lifetime time.Duration
}

// ExchangeClient is the authenticated client making the request and what
// it may ask for.
type ExchangeClient struct {
	// ID is the authenticated client_id. The issued token's client_id is
	// the subject token's, not this one: the client that obtained the
	// user's token stays the one named.
	ID string
	// Audiences the client may obtain tokens for; empty means none.
	Audiences []string
	// SubjectAudiences are the audiences of the subject tokens the client
	// may exchange: the subject token's aud must contain one of them.
	// Empty means none. Without this a token minted for one upstream
	// could be turned into a token for any other audience the client may
	// obtain, undoing the audience restriction of outbound tokens.
	SubjectAudiences []string
	// Scopes the client may obtain; empty means no limit beyond the
	// subject token's own.
	Scopes []string
}

// ExchangeResponse is a successful token-exchange response (RFC 8693
// §2.2.1) and the claims of the token in it.
type ExchangeResponse struct {
	AccessToken     string
	IssuedTokenType string // TokenTypeAccessToken, or TokenTypeJWT when that was requested
	TokenType       string // "Bearer"
	ExpiresIn       int64  // seconds
	Scope           string // granted scopes, space-separated
	// ScopeChanged reports that the granted scope is not the one
	// requested; the response must then carry scope (RFC 8693 §2.2.1).
	ScopeChanged bool
	Claims       Claims
}

// ExchangerOptions configure an [Exchanger]; zero fields mean defaults.
type ExchangerOptions struct {
	// Issuer is the iss subject and actor tokens must carry: this
	// broker's. Default and only allowed value: the minter's issuer.
	Issuer string
	// TTL is the lifetime of issued tokens, whole seconds, at most the
	// keys' MaxTokenTTL. Default DefaultExchangeTTL. A token never outlives
	// the subject or actor token it was made from.
	TTL time.Duration
	// ClockSkew tolerated when verifying subject and actor tokens.
	// Default DefaultVerifyClockSkew.
	ClockSkew time.Duration
	// Revoked reports whether the token with this jti has been revoked.
	// nil means no token is.
	Revoked func(ctx context.Context, tokenID string) bool
	// Now: default the minter's clock.
	Now func() time.Time
}

// Exchanger implements the token-exchange grant (RFC 8693) for tokens
// this broker minted: it checks a request against the rules below and
// mints the new token in process. It knows nothing of HTTP or of client
// authentication; the token endpoint authenticates the client, calls
// Exchange and renders the result or the *OAuthError. It is safe for
// concurrent use.
type Exchanger struct {
	minter    *Minter
	keys      *KeySet
	issuer    string
	ttl       time.Duration
	clockSkew time.Duration
	revoked   func(ctx context.Context, tokenID string) bool
	now       func() time.Time
}

// NewExchanger returns an Exchanger that verifies subject and actor tokens
// against keys and mints with minter.
func NewExchanger(minter *Minter, keys *KeySet, opts ExchangerOptions) (*Exchanger, error) {
	if minter == nil || keys == nil {
		return nil, errors.New("exchange: exchanger needs a minter and a key set")
	}
	if opts.Issuer == "" {
		opts.Issuer = minter.issuer
	}
	if opts.Issuer != minter.issuer {
		return nil, fmt.Errorf("exchange: exchanger issuer %q is not the minter's %q", opts.Issuer, minter.issuer)
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultExchangeTTL
	}
	if opts.TTL < time.Second || opts.TTL > keys.MaxTokenTTL() || opts.TTL%time.Second != 0 {
		return nil, fmt.Errorf("exchange: exchanger: %w: %s", ErrTTL, opts.TTL)
	}
	if opts.ClockSkew == 0 {
		opts.ClockSkew = DefaultVerifyClockSkew
	}
	if opts.ClockSkew < 0 || opts.ClockSkew > maxVerifyClockSkew {
		return nil, fmt.Errorf("exchange: exchanger clock skew %s is not in (0, %s]", opts.ClockSkew, maxVerifyClockSkew)
	}
	if opts.Now == nil {
		opts.Now = minter.now
	}
	return &Exchanger{
		minter:    minter,
		keys:      keys,
		issuer:    opts.Issuer,
		ttl:       opts.TTL,
		clockSkew: opts.ClockSkew,
		revoked:   opts.Revoked,
		now:       opts.Now,
	}, nil
}

// Exchange checks req from client and mints the token it asks for. Every
// refusal is an *OAuthError whose description never contains a token:
//
//   - subject_token and subject_token_type are required; actor_token_type
//     is required exactly when actor_token is present; every token type is
//     the access_token or jwt URN, and so is requested_token_type if given
//     (invalid_request).
//   - audience and resource together name exactly one target
//     (invalid_request when none, invalid_target when several), which must
//     be one of client.Audiences (invalid_target).
//   - The subject token, and the actor token if any, are access tokens
//     this issuer minted, valid now and not revoked (invalid_request,
//     RFC 8693 §2.2.2). Their aud contains one of client.SubjectAudiences
//     (invalid_request).
//   - With an actor token this is delegation: the new act names the actor
//     (its client_id, else its sub) and nests the subject token's act
//     chain inside. Without one it is impersonation: no act. When the
//     subject token carries may_act (RFC 8693 §4.4), only the actor it
//     names may act, and impersonation is refused (invalid_request).
//   - Requested scopes must all be in the subject token's scope and, when
//     client.Scopes is set, in it (invalid_scope); scope is never widened.
//     Without a request the new token has no scope: least privilege, and
//     what a token for identity alone needs (RFC 8693 leaves the default
//     to the server).
//
// The new token keeps the subject token's sub, client_id and sub_iss (the
// issuer the subject was authenticated by, when not this one), has the
// target as aud, and lives the configured TTL, cut to whole seconds so
// that it does not outlive the subject or actor token.
func (e *Exchanger) Exchange(ctx context.Context, client ExchangeClient, req ExchangeRequest) (*ExchangeResponse, error) {
	issuedType, err := checkTokenTypes(&req)
	if err != nil {
		return nil, err
	}
	target, err := resolveTarget(client, req)
	if err != nil {
		return nil, err
	}
	requested, err := requestedScopes(req.Scopes)
	if err != nil {
		return nil, err
	}

	now := e.now()
	subject, err := e.verify(ctx, "subject_token", req.SubjectToken, now)
	if err != nil {
		return nil, err
	}
	if subject.ClientID == "" {
		return nil, refusal(ErrInvalidRequest, "subject_token has no client_id")
	}
	exchangeable := func(token *VerifiedToken) bool {
		return slices.ContainsFunc(token.Audience, func(audience string) bool { return slices.Contains(client.SubjectAudiences, audience) })
	}
	if !exchangeable(subject) {
		return nil, refusal(ErrInvalidRequest, "subject token was not issued for a resource this client may exchange")
	}
	extra, err := subjectIssuerClaim(subject)
	if err != nil {
		return nil, err
	}
	var actor *VerifiedToken
	if req.ActorToken != "" {
		if actor, err = e.verify(ctx, "actor_token", req.ActorToken, now); err != nil {
			return nil, err
		}
		// A token minted for an upstream does not name an actor either.
		if !exchangeable(actor) {
			return nil, refusal(ErrInvalidRequest, "actor token was not issued for a resource this client may exchange")
		}
	}
	chain, err := actorChain(subject, actor)
	if err != nil {
		return nil, err
	}

	granted, err := grantScopes(subject.Scopes, client.Scopes, requested)
	if err != nil {
		return nil, err
	}

	ttl := min(e.ttl, subject.Expiry.Sub(now).Truncate(time.Second))
	if req.Lifetime > 0 {
		ttl = min(ttl, req.Lifetime)
	}
	if actor != nil {
		ttl = min(ttl, actor.Expiry.Sub(now).Truncate(time.Second))
	}
	if ttl < time.Second {
		return nil, refusal(ErrInvalidRequest, "%s expires in less than a second", expiringToken(subject, actor, now))
	}

	token, claims, err := e.minter.Mint(ctx, Grant{
		Subject:    subject.Subject,
		ClientID:   subject.ClientID,
		Audience:   target,
		Scopes:     granted,
		TTL:        ttl,
		Actor:      chain,
		Delegation: chain != nil,
		Extra:      extra,
	})
	if err != nil {
		return nil, refusal(ErrServerError, "the token could not be issued").WithWrap(err)
	}
	return &ExchangeResponse{
		AccessToken:     token,
		IssuedTokenType: issuedType,
		TokenType:       "Bearer",
		ExpiresIn:       int64(ttl / time.Second),
		Scope:           claims.Scope,
		ScopeChanged:    !sameScopes(requested, granted),
		Claims:          claims,
	}, nil
}

// SubjectIssuerClaim names the issuer that authenticated a token's
// subject when that is not the token's own issuer: the broker mints tokens
// for users of other authorization servers too, and (sub_iss, sub) keeps
// them apart from its own users of the same sub.
const SubjectIssuerClaim = "sub_iss"

// subjectIssuerClaim carries the subject token's sub_iss over, so that an
// exchange does not make a foreign user look like one of this issuer's.
func subjectIssuerClaim(subject *VerifiedToken) (map[string]any, error) {
	raw, present := subject.Claims[SubjectIssuerClaim]
	if !present {
		return nil, nil
	}
	issuer, ok := raw.(string)
	if !ok || issuer == "" {
		return nil, refusal(ErrInvalidRequest, "subject_token's %s is not a non-empty string", SubjectIssuerClaim)
	}
	return map[string]any{SubjectIssuerClaim: issuer}, nil
}

// checkTokenTypes applies the parameter rules of RFC 8693 §2.1 and returns
// the issued_token_type to answer with.
func checkTokenTypes(req *ExchangeRequest) (string, error) {
	switch {
	case req.SubjectToken == "":
		return "", refusal(ErrInvalidRequest, "subject_token is required")
	case req.SubjectTokenType == "":
		return "", refusal(ErrInvalidRequest, "subject_token_type is required")
	case !acceptedTokenType(req.SubjectTokenType):
		return "", refusal(ErrInvalidRequest, "subject_token_type must be %s or %s", TokenTypeAccessToken, TokenTypeJWT)
	case req.ActorToken != "" && req.ActorTokenType == "":
		return "", refusal(ErrInvalidRequest, "actor_token_type is required with actor_token")
	case req.ActorToken == "" && req.ActorTokenType != "":
		return "", refusal(ErrInvalidRequest, "actor_token_type is only allowed with actor_token")
	case req.ActorToken != "" && !acceptedTokenType(req.ActorTokenType):
		return "", refusal(ErrInvalidRequest, "actor_token_type must be %s or %s", TokenTypeAccessToken, TokenTypeJWT)
	case req.RequestedTokenType != "" && !acceptedTokenType(req.RequestedTokenType):
		return "", refusal(ErrInvalidRequest, "requested_token_type must be %s or %s", TokenTypeAccessToken, TokenTypeJWT)
	case req.RequestedTokenType == TokenTypeJWT:
		return TokenTypeJWT, nil
	}
	return TokenTypeAccessToken, nil
}

// acceptedTokenType: the broker's tokens are access tokens and JWTs both.
func acceptedTokenType(tokenType string) bool {
	return tokenType == TokenTypeAccessToken || tokenType == TokenTypeJWT
}

// resolveTarget combines audience and resource into the one target the
// token is for. The broker mints a single-valued aud, so several targets
// cannot be served (RFC 8693 §2.2.2: invalid_target).
func resolveTarget(client ExchangeClient, req ExchangeRequest) (string, error) {
	var targets []string
	for _, audience := range req.Audiences {
		if audience == "" {
			return "", refusal(ErrInvalidRequest, "audience must not be empty")
		}
		if !slices.Contains(targets, audience) {
			targets = append(targets, audience)
		}
	}
	for _, resource := range req.Resources {
		// RFC 8707 §2: an absolute URI without a fragment.
		u, err := url.Parse(resource)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(resource, "#") {
			return "", refusal(ErrInvalidTarget, "resource must be an absolute URI without a fragment")
		}
		if !slices.Contains(targets, resource) {
			targets = append(targets, resource)
		}
	}
	switch {
	case len(targets) == 0:
		return "", refusal(ErrInvalidRequest, "audience or resource is required")
	case len(targets) > 1:
		return "", refusal(ErrInvalidTarget, "audience and resource must name a single target")
	case !slices.Contains(client.Audiences, targets[0]):
		return "", refusal(ErrInvalidTarget, "the client may not obtain tokens for this audience")
	}
	return targets[0], nil
}

// requestedScopes checks the requested scopes' syntax and drops repeats,
// keeping the order.
func requestedScopes(values []string) ([]string, error) {
	var scopes []string
	for _, value := range values {
		for _, scope := range strings.Fields(value) {
			if !IsScopeToken(scope) {
				return nil, refusal(ErrInvalidScope, "scope must be space-separated scope tokens (RFC 6749 §3.3)")
			}
			if !slices.Contains(scopes, scope) {
				scopes = append(scopes, scope)
			}
		}
	}
	return scopes, nil
}

// verify checks a subject or actor token; name is its parameter name.
func (e *Exchanger) verify(ctx context.Context, name, token string, now time.Time) (*VerifiedToken, error) {
	verified, err := e.keys.Verify(token, VerifyOptions{
		Issuer:    e.issuer,
		ClockSkew: e.clockSkew,
		Now:       func() time.Time { return now },
	})
	if err != nil {
		if reason := oauth.ReasonOf(err); reason != "" {
			return nil, refusal(ErrInvalidRequest, "%s is not a valid access token from this issuer: %s", name, reason)
		}
		return nil, ErrServerError.WithWrap(err)
	}
	if e.revoked != nil {
		if verified.TokenID == "" {
			return nil, refusal(ErrInvalidRequest, "%s has no jti, so its revocation cannot be checked", name)
		}
		if e.revoked(ctx, verified.TokenID) {
			return nil, refusal(ErrInvalidRequest, "%s has been revoked", name)
		}
	}
	return verified, nil
}

// actorChain builds the new token's act: nil for impersonation; for
// delegation the actor, with the subject token's chain nested inside. It
// enforces the subject token's may_act.
func actorChain(subject, actor *VerifiedToken) (*oauth.Actor, error) {
	if actor == nil {
		if subject.MayAct != nil {
			return nil, refusal(ErrInvalidRequest, "subject_token names who may act for its subject (may_act); impersonation is not allowed, present that party's actor_token")
		}
		return nil, nil
	}
	identity := cmp.Or(actor.ClientID, actor.Subject)
	if may := subject.MayAct; may != nil {
		if (may.Subject != "" && may.Subject != identity) ||
			(may.ClientID != "" && may.ClientID != actor.ClientID) ||
			(may.Issuer != "" && may.Issuer != actor.Issuer) {
			return nil, refusal(ErrInvalidRequest, "the actor_token's party is not the one the subject_token's may_act allows to act")
		}
	}
	chain := &oauth.Actor{Subject: identity, ClientID: actor.ClientID, Actor: subject.Actor}
	depth := 0
	for link := chain; link != nil; link = link.Actor {
		depth++
	}
	if depth > oauth.MaxActorDepth {
		return nil, refusal(ErrInvalidRequest, "the delegation chain would be longer than %d actors", oauth.MaxActorDepth)
	}
	return chain, nil
}

// grantScopes decides the scopes of the new token. A request is granted
// whole or refused: silently granting less would let a client believe it
// holds a scope it does not. No request, no scope.
func grantScopes(subject, allowed, requested []string) ([]string, error) {
	for _, scope := range requested {
		if !slices.Contains(subject, scope) {
			return nil, refusal(ErrInvalidScope, "scope %q is not in the subject_token's scope", scope)
		}
		if len(allowed) > 0 && !slices.Contains(allowed, scope) {
			return nil, refusal(ErrInvalidScope, "scope %q is not allowed for this client", scope)
		}
	}
	return requested, nil
}

// sameScopes compares two duplicate-free scope lists as sets.
func sameScopes(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, scope := range a {
		if !slices.Contains(b, scope) {
			return false
		}
	}
	return true
}

// expiringToken names the token that limits the lifetime below a second.
func expiringToken(subject, actor *VerifiedToken, now time.Time) string {
	if actor != nil && actor.Expiry.Sub(now) < subject.Expiry.Sub(now) {
		return "actor_token"
	}
	return "subject_token"
}
