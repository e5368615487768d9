package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A call held for approval: the broker asks for it (RequestApproval), a
// person answers on the approval page (approval_pages.go), and the
// client's retry of the same call takes the approval, once (UseApproval).
// An approval is bound to the session, the user, the app, the tool and
// the digest of the canonical arguments: any other call finds none.

// Approval statuses.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalDenied   = "denied"
	ApprovalUsed     = "used"
	ApprovalExpired  = "expired"
	// ApprovalNone: no approval for the binding.
	ApprovalNone = "none"
)

// Events of approvals.
const (
	EventApprovalRequested = "approval.requested"
	EventApprovalShown     = "approval.shown"
	EventApprovalApproved  = "approval.approved"
	EventApprovalDenied    = "approval.denied"
	EventApprovalRefused   = "approval.refused" // someone who may not approve tried
	EventApprovalUsed      = "approval.used"
	EventApprovalExpired   = "approval.expired"
)

// ApproversSelf names the user the call is made for as its approver.
const ApproversSelf = "self"

var (
	bucketApprovals = []byte("authserver_approvals") // id → Approval
	// bucketApprovalBindings: binding → its latest approval's id and
	// expiry, in JSON.
	bucketApprovalBindings = []byte("authserver_approval_bindings")
	// bucketApprovalPending: the set "pending:" + subject of the ids of
	// the approvals the subject has waiting; each request forgets those
	// that are not any more.
	bucketApprovalPending = []byte("authserver_approval_pending")
)

// Endpoint of the approval pages: pathApprovals + id.
const pathApprovals = "/approvals/"

// bindingRecord is what a binding leads to.
type bindingRecord struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// MaxApprovalArguments bounds the arguments of a call that can be
// approved: the approver must see all of them.
const MaxApprovalArguments = 64 << 10

// approvalKept is how long an approval's record outlives its deadline, so
// that a late retry or a late approver is told it expired.
const approvalKept = time.Hour

// ErrTooManyApprovals: the user has as many approvals waiting as allowed.
var ErrTooManyApprovals = errors.New("authserver: too many approvals waiting for this user")

// ErrArgumentsTooLarge: the call's arguments are too large to show.
var ErrArgumentsTooLarge = fmt.Errorf("authserver: arguments over %d bytes cannot be shown for approval", MaxApprovalArguments)

// ApprovalRequest is a call that needs a person's yes.
type ApprovalRequest struct {
	// Session is a digest of the session the call was made in; Subject
	// the user it is made for; Client the agent.
	Session, Subject, Client string
	// App and Tool name what is called (Tool as the client names it).
	App, Tool string
	// Arguments are shown to the approver, redacted as the audit trail
	// records them; ArgumentsDigest binds the approval to the exact
	// arguments (audit.Digest of the canonical JSON).
	Arguments       json.RawMessage
	ArgumentsDigest string
	// Reason says why the call needs approval; Approvers is ApproversSelf
	// or a group.
	Reason, Approvers string
	// TTL is how long the request waits for an answer, and how long an
	// approval stays good for its one call.
	TTL time.Duration
	// MaxPending bounds the approvals the subject may have waiting.
	MaxPending int
}

// Binding is the digest an approval is bound by.
func (r *ApprovalRequest) Binding() string {
	h := sha256.New()
	for _, part := range []string{r.Session, r.Subject, r.App, r.Tool, r.ArgumentsDigest} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Approval is a held call and its answer.
type Approval struct {
	ID              string          `json:"id"`
	Binding         string          `json:"binding"`
	Session         string          `json:"session"`
	Subject         string          `json:"subject"`
	Client          string          `json:"client,omitempty"`
	App             string          `json:"app"`
	Tool            string          `json:"tool"`
	Arguments       json.RawMessage `json:"arguments,omitempty"`
	ArgumentsDigest string          `json:"arguments_digest,omitempty"`
	Reason          string          `json:"reason,omitempty"`
	Approvers       string          `json:"approvers"`
	TTL             time.Duration   `json:"ttl"`
	Status          string          `json:"status"`
	Requested       time.Time       `json:"requested"`
	// Deadline: a pending approval waits until then for its answer; an
	// approved one is good until then.
	Deadline  time.Time `json:"deadline"`
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// Expires is when the record is swept.
	Expires time.Time `json:"expires"`
}

// URL is where the approver answers a.
func (s *Server) ApprovalURL(a *Approval) string { return s.endpoint(pathApprovals + a.ID) }

// mayApprove reports whether who may answer a: the user for "self", a
// member of the group, never the user, otherwise.
func (a *Approval) mayApprove(who *identity) bool {
	if a.Approvers == ApproversSelf {
		return who.Subject == a.Subject
	}
	return who.Subject != a.Subject && slices.Contains(who.Groups, a.Approvers)
}

// current is a's status at now: past its deadline, a pending approval
// has waited in vain, an approved one is no longer good, and a denial no
// longer stands in the way of asking again.
func (a *Approval) current(now time.Time) string {
	if (a.Status == ApprovalPending || a.Status == ApprovalApproved || a.Status == ApprovalDenied) && !now.Before(a.Deadline) {
		return ApprovalExpired
	}
	return a.Status
}

func (a *Approval) event(name string) Event {
	return Event{Name: name, Subject: a.Subject, Client: a.Client, Approval: &EventApproval{
		ID: a.ID, Session: a.Session, App: a.App, Tool: a.Tool, ArgumentsDigest: a.ArgumentsDigest,
		Approvers: a.Approvers, DecidedBy: a.DecidedBy, Deadline: a.Deadline,
	}}
}

// RequestApproval holds the call r describes for approval, and returns
// the approval to point the client to: the one already waiting for the
// same call, or a new one.
func (s *Server) RequestApproval(ctx context.Context, r ApprovalRequest) (*Approval, error) {
	if len(r.Arguments) > MaxApprovalArguments {
		return nil, ErrArgumentsTooLarge
	}
	now := s.now()
	binding := r.Binding()
	var found *Approval
	a := &Approval{
		ID: randomID(), Binding: binding, Session: r.Session, Subject: r.Subject, Client: r.Client,
		App: r.App, Tool: r.Tool, Arguments: r.Arguments, ArgumentsDigest: r.ArgumentsDigest,
		Reason: r.Reason, Approvers: r.Approvers, TTL: r.TTL, Status: ApprovalPending,
		Requested: now, Deadline: now.Add(r.TTL), Expires: now.Add(r.TTL + approvalKept),
	}
	err := s.store.kv.update(func(tx kvTx) error {
		found = nil
		if existing, err := s.store.approvalOf(tx, binding); err != nil {
			return err
		} else if existing != nil && existing.current(now) == ApprovalPending {
			found = existing
			return nil
		}
		pending, err := s.store.pendingApprovals(tx, r.Subject, now)
		if err != nil {
			return err
		}
		if pending >= r.MaxPending {
			return ErrTooManyApprovals
		}
		if err := s.store.putApproval(tx, a); err != nil {
			return err
		}
		if err := s.store.putBinding(tx, a); err != nil {
			return err
		}
		return tx.addMember(bucketApprovalPending, "pending:"+r.Subject, a.ID, a.Expires)
	})
	if err != nil {
		return nil, err
	}
	if found != nil {
		return found, nil
	}
	if err := s.event(ctx, nil, a.event(EventApprovalRequested)); err != nil {
		return nil, err
	}
	return a, nil
}

// UseApproval takes the approval of the call r describes, if there is one
// that is approved and still good: it is used up. It returns the approval
// the binding leads to, if any, and its status before: ApprovalApproved
// means the call may go ahead; the others that it may not.
func (s *Server) UseApproval(ctx context.Context, r ApprovalRequest) (*Approval, string, error) {
	now := s.now()
	binding := r.Binding()
	var found *Approval
	var status string
	err := s.store.kv.update(func(tx kvTx) error {
		var err error
		if found, err = s.store.approvalOf(tx, binding); err != nil || found == nil {
			status = ApprovalNone
			return err
		}
		status = found.current(now)
		switch status {
		case ApprovalApproved:
			found.Status = ApprovalUsed
			return s.store.putApproval(tx, found)
		case ApprovalExpired:
			if found.Status == ApprovalExpired {
				status = ApprovalNone // told once
				return nil
			}
			found.Status = ApprovalExpired
			return s.store.putApproval(tx, found)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	switch status {
	case ApprovalApproved:
		err = s.event(ctx, nil, found.event(EventApprovalUsed))
	case ApprovalExpired:
		err = s.event(ctx, nil, found.event(EventApprovalExpired))
	}
	return found, status, err
}

// approvalOf is the latest approval of binding; nil when none.
func (st *store) approvalOf(tx kvTx, binding string) (*Approval, error) {
	raw, err := tx.get(bucketApprovalBindings, binding)
	if err != nil || raw == nil {
		return nil, err
	}
	var b bindingRecord
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("authserver: approval binding: %w", err)
	}
	return st.approval(tx, b.ID)
}

func (st *store) putBinding(tx kvTx, a *Approval) error {
	raw, err := json.Marshal(bindingRecord{ID: a.ID, Expires: a.Expires})
	if err != nil {
		return err
	}
	return tx.put(bucketApprovalBindings, a.Binding, raw, a.Expires)
}

// approval is the approval with id; nil when none.
func (st *store) approval(tx kvTx, id string) (*Approval, error) {
	raw, err := tx.get(bucketApprovals, id)
	if err != nil || raw == nil {
		return nil, err
	}
	var a Approval
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("authserver: approval %s: %w", id, err)
	}
	return &a, nil
}

func (st *store) putApproval(tx kvTx, a *Approval) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return tx.put(bucketApprovals, a.ID, raw, a.Expires)
}

// pendingApprovals counts the approvals subject has waiting at now, and
// forgets those that are not any more.
func (st *store) pendingApprovals(tx kvTx, subject string, now time.Time) (int, error) {
	set := "pending:" + subject
	ids, err := tx.members(bucketApprovalPending, set)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		a, err := st.approval(tx, id)
		if err != nil {
			return 0, err
		}
		if a != nil && a.current(now) == ApprovalPending {
			n++
			continue
		}
		if err := tx.removeMember(bucketApprovalPending, set, id); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// decideApproval records who's answer to the approval id: approve or not.
// It returns the approval as it stands after, and whether the answer was
// taken; an approval that is not pending any more keeps its answer.
func (s *Server) decideApproval(id string, who *identity, approve bool) (*Approval, bool, error) {
	now := s.now()
	var a *Approval
	taken := false
	err := s.store.kv.update(func(tx kvTx) error {
		var err error
		taken = false
		if a, err = s.store.approval(tx, id); err != nil || a == nil {
			return err
		}
		if a.current(now) != ApprovalPending || !a.mayApprove(who) {
			return nil
		}
		a.Status, a.DecidedBy, a.DecidedAt = ApprovalDenied, who.Subject, now
		if approve {
			a.Status = ApprovalApproved
		}
		// The answer starts the approval's time to be used.
		a.Deadline = now.Add(a.TTL)
		a.Expires = a.Deadline.Add(approvalKept)
		taken = true
		if err := s.store.putApproval(tx, a); err != nil {
			return err
		}
		if err := s.store.putBinding(tx, a); err != nil {
			return err
		}
		return tx.removeMember(bucketApprovalPending, "pending:"+a.Subject, a.ID)
	})
	return a, taken, err
}

// loadApproval reads the approval id; nil when none.
func (s *Server) loadApproval(id string) (*Approval, error) {
	var a *Approval
	err := s.store.kv.view(func(tx kvTx) error {
		var err error
		a, err = s.store.approval(tx, id)
		return err
	})
	return a, err
}

// Approvals are the approvals the store holds, newest first, at most
// limit, each with its status now.
func (s *Server) Approvals(limit int) ([]Approval, error) {
	var all []Approval
	err := s.store.kv.view(func(tx kvTx) error {
		return tx.forEach(bucketApprovals, func(_ string, raw []byte) error {
			var a Approval
			if json.Unmarshal(raw, &a) == nil {
				all = append(all, a)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	slices.SortFunc(all, func(a, b Approval) int { return b.Requested.Compare(a.Requested) })
	if len(all) > limit {
		all = all[:limit]
	}
	for i := range all {
		all[i].Status = all[i].current(now)
	}
	return all, nil
}
