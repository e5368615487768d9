package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Record kinds.
const (
	KindCall       = "call"       // one tools/call, resources/read, prompts/get ... decision
	KindList       = "list"       // a list answered, with what it hid
	KindSession    = "session"    // a session opened, closed, refused
	KindAuth       = "auth"       // the Auth Provider: sign-in, consent, token issued or refused
	KindCheckpoint = "checkpoint" // a signed statement of the chain so far
	KindTrail      = "trail"      // the trail itself: opened, recovered, closed
	KindConsole    = "console"    // the web console: a sign-in, a refusal, a sign-out (its actions are recorded as what they do)
	KindApproval   = "approval"   // a call held for approval: requested, shown, approved, denied, refused, used, expired
	KindPin        = "pin"        // tool pinning: a definition changed, held, unclean; a pin approved or revoked
)

// Record is one audit record: one decision. Seq and Prev are set by the
// trail; ID is set by Trail.Write when empty. JSON field names are part of
// the on-disk format (see the package documentation).
type Record struct {
	Time    time.Time `json:"time"`
	ID      string    `json:"id"`    // random 128-bit hex
	Seq     uint64    `json:"seq"`   // position in the trail, from 1, across restarts and files
	Prev    string    `json:"prev"`  // hex SHA-256 of the previous record's line (without newline); "" for the very first
	Kind    string    `json:"kind"`  // one of the Kind constants
	Event   string    `json:"event"` // e.g. "tools/call", "session.opened", "signin.failed", "token.issued"
	TraceID string    `json:"traceId,omitempty"`
	Source  string    `json:"source,omitempty"`  // client address
	Session string    `json:"session,omitempty"` // digest of the session id, never the id
	Subject string    `json:"subject,omitempty"`
	Issuer  string    `json:"issuer,omitempty"`
	Client  string    `json:"client,omitempty"`
	Actors  []string  `json:"actors,omitempty"` // actor chain, the acting party first
	App     string    `json:"app,omitempty"`

	Tool         string `json:"tool,omitempty"`         // the name the client used
	UpstreamTool string `json:"upstreamTool,omitempty"` // the upstream's name
	Method       string `json:"method,omitempty"`

	ArgumentsDigest string          `json:"argumentsDigest,omitempty"` // "sha256:<hex>" of the canonical JSON (see Digest)
	Arguments       json.RawMessage `json:"arguments,omitempty"`       // only when configured, after redaction

	Decision       *Decision `json:"decision,omitempty"`
	Outbound       *Outbound `json:"outbound,omitempty"`
	UpstreamMillis float64   `json:"upstreamMs,omitempty"`
	Result         *Result   `json:"result,omitempty"`
	Hidden         []string  `json:"hidden,omitempty"` // list filtering: the names hidden
	// Redacted counts what redaction found in the result (and in the
	// recorded arguments), by detector; never the values.
	Redacted map[string]int `json:"redacted,omitempty"`
	// Pin is the definition's hash and standing for a pin record, or a
	// call refused for its pin.
	Pin *Pin `json:"pin,omitempty"`
	// Labels are a call's data labels: its app's, its tool's and its
	// policy's.
	Labels []string `json:"labels,omitempty"`
	// Approval is the approval a call needed or used, or that an approval
	// step is about.
	Approval *Approval `json:"approval,omitempty"`
	Detail   string    `json:"detail,omitempty"` // short reason words, never token material

	Checkpoint *Checkpoint `json:"checkpoint,omitempty"` // KindCheckpoint only
}

// Approval is a call held for a person's yes.
type Approval struct {
	ID string `json:"id"`
	// Status: for a call, "required" (held, the client pointed to the
	// approval page), "denied" or "used"; for a step, the step.
	Status    string    `json:"status"`
	Approvers string    `json:"approvers,omitempty"` // "self" or a group
	By        string    `json:"by,omitempty"`        // who answered or looked
	Deadline  time.Time `json:"deadline,omitzero"`
}

// Pin is a definition's standing under tool pinning.
type Pin struct {
	Kind   string `json:"kind"`             // tool, prompt, resourceTemplate
	Name   string `json:"name"`             // the upstream's name
	Status string `json:"status"`           // approved, changed, held, unclean, revoked
	Hash   string `json:"sha256,omitempty"` // of the definition seen
	Pinned string `json:"pinned,omitempty"` // the pinned hash it differs from
	Reason string `json:"reason,omitempty"`
	By     string `json:"by,omitempty"` // who approved or revoked
}

// Decision is what the broker decided and why.
type Decision struct {
	Allowed         bool   `json:"allowed"`
	Reason          string `json:"reason,omitempty"`
	ExternalMessage string `json:"externalMessage,omitempty"`
	Policy          string `json:"policy,omitempty"`
	PolicyVersion   string `json:"policyVersion,omitempty"`
	PolicyHash      string `json:"policyHash,omitempty"`
}

// Outbound describes the token the broker sent upstream, never the token.
type Outbound struct {
	JTI      string    `json:"jti,omitempty"`
	Audience []string  `json:"aud,omitempty"`
	Scope    []string  `json:"scope,omitempty"`
	Expiry   time.Time `json:"exp,omitzero"`
}

// Result is what the client received.
type Result struct {
	HTTPStatus int    `json:"httpStatus,omitempty"`
	RPCCode    int64  `json:"rpcCode,omitempty"`
	IsError    bool   `json:"isError,omitempty"`
	Bytes      int    `json:"bytes,omitempty"`
	Digest     string `json:"digest,omitempty"` // "sha256:<hex>" of the response body sent
}

// Checkpoint is the body of a KindCheckpoint record: a signature over the
// chain up to the line before it.
type Checkpoint struct {
	Seq       uint64           `json:"seq"`  // the seq of the checkpoint record itself
	Prev      string           `json:"prev"` // the hash of the line before it, as the record's own prev
	KeyID     string           `json:"kid,omitempty"`
	Algorithm string           `json:"alg,omitempty"`
	Key       *jose.JSONWebKey `json:"jwk,omitempty"` // the signer's public key
	Signature string           `json:"sig,omitempty"` // JWS compact over the canonical JSON of {seq, prev, time}; "" when unsigned
}

// Sink receives records. Trail is the durable one.
type Sink interface {
	Write(ctx context.Context, r *Record) error
	Close() error
}

// Signer signs checkpoints; exchange.Signer satisfies it.
type Signer interface {
	KeyID() string
	Algorithm() jose.SignatureAlgorithm
	Sign(typ string, payload []byte) (string, error)
	Public() jose.JSONWebKey
}
