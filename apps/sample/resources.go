package sample

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func (s *ledgerServer) addResources() {
	s.server.AddResource(&mcp.Resource{
		URI:         accountsURI,
		Name:        "accounts",
		Title:       "Accounts",
		Description: "Every account with its owner and balance.",
		MIMEType:    "application/json",
	}, s.readAccounts)
	s.server.AddResourceTemplate(&mcp.ResourceTemplate{
		URITemplate: accountURIBase + "{id}",
		Name:        "account",
		Title:       "Account",
		Description: "One account with its history.",
		MIMEType:    "application/json",
	}, s.readAccount)
}

func (s *ledgerServer) readAccounts(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	return jsonResource(req.Params.URI, AccountList{Accounts: s.ledger.list()})
}

func (s *ledgerServer) readAccount(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	account, err := s.accountFromURI(req.Params.URI)
	if err != nil {
		return nil, err
	}
	return jsonResource(req.Params.URI, account)
}

func (s *ledgerServer) accountFromURI(uri string) (AccountDetail, error) {
	id, ok := strings.CutPrefix(uri, accountURIBase)
	if !ok || id == "" || strings.ContainsAny(id, "/?#") {
		return AccountDetail{}, mcp.ResourceNotFoundError(uri)
	}
	account, err := s.ledger.detail(id)
	if errors.Is(err, errUnknownAccount) {
		return AccountDetail{}, mcp.ResourceNotFoundError(uri)
	}
	return account, err
}

func jsonResource(uri string, v any) (*mcp.ReadResourceResult, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sample: encode %s: %w", uri, err)
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{
		{URI: uri, MIMEType: "application/json", Text: string(data)},
	}}, nil
}

// subscribe accepts the resources that exist; the SDK keeps the subscription
// and ResourceUpdated finds it after a transfer.
func (s *ledgerServer) subscribe(_ context.Context, req *mcp.SubscribeRequest) error {
	if req.Params.URI == accountsURI {
		return nil
	}
	_, err := s.accountFromURI(req.Params.URI)
	return err
}

func (s *ledgerServer) unsubscribe(context.Context, *mcp.UnsubscribeRequest) error { return nil }

func (s *ledgerServer) addPrompts() {
	s.server.AddPrompt(&mcp.Prompt{
		Name:        "audit_account",
		Title:       "Audit an account",
		Description: "Ask the model to audit one account's history.",
		Arguments: []*mcp.PromptArgument{
			{Name: "account", Title: "Account", Description: "account identifier, for example alice", Required: true},
		},
	}, s.auditAccount)
}

func (s *ledgerServer) auditAccount(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	id := req.Params.Arguments["account"]
	if id == "" {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: `audit_account: missing required argument "account"`}
	}
	account, err := s.ledger.detail(id)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "audit_account: " + err.Error()}
	}
	var text strings.Builder
	fmt.Fprintf(&text, "Audit account %s (%s), current balance %d. "+
		"Check that every entry follows from the one before it and point out any unusual transfer.\n\n",
		account.ID, account.Owner, account.Balance)
	writeHistory(&text, account.History)
	return &mcp.GetPromptResult{
		Description: "Audit of account " + account.ID,
		Messages:    []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: text.String()}}},
	}, nil
}
