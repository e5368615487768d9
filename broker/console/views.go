package console

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// overviewPage is the overview with its charts.
type overviewPage struct {
	Overview
	Charts []chart
}

func (c *Console) serveOverview(w http.ResponseWriter, r *http.Request) {
	o := c.opts.Backend.Overview(r.Context())
	c.render(w, r, sessionOf(r), http.StatusOK, "overview.html", "Overview", overviewPage{Overview: o, Charts: charts(o.Series)})
}

// chart is one bar chart of the last hour, drawn as SVG on the server.
type chart struct {
	ID, Title string
	Max       float64
	Bars      []bar
}

type bar struct {
	X, Y, W, H float64
	Label      string
}

// Chart geometry: one bar a minute across the width.
const (
	chartWidth  = 360.0
	chartHeight = 80.0
)

func charts(series []Point) []chart {
	if len(series) == 0 {
		return nil
	}
	pick := []struct {
		id, title string
		value     func(Point) float64
	}{
		{"calls", "Calls per minute", func(p Point) float64 { return p.Calls }},
		{"denied", "Denied per minute", func(p Point) float64 { return p.Denied }},
		{"errors", "Errors per minute", func(p Point) float64 { return p.Errors }},
		{"sessions", "Sessions open", func(p Point) float64 { return p.Sessions }},
	}
	var out []chart
	w := chartWidth / 60
	for _, k := range pick {
		ch := chart{ID: k.id, Title: k.title}
		for _, p := range series {
			ch.Max = max(ch.Max, k.value(p))
		}
		offset := 60 - len(series)
		for i, p := range series {
			v := k.value(p)
			h := 0.0
			if ch.Max > 0 {
				h = v / ch.Max * (chartHeight - 4)
			}
			ch.Bars = append(ch.Bars, bar{X: float64(offset+i) * w, Y: chartHeight - h, W: w - 1, H: h,
				Label: p.At.UTC().Format("15:04") + ": " + strconv.FormatFloat(v, 'f', -1, 64)})
		}
		out = append(out, ch)
	}
	return out
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
	// Sides is the diff side by side: the pinned definition's lines
	// against the changed one's.
	Sides    []sideBySide
	Operator bool
	CSRF     string
}

// sideBySide is one row of the side-by-side diff; Old or New empty where
// the line is only on the other side.
type sideBySide struct {
	Old, New         string
	OldMark, NewMark string // "removed", "added" or ""
	HasOld, HasNew   bool
}

// sides lays a diff ("- ", "+ ", "  " lines) out side by side: lines both
// have face each other; a run of removed lines faces the run of added
// lines that follows it.
func sides(lines []string) []sideBySide {
	var rows []sideBySide
	var removed, added []string
	flush := func() {
		for i := 0; i < max(len(removed), len(added)); i++ {
			var row sideBySide
			if i < len(removed) {
				row.Old, row.OldMark, row.HasOld = removed[i], "removed", true
			}
			if i < len(added) {
				row.New, row.NewMark, row.HasNew = added[i], "added", true
			}
			rows = append(rows, row)
		}
		removed, added = nil, nil
	}
	for _, line := range lines {
		mark, text := line, ""
		if len(line) >= 2 {
			mark, text = line[:2], line[2:]
		}
		switch mark {
		case "- ":
			if len(added) > 0 {
				flush()
			}
			removed = append(removed, text)
		case "+ ":
			added = append(added, text)
		default:
			flush()
			rows = append(rows, sideBySide{Old: text, New: text, HasOld: true, HasNew: true})
		}
	}
	flush()
	return rows
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
	c.render(w, r, s, http.StatusOK, "pin.html", p.Kind+" "+p.Name, pinPage{PinDetail: p, DiffLines: lines, Sides: sides(lines), Operator: s.Role == RoleOperator, CSRF: s.CSRF})
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
