package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The decisions page: the latest records of the audit trail, filtered by
// subject, app, tool and decision; with JavaScript, new ones appear as
// they are written (a server-sent event stream of the same filter).

// maxDecisionRows bounds the rows a page shows.
const maxDecisionRows = 200

// decisionFilter is the filter of the page's query.
type decisionFilter struct {
	Subject, App, Tool, Decision string
}

func filterOf(q url.Values) decisionFilter {
	cut := func(s string) string {
		s = strings.TrimSpace(s)
		if len(s) > 200 {
			s = s[:200]
		}
		return s
	}
	return decisionFilter{Subject: cut(q.Get("subject")), App: cut(q.Get("app")), Tool: cut(q.Get("tool")), Decision: cut(q.Get("decision"))}
}

func (f decisionFilter) match(r DecisionRow) bool {
	return (f.Subject == "" || r.Subject == f.Subject) && (f.App == "" || r.App == f.App) &&
		(f.Tool == "" || r.Tool == f.Tool) && (f.Decision == "" || r.Decision == f.Decision)
}

type decisionsPage struct {
	Filter decisionFilter
	Rows   []DecisionRow
	// Stream is the URL of the live stream of the same filter.
	Stream string
}

func (c *Console) serveDecisions(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r.URL.Query())
	rows := c.opts.Backend.Decisions(r.Context(), f.match, maxDecisionRows)
	c.render(w, r, sessionOf(r), http.StatusOK, "decisions.html", "Decisions",
		decisionsPage{Filter: f, Rows: rows, Stream: c.opts.Path + "/decisions/stream?" + r.URL.RawQuery})
}

type decisionPage struct {
	Row    DecisionRow
	Record string
	// TraceLink is where the record's trace is read; "" for none.
	TraceLink string
}

func (c *Console) serveDecision(w http.ResponseWriter, r *http.Request) {
	row, record, ok := c.opts.Backend.Decision(r.Context(), r.PathValue("id"))
	if !ok {
		c.error(w, r, sessionOf(r), http.StatusNotFound, "Not kept", "That record is not among the latest the console keeps; find it with mcpbroker audit query.")
		return
	}
	page := decisionPage{Row: row, Record: record}
	if c.opts.TraceURL != "" && row.TraceID != "" {
		page.TraceLink = strings.ReplaceAll(c.opts.TraceURL, "{traceId}", url.PathEscape(row.TraceID))
	}
	c.render(w, r, sessionOf(r), http.StatusOK, "decision.html", "Record "+row.ID, page)
}

// keepAlive is how often an idle stream says it is still there.
const keepAlive = 15 * time.Second

// serveDecisionStream sends each new record that matches as an event,
// until the page goes or the sign-in ends.
func (c *Console) serveDecisionStream(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	f := filterOf(r.URL.Query())
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	rows, ok := c.opts.Backend.WatchDecisions(ctx)
	if !ok {
		http.Error(w, "too many pages are watching the decisions", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	ticker := time.NewTicker(keepAlive)
	defer ticker.Stop()
	end := time.Until(time.Unix(s.Expires, 0))
	expired := time.After(end)
	for {
		select {
		case <-ctx.Done():
			return
		case <-expired:
			return
		case <-ticker.C:
			if _, err := fmt.Fprint(w, ": still here\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case row := <-rows:
			if !f.match(row) {
				continue
			}
			data, _ := json.Marshal(row)
			if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}
