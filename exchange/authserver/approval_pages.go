package authserver

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// The approval page: an approver opens the URL the agent was given, signs
// in with a password, sees the call (app, tool, arguments as the audit
// trail records them) and approves or denies it. The page has the login
// page's protections: a sealed cookie for the steps, bound to the
// approval; a CSRF token good for one post; no framing, no caching, no
// scripts; the broker's Host checks in front.

const (
	approvalCookie = "mcpbroker_approval"

	stageApprovalLogin  = "approval-login"
	stageApprovalDecide = "approval-decide"
)

// maxApprovalIDBytes bounds the id in the path: randomID's are shorter.
const maxApprovalIDBytes = 64

func (s *Server) approvalsPath() string { return s.basePath + pathApprovals }

// approvalFor reads the approval the path names, or answers with an error
// page.
func (s *Server) approvalFor(w http.ResponseWriter, r *http.Request) (*Approval, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxApprovalIDBytes || strings.ContainsFunc(id, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}) {
		s.renderError(w, http.StatusNotFound, "Unknown approval", "There is no such approval.")
		return nil, false
	}
	a, err := s.loadApproval(id)
	switch {
	case err != nil:
		s.logger.Error("authserver: load approval", slog.Any("error", err))
		s.renderError(w, http.StatusServiceUnavailable, "Approvals unavailable", "Approvals cannot be read right now; try again later.")
		return nil, false
	case a == nil:
		s.renderError(w, http.StatusNotFound, "Unknown approval", "There is no such approval, or it expired long ago.")
		return nil, false
	}
	return a, true
}

// answered shows why an approval cannot be answered any more; false when
// it can.
func (s *Server) answered(w http.ResponseWriter, a *Approval) bool {
	switch a.current(s.now()) {
	case ApprovalPending:
		return false
	case ApprovalApproved, ApprovalUsed:
		s.renderPage(w, http.StatusConflict, "approval-done", errorPage{Title: "Already approved", Message: "This call was approved already."})
	case ApprovalDenied:
		s.renderPage(w, http.StatusConflict, "approval-done", errorPage{Title: "Already denied", Message: "This call was denied already."})
	default:
		s.renderPage(w, http.StatusGone, "approval-done", errorPage{Title: "Approval expired", Message: "This request waited too long; the agent must ask again."})
	}
	return true
}

// serveApproval opens an approval: to an approver signed in for it (after
// the identity provider), the call and the answer's form; otherwise the
// sign-in form, or the identity provider's sign-in.
func (s *Server) serveApproval(w http.ResponseWriter, r *http.Request) {
	a, ok := s.approvalFor(w, r)
	if !ok || s.answered(w, a) {
		return
	}
	if cookie, err := r.Cookie(approvalCookie); err == nil {
		if state, err := s.flows.open(cookie.Value, s.now()); err == nil && state.Stage == stageApprovalDecide && state.Query == a.ID && state.Identity != nil {
			s.showApproval(w, r, a, state.Identity)
			return
		}
	}
	if s.federation != nil {
		s.startFederatedApproval(w, r, a)
		return
	}
	state := &flow{Query: a.ID, Stage: stageApprovalLogin}
	if err := s.setSealedCookie(w, approvalCookie, s.approvalsPath(), state); err != nil {
		s.serverError(w, err)
		return
	}
	s.renderPage(w, http.StatusOK, "approval-login", loginPage{Title: "Sign in to answer", Action: s.approvalsPath() + a.ID, CSRF: state.CSRF})
}

// approvalFlowPrefix marks, in a federated sign-in's flow, the approval it
// is for (an authorization's flow holds its query instead).
const approvalFlowPrefix = "approval:"

// startFederatedApproval sends the approver to the identity provider, to
// come back to the approval.
func (s *Server) startFederatedApproval(w http.ResponseWriter, r *http.Request, a *Approval) {
	idp, err := s.federation.metadata(r.Context())
	if err != nil {
		s.logger.Error("authserver: the identity provider is unreachable", slog.Any("error", err))
		s.renderError(w, http.StatusServiceUnavailable, "Sign-in unavailable", "The identity provider cannot be reached; try again later.")
		return
	}
	if err := s.sendToIdentityProvider(w, idp, approvalFlowPrefix+a.ID); err != nil {
		s.serverError(w, err)
	}
}

// approvalCallback takes the identity provider's answer for an approver
// (serveCallback checked its state), and sends the approver back to the
// approval, signed in for it.
func (s *Server) approvalCallback(w http.ResponseWriter, r *http.Request, id string, state *flow) {
	a, err := s.loadApproval(id)
	switch {
	case err != nil:
		s.logger.Error("authserver: load approval", slog.Any("error", err))
		s.renderError(w, http.StatusServiceUnavailable, "Approvals unavailable", "Approvals cannot be read right now; try again later.")
		return
	case a == nil:
		s.renderError(w, http.StatusNotFound, "Unknown approval", "There is no such approval, or it expired long ago.")
		return
	}
	if r.URL.Query().Get("error") != "" {
		s.renderError(w, http.StatusForbidden, "Not signed in", "The identity provider did not sign you in.")
		return
	}
	who, err := s.federation.signIn(r.Context(), r.URL.Query().Get("code"), state.Verifier, state.Nonce)
	if err != nil {
		s.logger.Warn("authserver: federated sign-in of an approver failed", slog.Any("error", err))
		_ = s.event(r.Context(), r, Event{Name: EventSignInFailed, Detail: "the identity provider's answer could not be verified (approval page)"})
		s.renderError(w, http.StatusForbidden, "Not signed in", "The sign-in at the identity provider could not be verified.")
		return
	}
	if err := s.event(r.Context(), r, Event{Name: EventSignIn, Subject: who.Subject, Detail: "identity provider, approval page"}); err != nil {
		s.renderError(w, http.StatusServiceUnavailable, "Sign-in not recorded", "The sign-in could not be recorded; try again later.")
		return
	}
	if s.answered(w, a) {
		return
	}
	if !a.mayApprove(who) {
		s.refuseApprover(w, r, a, who)
		return
	}
	signedIn := &flow{Query: a.ID, Stage: stageApprovalDecide, Identity: who}
	if err := s.setSealedCookie(w, approvalCookie, s.approvalsPath(), signedIn); err != nil {
		s.serverError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", s.approvalsPath()+a.ID)
	w.WriteHeader(http.StatusSeeOther)
}

// serveApprovalForm takes the sign-in, then the answer.
func (s *Server) serveApprovalForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Invalid form", "The form could not be read.")
		return
	}
	a, ok := s.approvalFor(w, r)
	if !ok {
		return
	}
	state, err := s.postedFlowOf(r, approvalCookie)
	if err != nil {
		s.refuseForm(w, err, "Open the approval link again.", "Open the approval link again.")
		return
	}
	if state.Query != a.ID {
		// A form of another approval's page, posted here.
		s.renderError(w, http.StatusForbidden, "Form not accepted", "The form belongs to another approval. Open the approval link again.")
		return
	}
	if s.answered(w, a) {
		return
	}
	switch state.Stage {
	case stageApprovalLogin:
		s.approvalLogin(w, r, a, state)
	case stageApprovalDecide:
		s.approvalDecide(w, r, a, state)
	default:
		s.renderError(w, http.StatusBadRequest, "Sign-in expired", "Open the approval link again.")
	}
}

func (s *Server) approvalLogin(w http.ResponseWriter, r *http.Request, a *Approval, state *flow) {
	username := r.PostForm.Get("username")
	who, status, message := s.checkPassword(r, username, r.PostForm.Get("password"), "")
	if who == nil && status == http.StatusServiceUnavailable {
		s.renderError(w, status, message, "Sign-in is not available right now; try again later.")
		return
	}
	if who == nil {
		if err := s.setSealedCookie(w, approvalCookie, s.approvalsPath(), state); err != nil {
			s.serverError(w, err)
			return
		}
		s.renderPage(w, status, "approval-login", loginPage{Title: "Sign in to answer", Message: message, Action: s.approvalsPath() + a.ID, CSRF: state.CSRF, Username: username})
		return
	}
	if !a.mayApprove(who) {
		s.refuseApprover(w, r, a, who)
		return
	}
	s.showApproval(w, r, a, who)
}

// showApproval shows the call to an approver signed in for it, with a
// fresh form token for the answer.
func (s *Server) showApproval(w http.ResponseWriter, r *http.Request, a *Approval, who *identity) {
	state := &flow{Query: a.ID, Stage: stageApprovalDecide, Identity: who}
	if err := s.setSealedCookie(w, approvalCookie, s.approvalsPath(), state); err != nil {
		s.serverError(w, err)
		return
	}
	e := a.event(EventApprovalShown)
	e.Approval.DecidedBy = who.Subject
	if err := s.event(r.Context(), r, e); err != nil {
		s.renderError(w, http.StatusServiceUnavailable, "Approvals unavailable", "The approval could not be recorded; try again later.")
		return
	}
	s.renderPage(w, http.StatusOK, "approval", approvalPage{
		Title: "Approve this call?", Approver: who.displayName(), Reason: a.Reason, Subject: a.Subject, Client: a.Client,
		App: a.App, Tool: a.Tool, Approvers: approversText(a.Approvers), Deadline: a.Deadline.UTC().Format(time.RFC1123),
		TTL: a.TTL.String(), Arguments: indented(a.Arguments), ArgumentsDigest: a.ArgumentsDigest,
		Action: s.approvalsPath() + a.ID, CSRF: state.CSRF,
	})
}

func (s *Server) approvalDecide(w http.ResponseWriter, r *http.Request, a *Approval, state *flow) {
	who := state.Identity
	var approve bool
	switch r.PostForm.Get("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		s.renderError(w, http.StatusBadRequest, "Invalid form", "Choose Approve or Deny.")
		return
	}
	if who == nil || !a.mayApprove(who) {
		s.refuseApprover(w, r, a, who)
		return
	}
	decided, taken, err := s.decideApproval(a.ID, who, approve)
	if err != nil {
		s.logger.Error("authserver: record an approval's answer", slog.Any("error", err))
		s.renderError(w, http.StatusServiceUnavailable, "Approvals unavailable", "The answer could not be recorded; try again later.")
		return
	}
	s.clearCookie(w, approvalCookie, s.approvalsPath())
	if !taken {
		s.answered(w, decided)
		return
	}
	name, title, message := EventApprovalDenied, "Denied", "The call was denied. The agent is told so when it tries again."
	if approve {
		name, title, message = EventApprovalApproved, "Approved", "The agent may now make this call once, within "+decided.TTL.String()+"."
	}
	if err := s.event(r.Context(), r, decided.event(name)); err != nil {
		s.logger.Error("authserver: the answer to an approval was recorded but not audited", slog.Any("error", err))
	}
	s.renderPage(w, http.StatusOK, "approval-done", errorPage{Title: title, Message: message})
}

// refuseApprover tells someone who may not answer an approval so, and
// audits it.
func (s *Server) refuseApprover(w http.ResponseWriter, r *http.Request, a *Approval, who *identity) {
	s.clearCookie(w, approvalCookie, s.approvalsPath())
	e := a.event(EventApprovalRefused)
	if who != nil {
		e.Approval.DecidedBy = who.Subject
	}
	e.Status = http.StatusForbidden
	e.Detail = "not an approver of this call"
	if a.Approvers != ApproversSelf && who != nil && who.Subject == a.Subject {
		e.Detail = "the user the call is made for cannot approve it: it needs a member of " + a.Approvers
	}
	_ = s.event(r.Context(), r, e)
	message := "You are not one of this call's approvers."
	if a.Approvers != ApproversSelf && who != nil && who.Subject == a.Subject {
		message = "This call needs someone else's approval: a member of " + a.Approvers + ", not you."
	}
	s.renderError(w, http.StatusForbidden, "Not an approver", message)
}

func approversText(approvers string) string {
	if approvers == ApproversSelf {
		return "the user the call is made for"
	}
	return "members of " + approvers + ", not the user the call is made for"
}

// indented is the arguments as the page shows them: indented, with the
// characters JSON escapes for HTML written as they are (the template
// escapes them for the page).
func indented(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "(none)"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return string(raw)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
