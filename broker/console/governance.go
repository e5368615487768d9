package console

import (
	"net/http"
	"strings"
)

// maxApprovalRows bounds the approvals page.
const maxApprovalRows = 100

func (c *Console) serveApprovals(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	rows, err := c.opts.Backend.Approvals(r.Context(), maxApprovalRows)
	if err != nil {
		c.error(w, r, s, http.StatusServiceUnavailable, "Approvals unavailable", "The approvals cannot be read: "+err.Error())
		return
	}
	c.render(w, r, s, http.StatusOK, "approvals.html", "Approvals", rows)
}

type policiesPage struct {
	Policies []PolicyRow
	// App, Input and Output are the last evaluation's.
	App, Input, Output string
	CSRF               string
}

func (c *Console) servePolicies(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	c.render(w, r, s, http.StatusOK, "policies.html", "Policies", policiesPage{Policies: c.opts.Backend.Policies(r.Context()), CSRF: s.CSRF})
}

// maxEvalInput bounds an input pasted for evaluation.
const maxEvalInput = 32 << 10

// evalPolicy evaluates an app's policy for a pasted input: nothing is
// called, nothing changes, viewers may.
func (c *Console) evalPolicy(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	page := policiesPage{Policies: c.opts.Backend.Policies(r.Context()), CSRF: s.CSRF,
		App: r.PostForm.Get("app"), Input: r.PostForm.Get("input")}
	status := http.StatusOK
	if len(page.Input) > maxEvalInput {
		page.Output, status = "The input is over 32 KiB.", http.StatusRequestEntityTooLarge
	} else if out, err := c.opts.Backend.EvalPolicy(r.Context(), page.App, []byte(strings.TrimSpace(page.Input))); err != nil {
		page.Output, status = err.Error(), http.StatusBadRequest
	} else {
		page.Output = out
	}
	c.render(w, r, s, status, "policies.html", "Policies", page)
}
