package exchange

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Outbound identity. The upstream of an app whose outbound type is
// tokenExchange never sees the agent's token. A tools/call carries a
// tool token: the app's audience, the tool's scopes (never more than the
// agent holds, and narrowed further when the policy names scopes) and the
// tool's lifetime. Every other request of the app's upstream session —
// initialize, lists, reads, prompts, completions, notifications, the GET
// stream, DELETE — carries a session token: the app's audience, no scopes,
// the default lifetime, so an upstream that checks every request still
// accepts the session.

// DefaultTool names the tool grant for tools that have none of their
// own; without it such tools get no token.
const DefaultTool = "*"

// SessionTokenTTL is the lifetime of session tokens: the default lifetime
// of a tool's token.
const SessionTokenTTL = 5 * time.Second

// ToolGrant is the shape of one tool's token.
type ToolGrant struct {
	Scopes []string
	// TTL is rounded up to whole seconds: tokens count time in seconds.
	TTL time.Duration
	// Reuse lets one client session's calls of the tool carry the same
	// token while at least half its lifetime remains (ToolCall.Reuse),
	// for upstreams that do not need a fresh jti per call.
	Reuse bool
}

// AppOptions is one app's outbound token configuration.
type AppOptions struct {
	Name       string
	Audience   string
	Delegation bool // the token carries the agent as actor (act)
	// Tools holds each tool's grant by upstream tool name; DefaultTool's
	// applies to tools without their own.
	Tools  map[string]ToolGrant
	Issuer Issuer
	// Shape shapes the tokens beyond the defaults; minted tokens only.
	Shape TokenShape
}

// Outbound issues the tokens of every app whose upstream receives
// exchanged tokens.
type Outbound struct {
	apps map[string]*AppIssuer
	// exchangesAgentToken: some app's issuer needs the agent's own token.
	exchangesAgentToken bool
}

// NewOutbound prepares the apps' grants; nil when there are none.
func NewOutbound(options []AppOptions) (*Outbound, error) {
	if len(options) == 0 {
		return nil, nil
	}
	o := &Outbound{apps: make(map[string]*AppIssuer, len(options))}
	for _, opts := range options {
		if opts.Issuer == nil {
			return nil, fmt.Errorf("exchange: app %q: no issuer", opts.Name)
		}
		if _, minted := opts.Issuer.(*MintingIssuer); !minted && !opts.Shape.IsZero() {
			return nil, fmt.Errorf("exchange: app %q: a connector shapes its own tokens; the actor, subject format and claims apply to minted ones", opts.Name)
		}
		a := &AppIssuer{name: opts.Name, audience: opts.Audience, delegation: opts.Delegation,
			issuer: opts.Issuer, tools: make(map[string]*ToolGrant, len(opts.Tools)), shape: opts.Shape}
		for name, grant := range opts.Tools {
			if rest := grant.TTL % time.Second; rest != 0 {
				grant.TTL += time.Second - rest
			}
			a.tools[name] = &grant
		}
		o.apps[opts.Name] = a
		o.exchangesAgentToken = o.exchangesAgentToken || opts.Issuer.ExchangesAgentToken()
	}
	return o, nil
}

// App is the issuer of app's tokens; nil when app receives none.
func (o *Outbound) App(name string) *AppIssuer {
	if o == nil {
		return nil
	}
	return o.apps[name]
}

// ExchangesAgentToken reports whether some app's tokens are exchanged for
// the agent's own token, which a call must then keep at hand.
func (o *Outbound) ExchangesAgentToken() bool { return o != nil && o.exchangesAgentToken }

// AppIssuer issues one app's tool and session tokens.
type AppIssuer struct {
	name       string
	audience   string
	delegation bool
	tools      map[string]*ToolGrant
	issuer     Issuer
	shape      TokenShape
}

// Errors of outbound issuing; callers compare with errors.Is or errors.As.
var (
	// ErrFailed wraps every *IssueError: no token could be had, so the
	// upstream was not contacted.
	ErrFailed = errors.New("token exchange failed")
	// ErrNoAgent: tokens are issued for an authenticated agent only.
	ErrNoAgent = errors.New("token exchange needs an authenticated agent")
	// ErrAgentExpired refuses a session token for an agent whose own token
	// expired, outside any call that would prove it renewed.
	ErrAgentExpired = errors.New("the agent's access token has expired")
)

// IssueError is a failed issue. Its text names the app and the cause,
// never a token.
type IssueError struct {
	App string
	Err error
}

func (e *IssueError) Error() string {
	return fmt.Sprintf("token exchange for app %q failed: %s", e.App, Describe(e.Err))
}

func (e *IssueError) Unwrap() []error { return []error{ErrFailed, e.Err} }

// ScopeError refuses a tool call whose agent token lacks scopes the
// tool's token needs: the agent may step up and come back with them. It
// matches oauth.ErrInsufficientScope.
type ScopeError struct {
	Scopes []string
}

func (e *ScopeError) Error() string {
	return "insufficient scope: the tool needs " + strings.Join(e.Scopes, " ")
}

func (e *ScopeError) Unwrap() error { return oauth.ErrInsufficientScope }

// ToolCall is what a tool token is issued for.
type ToolCall struct {
	Principal *oauth.Principal
	Tool      string // the upstream's name of the tool
	// PolicyScopes narrows the tool's scopes to those the policy named;
	// nil when it named none.
	PolicyScopes []string
	// SubjectToken is the agent's own token, for issuers that exchange it.
	SubjectToken Credential
	// Reuse holds the client session's tokens of tools whose grant allows
	// reuse; nil: every call gets a fresh token.
	Reuse *ReusedTokens
}

// ToolToken issues the token a tools/call carries: an empty Value, without
// error, when the tool has no grant and the call is to carry no token.
func (a *AppIssuer) ToolToken(ctx context.Context, call ToolCall) (UpstreamToken, error) {
	grant := a.tools[call.Tool]
	if grant == nil {
		grant = a.tools[DefaultTool]
	}
	if grant == nil {
		return UpstreamToken{}, nil
	}
	if call.Principal == nil {
		return UpstreamToken{}, ErrNoAgent
	}
	scopes, err := grantedScopes(grant.Scopes, call.Principal.Scopes, call.PolicyScopes)
	if err != nil {
		return UpstreamToken{}, err
	}
	var key reuseKey
	if grant.Reuse && call.Reuse != nil {
		key = reuseKey{app: a, tool: call.Tool, scopes: strings.Join(scopes, " "), agent: agentOf(call.Principal)}
		if token, ok := call.Reuse.get(key, time.Now()); ok {
			return token, nil
		}
	}
	r := TokenRequest{Principal: call.Principal, Audience: a.audience, Scopes: scopes, TTL: grant.TTL, Delegation: a.delegation, Shape: a.shape}
	if a.issuer.ExchangesAgentToken() {
		r.SubjectToken = call.SubjectToken
	}
	issued := time.Now()
	token, err := a.issuer.Issue(ctx, r)
	if err != nil {
		return UpstreamToken{}, &IssueError{App: a.name, Err: err}
	}
	if grant.Reuse && call.Reuse != nil {
		call.Reuse.put(key, token, issued)
	}
	return token, nil
}

// ReusedTokens are one client session's tool tokens kept for reuse, each
// while at least half its lifetime remains and the agent's token is the
// one it was issued for. The zero value is ready; it is safe for
// concurrent use.
type ReusedTokens struct {
	mu     sync.Mutex
	tokens map[reuseKey]reusedToken
}

// maxReusedTokens bounds the tokens one session keeps; past it they are
// all dropped and issued afresh.
const maxReusedTokens = 64

type reuseKey struct {
	app    *AppIssuer
	tool   string
	scopes string
	agent  string // the agent's token: issuer, subject, client, jti, expiry
}

type reusedToken struct {
	token UpstreamToken
	until time.Time
}

func (rt *ReusedTokens) get(key reuseKey, now time.Time) (UpstreamToken, bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	t, ok := rt.tokens[key]
	if !ok || !now.Before(t.until) {
		return UpstreamToken{}, false
	}
	return t.token, true
}

func (rt *ReusedTokens) put(key reuseKey, token UpstreamToken, issued time.Time) {
	if token.Value == "" || token.Expiry.IsZero() {
		return
	}
	until := issued.Add(token.Expiry.Sub(issued) / 2)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.tokens == nil || len(rt.tokens) >= maxReusedTokens {
		rt.tokens = make(map[reuseKey]reusedToken)
	}
	rt.tokens[key] = reusedToken{token: token, until: until}
}

// agentOf names the agent's token a tool token was issued for: a new
// token of the agent (refreshed, other scopes or groups) gets new tool
// tokens.
func agentOf(p *oauth.Principal) string {
	return p.Issuer + "\x00" + p.Subject + "\x00" + p.ClientID + "\x00" + p.TokenID + "\x00" + strconv.FormatInt(p.Expiry.Unix(), 10)
}

// grantedScopes are the scopes of a tool's token: the tool's own, which the
// agent's token must all hold (a token is never wider than the one it was
// exchanged for), narrowed to those the policy named, if it named any.
func grantedScopes(tool, held, named []string) ([]string, error) {
	for _, scope := range tool {
		if !slices.Contains(held, scope) {
			return nil, &ScopeError{Scopes: tool}
		}
	}
	if named == nil {
		return tool, nil
	}
	narrowed := make([]string, 0, len(tool))
	for _, scope := range tool {
		if slices.Contains(named, scope) {
			narrowed = append(narrowed, scope)
		}
	}
	return narrowed, nil
}

// SessionToken issues the session tokens of one upstream session for the
// agent that agent reports (the client session's latest), keeping each
// while at least half its lifetime remains, or, when no new one can be
// had, until it expires.
func (a *AppIssuer) SessionToken(agent func() *oauth.Principal) *SessionToken {
	return &SessionToken{app: a, agent: agent}
}

// SessionToken is one upstream session's identity-only token.
type SessionToken struct {
	app   *AppIssuer
	agent func() *oauth.Principal

	mu        sync.Mutex
	principal *oauth.Principal
	token     Credential
	renew     time.Time
	expiry    time.Time
}

// Token is the session's token. subject is the agent's own token when the
// request is part of a call, empty otherwise.
func (s *SessionToken) Token(ctx context.Context, subject Credential) (Credential, error) {
	token, err := s.issue(ctx, subject)
	if err != nil {
		return "", &IssueError{App: s.app.name, Err: err}
	}
	return token, nil
}

func (s *SessionToken) issue(ctx context.Context, subject Credential) (Credential, error) {
	principal := s.agent()
	if principal == nil {
		return "", ErrNoAgent
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	cached := s.token != "" && s.principal == principal
	if cached && now.Before(s.renew) {
		return s.token, nil
	}
	if !principal.Expiry.IsZero() && !now.Before(principal.Expiry) {
		return "", ErrAgentExpired
	}
	issuer := s.app.issuer
	if issuer.ExchangesAgentToken() && subject == "" {
		if cached && now.Before(s.expiry) {
			return s.token, nil
		}
		return "", ErrNoSubjectToken
	}
	token, err := issuer.Issue(ctx, TokenRequest{
		Principal:    principal,
		SubjectToken: subject,
		Audience:     s.app.audience,
		TTL:          SessionTokenTTL,
		Delegation:   s.app.delegation,
		Shape:        s.app.shape,
	})
	if err != nil {
		return "", err
	}
	s.principal, s.token, s.expiry = principal, token.Value, token.Expiry
	s.renew = now.Add(token.Expiry.Sub(now) / 2)
	return token.Value, nil
}
