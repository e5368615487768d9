package console

import (
	"context"
	"time"
)

// Backend is what the console shows and does, answered by the broker.
type Backend interface {
	// Overview is the state of the broker now.
	Overview(ctx context.Context) Overview
	// App is one app with its tools' pins; false when there is no such
	// app.
	App(ctx context.Context, name string) (AppView, bool)
	// Pin is one pinned definition with its pending change.
	Pin(ctx context.Context, app, kind, name string) (PinDetail, error)
	// ApprovePin approves the definition of hash; RevokePin forgets the
	// pin. by is the person; both are recorded by the broker.
	ApprovePin(ctx context.Context, app, kind, name, hash string, by Person) error
	RevokePin(ctx context.Context, app, kind, name string, by Person) error
	// Record records a console event: a sign-in, a refusal, a sign-out.
	Record(ctx context.Context, e Event) error
	Decisions
	// Approvals are the calls held for approval, newest first; the
	// error when they cannot be read.
	Approvals(ctx context.Context, limit int) ([]ApprovalRow, error)
	// Policies are the apps' inbound policies.
	Policies(ctx context.Context) []PolicyRow
	// EvalPolicy evaluates the app's policy for input (JSON), as
	// `mcpbroker policy eval` does: the result and the decision, as JSON.
	EvalPolicy(ctx context.Context, app string, input []byte) (string, error)
}

// ApprovalRow is one call held for approval.
type ApprovalRow struct {
	ID, Status, Subject, Client, App, Tool, Approvers, DecidedBy, Reason string
	Arguments, ArgumentsDigest                                           string
	Requested, Deadline                                                  time.Time
	// URL is the approval page, where approvers answer.
	URL string
}

// PolicyRow is one app's inbound policy.
type PolicyRow struct {
	App, Name, Hash string
	Version         uint64
	LastReload      time.Time
	LastError       string
}

// Overview is the broker at a glance.
type Overview struct {
	Version string
	Apps    []AppSummary
	// Calls, Denied and Errors since the broker started; Sessions open
	// now.
	Sessions, Calls, Denied, Errors float64
	// Series is the last hour, minute by minute, oldest first.
	Series []Point
}

// Point is one minute of the overview's charts.
type Point struct {
	At                              time.Time
	Calls, Denied, Errors, Sessions float64
}

// AppSummary is one app in lists.
type AppSummary struct {
	Name, Type string
	// Health: "up", "down" or "unknown" (not checked yet).
	Health string
	// Latency is the mean time of its calls since the start; "" before
	// the first.
	Latency string
	// Pins counts the app's pins by status; Changed those with a
	// definition waiting for approval.
	Pins    int
	Changed int
}

// AppView is an app's page.
type AppView struct {
	AppSummary
	// Config is the app's configuration with every secret replaced.
	Config string
	Pins   []PinRow
}

// PinRow is one pin in an app's list.
type PinRow struct {
	Kind, Name, Status, SHA256 string
	// Pending is the hash of a changed definition waiting; "" for none.
	Pending string
}

// PinDetail is one pin with its definitions and their difference.
type PinDetail struct {
	PinRow
	App                           string
	Definition, PendingDefinition string
	Diff                          string
	ApprovedBy                    string
}

// Person is who is signed in.
type Person struct {
	Subject, Name string
	Groups        []string
	Role          string // RoleOperator or RoleViewer
}

// Roles.
const (
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// Event is something the console did or refused, for the audit trail.
type Event struct {
	Name    string // console.signin, console.refused, console.signout, ...
	Subject string
	Source  string
	Detail  string
}

// Decisions is the part of Backend behind the decisions page.
type Decisions interface {
	// Decisions are the latest records that match, newest first.
	Decisions(ctx context.Context, match func(DecisionRow) bool, limit int) []DecisionRow
	// Decision is one record: its row and every field as JSON.
	Decision(ctx context.Context, id string) (DecisionRow, string, bool)
	// WatchDecisions tells of every new record until ctx ends; false when
	// no more pages may watch.
	WatchDecisions(ctx context.Context) (<-chan DecisionRow, bool)
}

// DecisionRow is one record of the audit trail on the decisions page.
type DecisionRow struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Event    string    `json:"event"`
	Decision string    `json:"decision"`
	Subject  string    `json:"subject,omitempty"`
	Client   string    `json:"client,omitempty"`
	App      string    `json:"app,omitempty"`
	Tool     string    `json:"tool,omitempty"`
	TraceID  string    `json:"traceId,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}
