package console

import (
	"errors"
	"net/http"
	"strings"
)

func (c *Console) serveOverview(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, sessionOf(r), http.StatusOK, "overview.html", "Overview", c.opts.Backend.Overview(r.Context()))
}

func (c *Console) serveApp(w http.ResponseWriter, r *http.Request) {
	app, ok := c.opts.Backend.App(r.Context(), r.PathValue("app"))
	if !ok {
		c.error(w, r, sessionOf(r), http.StatusNotFound, "No such app", "There is no app of that name.")
		return
	}
	c.render(w, r, sessionOf(r), http.StatusOK, "app.html", "App "+app.Name, app)
}

// pinPage is a pin's page.
type pinPage struct {
	PinDetail
	DiffLines []string
	Operator  bool
	CSRF      string
}

func (c *Console) servePin(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	p, err := c.opts.Backend.Pin(r.Context(), r.PathValue("app"), r.PathValue("kind"), r.PathValue("name"))
	if c.failed(w, r, s, err) {
		return
	}
	var lines []string
	if p.Diff != "" {
		lines = strings.Split(strings.TrimSuffix(p.Diff, "\n"), "\n")
	}
	c.render(w, r, s, http.StatusOK, "pin.html", p.Kind+" "+p.Name, pinPage{PinDetail: p, DiffLines: lines, Operator: s.Role == RoleOperator, CSRF: s.CSRF})
}

func (c *Console) approvePin(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	app, kind, name := r.PathValue("app"), r.PathValue("kind"), r.PathValue("name")
	if c.failed(w, r, s, c.opts.Backend.ApprovePin(r.Context(), app, kind, name, r.PostForm.Get("sha256"), s.Person)) {
		return
	}
	http.Redirect(w, r, c.opts.Path+"/apps/"+app+"/pins/"+kind+"/"+name, http.StatusSeeOther)
}

func (c *Console) revokePin(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	app, kind, name := r.PathValue("app"), r.PathValue("kind"), r.PathValue("name")
	if c.failed(w, r, s, c.opts.Backend.RevokePin(r.Context(), app, kind, name, s.Person)) {
		return
	}
	http.Redirect(w, r, c.opts.Path+"/apps/"+app, http.StatusSeeOther)
}

// ErrNotFound is what a Backend answers for what does not exist.
var ErrNotFound = errors.New("console: not found")

// failed shows err, if any.
func (c *Console) failed(w http.ResponseWriter, r *http.Request, s *session, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrNotFound):
		c.error(w, r, s, http.StatusNotFound, "Not found", err.Error())
	default:
		c.error(w, r, s, http.StatusConflict, "Not done", err.Error())
	}
	return true
}
