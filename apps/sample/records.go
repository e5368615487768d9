package sample

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The customer records are made up. The credentials are the shapes real
// ones have (the AWS key id is AWS's documented example, the card numbers
// test cards, the IBAN the standard's example), so that a redacting
// gateway can be seen at work; none of them opens anything.
const (
	recordAWSKey     = "AKIAIOSFODNN7EXAMPLE"
	recordPrivateKey = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOq6vbsnB2mcrWIOL1NqplmSn2IhTr9cTU4oKmxyNVUT\n-----END PRIVATE KEY-----"
	recordJWT        = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSJ9.5mhBHqs5_DTLdINd9p5m7ZJ6XD0Xc55kIaCRY5r6HRA"
	recordCard       = "4111 1111 1111 1111"
	recordBadCard    = "4111 1111 1111 1112" // fails the Luhn check: no card number
	recordIBAN       = "DE89 3704 0044 0532 0130 00"
	recordEmail      = "alice.martin@example.com"
	recordOrder      = "order 1234-5678-9012-3456" // looks like a card, is none
)

// RecordInput names a customer record.
type RecordInput struct {
	Account string `json:"account" jsonschema:"account identifier, for example alice"`
}

// CustomerRecord is the structured output of customer_record.
type CustomerRecord struct {
	Account    string `json:"account"`
	Email      string `json:"email"`
	IBAN       string `json:"iban"`
	Card       string `json:"card"`
	OtherCard  string `json:"otherCard"`
	AccessKey  string `json:"accessKey"`
	Session    string `json:"session"`
	SigningKey string `json:"signingKey"`
	Note       string `json:"note"`
}

func (s *ledgerServer) addRecordsTool() {
	addTool(s, &mcp.Tool{
		Name:        "customer_record",
		Title:       "Customer record",
		Description: "Return the customer record of an account, with its contact, payment and integration details.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, s.customerRecord)
}

func (s *ledgerServer) customerRecord(_ context.Context, _ *mcp.CallToolRequest, in RecordInput) (*mcp.CallToolResult, CustomerRecord, error) {
	a, err := s.ledger.detail(in.Account)
	if err != nil {
		return nil, CustomerRecord{}, err
	}
	r := CustomerRecord{
		Account: a.ID, Email: recordEmail, IBAN: recordIBAN, Card: recordCard, OtherCard: recordBadCard,
		AccessKey: recordAWSKey, Session: recordJWT, SigningKey: recordPrivateKey, Note: recordOrder,
	}
	text := fmt.Sprintf("Customer %s (%s)\ncontact: %s\nIBAN: %s\ncard on file: %s (expired: %s)\n"+
		"integration key: %s\nlast session: %s\nsigning key:\n%s\nlast purchase: %s\n",
		a.ID, a.Owner, r.Email, r.IBAN, r.Card, r.OtherCard, r.AccessKey, r.Session, r.SigningKey, r.Note)
	return textResult(text), r, nil
}
