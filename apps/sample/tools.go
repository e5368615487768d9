package sample

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const (
	// confirmAbove is the largest transfer that needs no confirmation.
	confirmAbove = 1000
	// slowCountMaxN and slowCountMaxDelay keep one slow_count call bounded.
	slowCountMaxN     = 1000
	slowCountMaxDelay = 10 * time.Second

	// Keys of the input requests the tools send back to the client.
	confirmInput = "confirm"
	summaryInput = "summary"
	rootsInput   = "roots"
)

func (s *ledgerServer) addTools() {
	addTool(s, &mcp.Tool{
		Name:        "list_accounts",
		Title:       "List accounts",
		Description: "List every account with its owner and balance.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, s.listAccounts)
	addTool(s, &mcp.Tool{
		Name:        "get_balance",
		Title:       "Get balance",
		Description: "Return the balance of one account.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, s.getBalance)
	addTool(s, &mcp.Tool{
		Name:  "transfer",
		Title: "Transfer",
		Description: fmt.Sprintf("Move an amount from one account to another. "+
			"Transfers above %d ask the user to confirm.", confirmAbove),
		Annotations: &mcp.ToolAnnotations{DestructiveHint: new(false)},
	}, s.transfer)
	addTool(s, &mcp.Tool{
		Name:        "summarize",
		Title:       "Summarize account",
		Description: "Ask the client's model to summarize an account's history (needs the sampling capability).",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, s.summarize)
	addTool(s, &mcp.Tool{
		Name:        "slow_count",
		Title:       "Count slowly",
		Description: "Count to n, waiting delay_ms between steps, with a progress and a logging notification per step.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, s.slowCount)
	addTool(s, &mcp.Tool{
		Name:  "whoami",
		Title: "Who am I",
		Description: "Report the identity the request carried: whether an Authorization header was present and, " +
			"for a JWT, its payload claims: verified when this server checks access tokens, otherwise decoded " +
			"but NOT verified. The token itself is never echoed.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, s.whoami)
	addTool(s, &mcp.Tool{
		Name:        "fail_protocol",
		Title:       "Fail with a protocol error",
		Description: "Always fail with a JSON-RPC error (not an isError result), to test error pass-through.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, failProtocol)
	addTool(s, &mcp.Tool{
		Name:        "list_roots",
		Title:       "List roots",
		Description: "Ask the client for its roots and return their URIs (needs the roots capability).",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, s.listRoots)
}

// AccountList is the output of list_accounts.
type AccountList struct {
	Accounts []Account `json:"accounts"`
}

func (s *ledgerServer) listAccounts(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, AccountList, error) {
	accounts := s.ledger.list()
	var text strings.Builder
	for _, a := range accounts {
		fmt.Fprintf(&text, "%s (%s): %d\n", a.ID, a.Owner, a.Balance)
	}
	return textResult(text.String()), AccountList{Accounts: accounts}, nil
}

// AccountInput names one account.
type AccountInput struct {
	Account string `json:"account" jsonschema:"account identifier, for example alice"`
}

// Balance is the output of get_balance.
type Balance struct {
	Account string `json:"account"`
	Balance int64  `json:"balance"`
}

// Returning a plain error from a typed tool handler makes the SDK answer
// with an isError result, which is what a tool failure must be.
func (s *ledgerServer) getBalance(_ context.Context, _ *mcp.CallToolRequest, in AccountInput) (*mcp.CallToolResult, Balance, error) {
	a, err := s.ledger.detail(in.Account)
	if err != nil {
		return nil, Balance{}, err
	}
	return textResult(fmt.Sprintf("%s: %d", a.ID, a.Balance)), Balance{Account: a.ID, Balance: a.Balance}, nil
}

// TransferInput is the input of transfer.
type TransferInput struct {
	From   string `json:"from" jsonschema:"account to debit"`
	To     string `json:"to" jsonschema:"account to credit"`
	Amount int64  `json:"amount" jsonschema:"whole currency units, greater than 0 and at most the balance of from"`
}

// TransferResult is the output of transfer: both accounts after the move.
type TransferResult struct {
	Amount int64   `json:"amount"`
	From   Account `json:"from"`
	To     Account `json:"to"`
}

func (s *ledgerServer) transfer(ctx context.Context, req *mcp.CallToolRequest, in TransferInput) (*mcp.CallToolResult, TransferResult, error) {
	if err := s.ledger.checkTransfer(in.From, in.To, in.Amount); err != nil {
		return nil, TransferResult{}, err
	}
	if in.Amount > confirmAbove {
		// The state binds a confirmation to the transfer it was asked for, and
		// lets tests notice a proxy that drops requestState.
		state := fmt.Sprintf("confirm-transfer:%s:%s:%d", in.From, in.To, in.Amount)
		response, answered := req.Params.InputResponses[confirmInput]
		switch {
		case answered:
			if req.Params.RequestState != state || !confirmed(response) {
				return nil, TransferResult{}, errors.New("transfer not confirmed")
			}
		case !clientCan(req, elicitation):
			return nil, TransferResult{}, fmt.Errorf("confirmation required: transfers above %d need a client with the elicitation capability", confirmAbove)
		default:
			return &mcp.CallToolResult{
				InputRequests: mcp.InputRequestMap{confirmInput: &mcp.ElicitParams{
					Mode:    "form",
					Message: fmt.Sprintf("Transfer %d from %s to %s?", in.Amount, in.From, in.To),
					RequestedSchema: map[string]any{
						"type": "object",
						"properties": map[string]any{
							"confirm": map[string]any{"type": "boolean", "title": "Confirm the transfer"},
						},
						"required": []string{"confirm"},
					},
				}},
				RequestState: state,
			}, TransferResult{}, nil
		}
	}
	from, to, err := s.ledger.transfer(in.From, in.To, in.Amount)
	if err != nil {
		return nil, TransferResult{}, err
	}
	s.logger.InfoContext(ctx, "transfer", "from", in.From, "to", in.To, "amount", in.Amount)
	for _, uri := range []string{accountsURI, accountURIBase + in.From, accountURIBase + in.To} {
		if err := s.server.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: uri}); err != nil {
			s.logger.WarnContext(ctx, "resource updated notification", "uri", uri, "error", err)
		}
	}
	text := fmt.Sprintf("moved %d from %s to %s; %s: %d, %s: %d", in.Amount, from.ID, to.ID, from.ID, from.Balance, to.ID, to.Balance)
	return textResult(text), TransferResult{Amount: in.Amount, From: from, To: to}, nil
}

func confirmed(response mcp.InputResponse) bool {
	result, ok := response.(*mcp.ElicitResult)
	if !ok || result.Action != "accept" {
		return false
	}
	yes, _ := result.Content["confirm"].(bool)
	return yes
}

// Summary is the output of summarize.
type Summary struct {
	Account string `json:"account"`
	Summary string `json:"summary"`
	Model   string `json:"model,omitempty" jsonschema:"the model the client reported"`
}

func (s *ledgerServer) summarize(_ context.Context, req *mcp.CallToolRequest, in AccountInput) (*mcp.CallToolResult, Summary, error) {
	account, err := s.ledger.detail(in.Account)
	if err != nil {
		return nil, Summary{}, err
	}
	if response, answered := req.Params.InputResponses[summaryInput]; answered {
		text, model, ok := sampledText(response)
		if !ok {
			return nil, Summary{}, errors.New("sampling returned no text")
		}
		return textResult(text), Summary{Account: account.ID, Summary: text, Model: model}, nil
	}
	if !clientCan(req, sampling) {
		return nil, Summary{}, errors.New("summarize needs a client with the sampling capability")
	}
	var prompt strings.Builder
	fmt.Fprintf(&prompt, "Summarize the history of account %s (%s), current balance %d, in two sentences.\n", account.ID, account.Owner, account.Balance)
	writeHistory(&prompt, account.History)
	return &mcp.CallToolResult{
		InputRequests: mcp.InputRequestMap{summaryInput: &mcp.CreateMessageParams{
			SystemPrompt: "You are a careful bookkeeper.",
			Messages:     []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: prompt.String()}}},
			MaxTokens:    200,
		}},
	}, Summary{}, nil
}

// sampledText accepts both result shapes: the SDK hands legacy sessions'
// answers over as CreateMessageWithToolsResult, and a client may answer an
// input_required result with either.
func sampledText(response mcp.InputResponse) (text, model string, ok bool) {
	var content []mcp.Content
	switch r := response.(type) {
	case *mcp.CreateMessageWithToolsResult:
		content, model = r.Content, r.Model
	case *mcp.CreateMessageResult:
		content, model = []mcp.Content{r.Content}, r.Model
	}
	for _, c := range content {
		if t, isText := c.(*mcp.TextContent); isText && t.Text != "" {
			return t.Text, model, true
		}
	}
	return "", "", false
}

func writeHistory(b *strings.Builder, history []Entry) {
	for _, e := range history {
		fmt.Fprintf(b, "#%d %s %d", e.Sequence, e.Kind, e.Amount)
		if e.Counterparty != "" {
			fmt.Fprintf(b, " (%s)", e.Counterparty)
		}
		fmt.Fprintf(b, ", balance %d\n", e.Balance)
	}
}

// SlowCountInput is the input of slow_count.
type SlowCountInput struct {
	N       int `json:"n" jsonschema:"how many steps to count, 0 to 1000"`
	DelayMS int `json:"delay_ms,omitempty" jsonschema:"milliseconds to wait between steps, at most 10000"`
}

func (s *ledgerServer) slowCount(ctx context.Context, req *mcp.CallToolRequest, in SlowCountInput) (*mcp.CallToolResult, any, error) {
	delay := time.Duration(in.DelayMS) * time.Millisecond
	if in.N < 0 || in.N > slowCountMaxN {
		return nil, nil, fmt.Errorf("n must be between 0 and %d", slowCountMaxN)
	}
	if delay < 0 || delay > slowCountMaxDelay {
		return nil, nil, fmt.Errorf("delay_ms must be between 0 and %d", slowCountMaxDelay.Milliseconds())
	}
	token := req.Params.GetProgressToken()
	var timer *time.Timer
	for i := 1; i <= in.N; i++ {
		if i > 1 && delay > 0 {
			if timer == nil {
				timer = time.NewTimer(delay)
				defer timer.Stop()
			} else {
				timer.Reset(delay)
			}
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if err := ctx.Err(); err != nil {
			s.logger.InfoContext(ctx, "slow_count stopped", "counted", i-1, "n", in.N, "reason", err)
			return nil, nil, err
		}
		message := fmt.Sprintf("counted %d of %d", i, in.N)
		if token != nil {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: token, Progress: float64(i), Total: float64(in.N), Message: message,
			}); err != nil {
				return nil, nil, fmt.Errorf("progress notification: %w", err)
			}
		}
		// Logging is deprecated from 2026-07-28 on, but older clients and the
		// broker's relay of notifications/message still need a source.
		if err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "slow_count", Data: message}); err != nil {
			return nil, nil, fmt.Errorf("logging notification: %w", err)
		}
	}
	return textResult(fmt.Sprintf("counted %d", in.N)), nil, nil
}

// A *jsonrpc.Error is the one error a typed tool handler can return that the
// SDK sends as a JSON-RPC error; any other error becomes an isError result.
func failProtocol(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
	return nil, nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "fail_protocol: deliberate protocol error"}
}

// Roots is the output of list_roots.
type Roots struct {
	URIs []string `json:"uris"`
}

func (s *ledgerServer) listRoots(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, Roots, error) {
	if response, answered := req.Params.InputResponses[rootsInput]; answered {
		result, ok := response.(*mcp.ListRootsResult)
		if !ok {
			return nil, Roots{}, errors.New("roots/list returned no roots")
		}
		uris := make([]string, 0, len(result.Roots))
		for _, r := range result.Roots {
			uris = append(uris, r.URI)
		}
		return textResult(strings.Join(uris, "\n")), Roots{URIs: uris}, nil
	}
	if !clientCan(req, roots) {
		return nil, Roots{}, errors.New("list_roots needs a client with the roots capability")
	}
	return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{rootsInput: &mcp.ListRootsParams{}}}, Roots{}, nil
}

type clientCapability int

const (
	elicitation clientCapability = iota
	sampling
	roots
)

// clientCan reads the capabilities the client declared, from initialize or,
// on 2026-07-28 requests, from the request's _meta.
func clientCan(req *mcp.CallToolRequest, c clientCapability) bool {
	caps := req.ClientCapabilities()
	if caps == nil {
		return false
	}
	switch c {
	case elicitation:
		return caps.Elicitation != nil
	case sampling:
		return caps.Sampling != nil
	case roots:
		return caps.RootsV2 != nil
	}
	return false
}

func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}
