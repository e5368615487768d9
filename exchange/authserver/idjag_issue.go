package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"

	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// The Auth Provider as the company's identity provider: a client trades
// an ID token this server gave it for an Identity Assertion JWT
// Authorization Grant for a registered resource application (RFC 8693
// with requested_token_type id-jag), as a policy allows.

// Token types of the exchange.
const (
	TokenTypeIDJAG   = "urn:ietf:params:oauth:token-type:id-jag"
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
)

// DefaultIDJAGTTL is how long an issued ID-JAG lives.
const DefaultIDJAGTTL = 5 * time.Minute

// IDJAGIssuing lets the server issue ID-JAGs.
type IDJAGIssuing struct {
	// Resources are the resource applications grants may be issued for.
	Resources []IDJAGResource
	// Decide says whether the request may have a grant, and with which
	// scopes (nil: those asked), or the message of a refusal.
	Decide func(ctx context.Context, r IDJAGRequest) (allowed bool, scopes []string, message string)
	// TTL is the grants' lifetime (default DefaultIDJAGTTL).
	TTL time.Duration
}

// IDJAGResource is a resource application: its authorization server's
// issuer (the grant's aud), its resources, and the scopes grants may
// carry for it.
type IDJAGResource struct {
	Name, Audience string
	Resources      []string
	Scopes         []string
}

// IDJAGRequest is what the policy decides on.
type IDJAGRequest struct {
	ClientID string
	Subject  string
	Groups   []string
	Resource IDJAGResource
	// ResourceURI is the resource asked for, one of Resource.Resources.
	ResourceURI string
	Scopes      []string
}

// issueIDJAG answers a token exchange that asks for an ID-JAG.
func (s *Server) issueIDJAG(ctx context.Context, request fosite.AccessRequester, response fosite.AccessResponder) error {
	cfg := s.idjagIssuing
	if cfg == nil {
		return fosite.ErrInvalidRequest.WithHint("This server does not issue identity assertion grants.")
	}
	form := request.GetRequestForm()
	client := request.GetClient().GetID()
	if form.Get("actor_token") != "" || form.Get("actor_token_type") != "" {
		return fosite.ErrInvalidRequest.WithHint("An identity assertion grant is issued for the user alone: no actor token.")
	}
	if form.Get("subject_token_type") != TokenTypeIDToken {
		return fosite.ErrInvalidRequest.WithHintf("The subject token must be an ID token (%s).", TokenTypeIDToken)
	}
	keys, err := oauth.NewKeySet(s.keys.JWKS().Keys)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	claims, err := oauth.VerifyIDToken(form.Get("subject_token"), keys, oauth.IDTokenRules{Issuer: s.issuer, ClientID: client, AnyNonce: true}, s.now())
	if err != nil {
		return fosite.ErrInvalidGrant.WithHint("The subject token is not an ID token this server issued to this client, or it expired.")
	}
	audiences, resources := form["audience"], form["resource"]
	if len(audiences) != 1 || len(resources) != 1 {
		return exchange.ErrInvalidTarget.WithHint("Name exactly one audience (the resource application's authorization server) and one resource.")
	}
	var app *IDJAGResource
	for i := range cfg.Resources {
		r := &cfg.Resources[i]
		if r.Audience == audiences[0] && slices.Contains(r.Resources, resources[0]) {
			app = r
		}
	}
	if app == nil {
		return exchange.ErrInvalidTarget.WithHint("The audience and resource name no registered resource application.")
	}
	scopes := strings.Fields(form.Get("scope"))
	for _, scope := range scopes {
		if !slices.Contains(app.Scopes, scope) {
			return fosite.ErrInvalidScope.WithHintf("The scope '%s' is not one the resource application offers.", scope)
		}
	}
	subject, _ := claims["sub"].(string)
	var groups []string
	if list, ok := claims["groups"].([]any); ok {
		for _, g := range list {
			if name, ok := g.(string); ok {
				groups = append(groups, name)
			}
		}
	}
	token, granted, ttl, err := s.mintIDJAG(ctx, IDJAGRequest{ClientID: client, Subject: subject, Groups: groups, Resource: *app, ResourceURI: resources[0], Scopes: scopes})
	if err != nil {
		return err
	}
	response.SetAccessToken(token)
	response.SetTokenType("N_A")
	response.SetExtra("issued_token_type", TokenTypeIDJAG)
	response.SetExtra("expires_in", int64(ttl/time.Second))
	if len(granted) > 0 {
		response.SetExtra("scope", strings.Join(granted, " "))
	}
	return nil
}

// mintIDJAG asks the policy and, allowed, signs the grant r asks for.
func (s *Server) mintIDJAG(ctx context.Context, r IDJAGRequest) (token string, granted []string, ttl time.Duration, err error) {
	cfg := s.idjagIssuing
	allowed, granted, message := cfg.Decide(ctx, r)
	if !allowed {
		if message == "" {
			message = "The policy does not allow this client a grant for this user and resource application."
		}
		return "", nil, 0, fosite.ErrAccessDenied.WithHint(message)
	}
	if granted == nil {
		granted = r.Scopes
	}
	// A policy grants within what the application offers.
	granted = slices.DeleteFunc(slices.Clone(granted), func(scope string) bool { return !slices.Contains(r.Resource.Scopes, scope) })
	ttl = cfg.TTL
	if ttl == 0 {
		ttl = DefaultIDJAGTTL
	}
	now := s.now()
	grant := map[string]any{"iss": s.issuer, "sub": r.Subject, "aud": r.Resource.Audience, "resource": r.ResourceURI, "client_id": r.ClientID,
		"jti": randomID(), "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if len(granted) > 0 {
		grant["scope"] = strings.Join(granted, " ")
	}
	payload, err := json.Marshal(grant)
	if err != nil {
		return "", nil, 0, fosite.ErrServerError.WithWrap(err)
	}
	signer, err := s.keys.Active(jose.ES256)
	if err != nil {
		return "", nil, 0, fosite.ErrServerError.WithWrap(err)
	}
	if token, err = signer.Sign(oauth.TypIDJAG, payload); err != nil {
		return "", nil, 0, fosite.ErrServerError.WithWrap(err)
	}
	return token, granted, ttl, nil
}

// MintIDJAG issues in process an ID-JAG for the user subject (in groups)
// to clientID, for the resource application of audience and resource, as
// the policy decides: what the broker's own apps redeem at their
// upstreams' authorization servers.
func (s *Server) MintIDJAG(ctx context.Context, clientID, subject string, groups []string, audience, resource string, scopes []string) (string, error) {
	if s.idjagIssuing == nil {
		return "", errors.New("authserver: the Auth Provider issues no identity assertion grants (authProvider.idJag)")
	}
	for _, app := range s.idjagIssuing.Resources {
		if app.Audience == audience && slices.Contains(app.Resources, resource) {
			token, _, _, err := s.mintIDJAG(ctx, IDJAGRequest{ClientID: clientID, Subject: subject, Groups: groups, Resource: app, ResourceURI: resource, Scopes: scopes})
			if err != nil {
				return "", fmt.Errorf("authserver: identity assertion grant refused: %w", err)
			}
			return token, nil
		}
	}
	return "", fmt.Errorf("authserver: no resource application of authProvider.idJag has audience %q and resource %q", audience, resource)
}
