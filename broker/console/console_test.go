package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeBackend answers with fixed data, some of it hostile.
type fakeBackend struct{ overview Overview }

func (f fakeBackend) Overview(context.Context) Overview { return f.overview }
func (f fakeBackend) App(_ context.Context, name string) (AppView, bool) {
	return AppView{AppSummary: AppSummary{Name: name, Type: "mcpProxy", Health: "up"},
		Pins: []PinRow{{Kind: "tool", Name: `<script>alert(1)</script>`, Status: "held", SHA256: "ab"}}}, true
}
func (fakeBackend) Pin(context.Context, string, string, string) (PinDetail, error) {
	return PinDetail{}, ErrNotFound
}
func (fakeBackend) ApprovePin(context.Context, string, string, string, string, Person) error {
	return nil
}
func (fakeBackend) RevokePin(context.Context, string, string, string, Person) error      { return nil }
func (fakeBackend) Record(context.Context, Event) error                                  { return nil }
func (fakeBackend) Decisions(context.Context, func(DecisionRow) bool, int) []DecisionRow { return nil }
func (fakeBackend) Decision(_ context.Context, id string) (DecisionRow, string, bool) {
	if id != "r1" {
		return DecisionRow{}, "", false
	}
	return DecisionRow{ID: "r1", Decision: "denied", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}, `{"id":"r1","arguments":"<img src=x>"}`, true
}
func (fakeBackend) WatchDecisions(context.Context) (<-chan DecisionRow, bool) { return nil, false }
func (fakeBackend) Approvals(context.Context, int) ([]ApprovalRow, error)     { return nil, nil }
func (fakeBackend) Policies(context.Context) []PolicyRow                      { return nil }
func (fakeBackend) EvalPolicy(context.Context, string, []byte) (string, error) {
	return "", nil
}

type noSignIn struct{}

func (noSignIn) AuthorizeURL(context.Context, string, string, string) (string, error) {
	return "http://idp.example/authorize", nil
}
func (noSignIn) SignIn(context.Context, string, string, string) (string, string, []string, error) {
	return "", "", nil, nil
}

// signedInRequest is a GET of path by an operator.
func signedInRequest(c *Console, path string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9464"+path, nil)
	s := session{Person: Person{Subject: "ada", Name: "Ada", Role: RoleOperator}, CSRF: "t", Expires: time.Now().Add(time.Hour).Unix()}
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: c.seal(s)})
	return r
}

// The overview draws the last hour's charts on the server, one bar a
// minute scaled to the busiest; names from upstreams are escaped.
func TestOverviewChartsAndEscaping(t *testing.T) {
	now := time.Now()
	series := []Point{{At: now.Add(-2 * time.Minute), Calls: 10, Denied: 1}, {At: now.Add(-time.Minute), Calls: 40, Denied: 0, Sessions: 3}}
	c, err := New(Options{Path: "/console", URL: "http://127.0.0.1:9464/console", SignIn: noSignIn{}, Operators: []string{"ops"},
		SessionTTL: time.Hour, Backend: fakeBackend{overview: Overview{Calls: 50, Series: series}}})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	c.ServeHTTP(w, signedInRequest(c, "/console/"))
	page := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(page, `id="chart-calls"`) || !strings.Contains(page, `height="76.0"`) || !strings.Contains(page, `height="19.0"`) {
		t.Fatalf("the overview's charts: %d %s", w.Code, page)
	}
	w = httptest.NewRecorder()
	c.ServeHTTP(w, signedInRequest(c, "/console/apps/ledger"))
	if page := w.Body.String(); strings.Contains(page, "<script>alert") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("a hostile name is not escaped: %s", page)
	}
	// Without a sign-in: to the sign-in; a forged cookie is no sign-in.
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9464/console/", nil)
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "forged"})
	w = httptest.NewRecorder()
	c.ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/signin" {
		t.Errorf("a forged sign-in: %d %s", w.Code, w.Header().Get("Location"))
	}
}

// A diff side by side: common lines face each other, a removed run faces
// the added run after it.
func TestSides(t *testing.T) {
	rows := sides([]string{"  {", `-   "description": "old",`, `-   "title": "T",`, `+   "description": "new",`, "  }", `+ extra`})
	want := []sideBySide{
		{Old: "{", New: "{", HasOld: true, HasNew: true},
		{Old: `  "description": "old",`, OldMark: "removed", HasOld: true, New: `  "description": "new",`, NewMark: "added", HasNew: true},
		{Old: `  "title": "T",`, OldMark: "removed", HasOld: true},
		{Old: "}", New: "}", HasOld: true, HasNew: true},
		{New: "extra", NewMark: "added", HasNew: true},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, rows[i], want[i])
		}
	}
}

// A record links its trace where traceURL says, and shows every field
// escaped; a record not kept is 404.
func TestDecisionPage(t *testing.T) {
	c, err := New(Options{Path: "/console", URL: "http://127.0.0.1:9464/console", SignIn: noSignIn{}, Operators: []string{"ops"},
		SessionTTL: time.Hour, TraceURL: "https://tempo.example/trace/{traceId}", Backend: fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	c.ServeHTTP(w, signedInRequest(c, "/console/decisions/r1"))
	page := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(page, `href="https://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736"`) || strings.Contains(page, "<img src=x>") {
		t.Errorf("the record page: %d %s", w.Code, page)
	}
	w = httptest.NewRecorder()
	c.ServeHTTP(w, signedInRequest(c, "/console/decisions/gone"))
	if w.Code != http.StatusNotFound {
		t.Errorf("a record not kept: %d", w.Code)
	}
}

// The callback takes only the answer to its own sign-in: without the
// sign-in's cookie, or with another state, it is refused; a good answer
// of a person in no group is refused too.
func TestCallbackChecks(t *testing.T) {
	c, err := New(Options{Path: "/console", URL: "http://127.0.0.1:9464/console", SignIn: noSignIn{}, Operators: []string{"ops"},
		SessionTTL: time.Hour, Backend: fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9464/console/signin", nil))
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "http://idp.example/authorize") {
		t.Fatalf("sign-in: %d %s", w.Code, w.Header().Get("Location"))
	}
	cookie := w.Result().Cookies()[0]
	if cookie.Path != "/console/callback" || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode {
		t.Errorf("the sign-in's cookie: %+v", cookie)
	}
	callback := func(query string, withCookie bool) int {
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9464/console/callback?"+query, nil)
		if withCookie {
			r.AddCookie(cookie)
		}
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		return w.Code
	}
	if code := callback("state=x&code=y", false); code != http.StatusBadRequest {
		t.Errorf("a callback without the cookie: %d", code)
	}
	if code := callback("state=x&code=y", true); code != http.StatusForbidden {
		t.Errorf("a callback with another state: %d", code)
	}
	var st signInState
	c.open(cookie.Value, &st)
	// noSignIn names a person in no group.
	if code := callback("state="+st.State+"&code=y", true); code != http.StatusForbidden {
		t.Errorf("a person in no group: %d", code)
	}
}
