package exchange

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// recordingIssuer issues numbered tokens and keeps every request.
type recordingIssuer struct {
	exchanges bool
	requests  []TokenRequest
	ttl       time.Duration
	err       error
}

func (r *recordingIssuer) ExchangesAgentToken() bool { return r.exchanges }

func (r *recordingIssuer) Issue(_ context.Context, req TokenRequest) (UpstreamToken, error) {
	if r.err != nil {
		return UpstreamToken{}, r.err
	}
	r.requests = append(r.requests, req)
	ttl := r.ttl
	if ttl == 0 {
		ttl = req.TTL
	}
	return UpstreamToken{Value: Credential("token-" + string(rune('0'+len(r.requests)))), Expiry: time.Now().Add(ttl), Audience: req.Audience, Scopes: req.Scopes}, nil
}

func newTestOutbound(t *testing.T, issuer Issuer) *AppIssuer {
	t.Helper()
	o, err := NewOutbound([]AppOptions{{
		Name: "ledger", Audience: "https://ledger.example", Delegation: true, Issuer: issuer,
		Tools: map[string]ToolGrant{
			"pay":       {Scopes: []string{"ledger:write", "ledger:read"}, TTL: 1500 * time.Millisecond},
			DefaultTool: {Scopes: []string{"ledger:read"}, TTL: 5 * time.Second},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if o.App("other") != nil || !o.App("ledger").delegation {
		t.Fatal("apps are not kept by name")
	}
	return o.App("ledger")
}

func TestToolTokenShape(t *testing.T) {
	issuer := &recordingIssuer{}
	app := newTestOutbound(t, issuer)
	alice := &oauth.Principal{Subject: "alice", ClientID: "agent", Scopes: []string{"ledger:read", "ledger:write"}}
	ctx := context.Background()

	issued, err := app.ToolToken(ctx, ToolCall{Principal: alice, Tool: "pay", PolicyScopes: []string{"ledger:write"}})
	if err != nil {
		t.Fatal(err)
	}
	if issued.Audience != "https://ledger.example" || !slices.Equal(issued.Scopes, []string{"ledger:write"}) || issued.Value == "" {
		t.Errorf("the issued token says %+v, want its audience and scopes for the audit trail", issued)
	}
	if _, err := app.ToolToken(ctx, ToolCall{Principal: alice, Tool: "balance"}); err != nil {
		t.Fatal(err)
	}
	pay, balance := issuer.requests[0], issuer.requests[1]
	if !slices.Equal(pay.Scopes, []string{"ledger:write"}) || pay.TTL != 2*time.Second || pay.Audience != "https://ledger.example" || !pay.Delegation {
		t.Errorf("pay: got %+v, want the policy's one scope, 2s (rounded up), the app's audience, delegation", pay)
	}
	if !slices.Equal(balance.Scopes, []string{"ledger:read"}) || balance.TTL != 5*time.Second {
		t.Errorf("an unlisted tool: got %+v, want the default entry's", balance)
	}
	if pay.SubjectToken != "" {
		t.Error("an issuer that does not exchange the agent's token was given it")
	}

	reader := &oauth.Principal{Subject: "bob", ClientID: "agent", Scopes: []string{"ledger:read"}}
	_, err = app.ToolToken(ctx, ToolCall{Principal: reader, Tool: "pay"})
	var scope *ScopeError
	if !errors.As(err, &scope) || !errors.Is(err, oauth.ErrInsufficientScope) || !slices.Equal(scope.Scopes, []string{"ledger:write", "ledger:read"}) {
		t.Errorf("a tool needing scopes the agent lacks: got %v, want a ScopeError naming the tool's scopes", err)
	}
	if _, err := app.ToolToken(ctx, ToolCall{Tool: "pay"}); !errors.Is(err, ErrNoAgent) {
		t.Errorf("no principal: got %v, want ErrNoAgent", err)
	}
	if len(issuer.requests) != 2 {
		t.Errorf("refused calls reached the issuer: %d requests", len(issuer.requests))
	}

	issuer.err = errors.New("down")
	_, err = app.ToolToken(ctx, ToolCall{Principal: alice, Tool: "pay"})
	var failed *IssueError
	if !errors.As(err, &failed) || failed.App != "ledger" || !errors.Is(err, ErrFailed) {
		t.Errorf("a failed issue: got %v, want an IssueError for ledger", err)
	}
}

func TestToolWithoutGrantGetsNoToken(t *testing.T) {
	issuer := &recordingIssuer{}
	o, err := NewOutbound([]AppOptions{{Name: "a", Issuer: issuer, Tools: map[string]ToolGrant{"only": {TTL: time.Second}}}})
	if err != nil {
		t.Fatal(err)
	}
	token, err := o.App("a").ToolToken(context.Background(), ToolCall{Principal: &oauth.Principal{Subject: "alice"}, Tool: "other"})
	if err != nil || token.Value != "" || len(issuer.requests) != 0 {
		t.Errorf("got %q, %v, %d requests; want no token, no error, no request", token, err, len(issuer.requests))
	}
}

func TestSessionTokenIsReusedUntilHalfLife(t *testing.T) {
	issuer := &recordingIssuer{ttl: time.Hour}
	app := newTestOutbound(t, issuer)
	alice := &oauth.Principal{Subject: "alice", ClientID: "agent", Scopes: []string{"ledger:read"}}
	agent := alice
	session := app.SessionToken(func() *oauth.Principal { return agent })
	ctx := context.Background()

	first, err := session.Token(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := session.Token(ctx, ""); again != first || len(issuer.requests) != 1 {
		t.Errorf("a fresh token was not reused: %d requests", len(issuer.requests))
	}
	if r := issuer.requests[0]; r.Scopes != nil || r.TTL != SessionTokenTTL {
		t.Errorf("a session token: got %+v, want no scopes and the default lifetime", r)
	}
	// Another principal (the agent renewed its token) gets a new one.
	agent = &oauth.Principal{Subject: "alice", ClientID: "agent"}
	if renewed, _ := session.Token(ctx, ""); renewed == first || len(issuer.requests) != 2 {
		t.Errorf("a new agent token kept the old session token: %d requests", len(issuer.requests))
	}
	agent = &oauth.Principal{Subject: "alice", Expiry: time.Now().Add(-time.Second)}
	if _, err := session.Token(ctx, ""); !errors.Is(err, ErrAgentExpired) || !errors.Is(err, ErrFailed) {
		t.Errorf("an expired agent: got %v, want ErrAgentExpired", err)
	}
	agent = nil
	if _, err := session.Token(ctx, ""); !errors.Is(err, ErrNoAgent) {
		t.Errorf("no agent: got %v, want ErrNoAgent", err)
	}
}

func TestSessionTokenOutsideACallNeedsTheAgentToken(t *testing.T) {
	issuer := &recordingIssuer{exchanges: true, ttl: 2 * time.Second}
	app := newTestOutbound(t, issuer)
	alice := &oauth.Principal{Subject: "alice"}
	session := app.SessionToken(func() *oauth.Principal { return alice })
	ctx := context.Background()
	if _, err := session.Token(ctx, ""); !errors.Is(err, ErrNoSubjectToken) {
		t.Fatalf("nothing cached, no agent token: got %v, want ErrNoSubjectToken", err)
	}
	token, err := session.Token(ctx, "agent-token")
	if err != nil || issuer.requests[0].SubjectToken != "agent-token" {
		t.Fatalf("got %v, %+v", err, issuer.requests)
	}
	// Past half its life and outside a call, the token is kept until it
	// expires rather than failing.
	session.renew = time.Now().Add(-time.Millisecond)
	if kept, err := session.Token(ctx, ""); err != nil || kept != token {
		t.Errorf("outside a call a live token was not kept: %v", err)
	}
	session.expiry = time.Now().Add(-time.Millisecond)
	if _, err := session.Token(ctx, ""); !errors.Is(err, ErrNoSubjectToken) {
		t.Errorf("an expired cached token outside a call: got %v, want ErrNoSubjectToken", err)
	}
}

// A tool whose grant allows reuse gets one token per client session while
// at least half its lifetime remains; a new agent token, other scopes, a
// tool without reuse, another session: a fresh one.
func TestToolTokenReuse(t *testing.T) {
	issuer := &recordingIssuer{}
	o, err := NewOutbound([]AppOptions{{
		Name: "ledger", Audience: "https://ledger.example", Issuer: issuer,
		Tools: map[string]ToolGrant{
			"list": {Scopes: []string{"ledger:read"}, TTL: 2 * time.Second, Reuse: true},
			"pay":  {Scopes: []string{"ledger:read"}, TTL: 2 * time.Second},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	app := o.App("ledger")
	agent := &oauth.Principal{Subject: "alice", ClientID: "agent", Scopes: []string{"ledger:read"}, TokenID: "t1", Expiry: time.Now().Add(time.Hour)}
	var session, other ReusedTokens
	token := func(tool string, p *oauth.Principal, reuse *ReusedTokens, policy []string) Credential {
		t.Helper()
		tok, err := app.ToolToken(context.Background(), ToolCall{Principal: p, Tool: tool, Reuse: reuse, PolicyScopes: policy})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Value
	}
	first := token("list", agent, &session, nil)
	if again := token("list", agent, &session, nil); again != first {
		t.Errorf("a second call in the session got %s, want the reused %s", again, first)
	}
	if fresh := token("list", agent, &other, nil); fresh == first {
		t.Error("another session reused the first session's token")
	}
	if fresh := token("list", agent, nil, nil); fresh == first {
		t.Error("a call without a session's tokens reused one")
	}
	if a, b := token("pay", agent, &session, nil), token("pay", agent, &session, nil); a == b {
		t.Error("a tool without reuse got the same token twice")
	}
	if narrowed := token("list", agent, &session, []string{}); narrowed == first {
		t.Error("a call with other scopes reused a token")
	}
	refreshed := *agent
	refreshed.TokenID = "t2"
	if fresh := token("list", &refreshed, &session, nil); fresh == first {
		t.Error("a new agent token reused the old one's tool token")
	}
	n := len(issuer.requests)
	time.Sleep(1100 * time.Millisecond) // past half the 2 s lifetime
	if fresh := token("list", agent, &session, nil); fresh == first || len(issuer.requests) != n+1 {
		t.Errorf("past half its lifetime the token was reused (%d issued, want %d)", len(issuer.requests), n+1)
	}
}
