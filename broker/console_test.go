package broker_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// consoleSetup is a broker with the console, in front of the sample
// upstream whose descriptions the test changes.
type consoleSetup struct {
	pinning *pinningSetup
	url     string // the console
	trail   string
}

func startConsole(t *testing.T) *consoleSetup {
	t.Helper()
	s, dir, upstream := describedUpstream(t)
	addr, admin := freeAddress(t), freeAddress(t)
	s.admin = "http://" + admin
	policy, err := filepath.Abs("../policies/argument_rule.rego")
	if err != nil {
		t.Fatal(err)
	}
	s.url = startBrokerAt(t, addr, scenario(t, "console"), filepath.Join(dir, "broker.db"), "http://"+addr, demoPasswordHash,
		"http://"+upstream+"/mcp", admin, s.trail, policy) + "/mcp"
	waitListening(t, admin)
	return &consoleSetup{pinning: s, url: s.admin + "/console", trail: s.trail}
}

// changeGetBalance pins the upstream's tools (a session lists them), then
// the upstream changes get_balance's description: the tool is held.
func (c *consoleSetup) changeGetBalance(t *testing.T) {
	t.Helper()
	s := c.pinning
	if tools := listedTools(t, s.session(t)); !slices.Contains(tools, "ledger_get_balance") {
		t.Fatalf("tools: %v", tools)
	}
	s.describe(t, map[string]string{"get_balance": poisoned})
	if tools := listedTools(t, s.session(t)); slices.Contains(tools, "ledger_get_balance") {
		t.Fatalf("the changed tool is still served: %v", tools)
	}
}

// newConsoleUser is a browser at the console: it follows redirects.
func newConsoleUser(t *testing.T) *webUser {
	jar, _ := cookiejar.New(nil)
	return &webUser{t: t, client: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
}

// signIn opens the console, is sent to the Auth Provider's sign-in, signs
// in, and returns the page it comes back to.
func (u *webUser) signInConsole(console, username string) (*http.Response, string) {
	u.t.Helper()
	resp, page := u.get(console + "/")
	if !strings.Contains(page, `name="password"`) {
		u.t.Fatalf("the console did not send the browser to sign in: %d %s", resp.StatusCode, page)
	}
	action, _ := resp.Request.URL.Parse(tagAttributes(formTag.FindString(page))["action"])
	return u.post(action.String(), url.Values{"csrf": {csrf(u.t, page)}, "username": {username}, "password": {"demo-password"}})
}

// An operator signs in through the embedded Auth Provider, sees the apps,
// finds the tool whose definition changed, reads the diff and approves it;
// the tool is served again. A viewer sees but may not act; someone in
// neither group is refused; forms without the sign-in's token are
// refused; every page forbids framing and inline script; each step is in
// the trail with the person's identity.
func TestConsoleOverHTTP(t *testing.T) {
	c := startConsole(t)
	s := c.pinning
	c.changeGetBalance(t)

	admin := newConsoleUser(t)
	resp, page := admin.signInConsole(c.url, "admin")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Overview") || !strings.Contains(page, `href="/console/apps/ledger"`) || !strings.Contains(page, "1 waiting") {
		t.Fatalf("the overview after signing in: %d %s", resp.StatusCode, page)
	}
	h := resp.Header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("the console's headers: %v", h)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, " style=") || strings.Contains(page, "<style") {
		t.Errorf("a page has inline script or style")
	}
	_, app := admin.get(c.url + "/apps/ledger")
	if !strings.Contains(app, "changed, waiting") || !strings.Contains(app, "/console/apps/ledger/pins/tool/get_balance") {
		t.Fatalf("the app page: %s", app)
	}
	_, pin := admin.get(c.url + "/apps/ledger/pins/tool/get_balance")
	if !strings.Contains(pin, `<span class="added">`) || !strings.Contains(pin, "audit@example.net") || !strings.Contains(pin, `<span class="removed">`) {
		t.Fatalf("the pin page shows no diff: %s", pin)
	}
	approve := c.url + "/apps/ledger/pins/tool/get_balance/approve"
	pending := tagAttributes(regexpFind(pin, `<input type="hidden" name="sha256" value="[0-9a-f]+">`))["value"]
	// Without the sign-in's token, or from another origin: refused.
	if r, _ := admin.post(approve, url.Values{"sha256": {pending}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("an approval without the form token: %d", r.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, approve, strings.NewReader(url.Values{"csrf": {csrf(t, pin)}, "sha256": {pending}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if r, err := admin.client.Do(req); err != nil || r.StatusCode != http.StatusForbidden {
		t.Errorf("an approval from another origin: %v %v", r.StatusCode, err)
	}
	// Asked for under another name (DNS rebinding): refused.
	rebound, _ := http.NewRequest(http.MethodGet, c.url+"/", nil)
	rebound.Host = "evil.example"
	if r, err := admin.client.Do(rebound); err != nil || r.StatusCode != http.StatusForbidden {
		t.Errorf("the console under another Host: %v %v", r.StatusCode, err)
	}
	// A viewer sees, and may not approve.
	auditor := newConsoleUser(t)
	if r, page := auditor.signInConsole(c.url, "auditor"); r.StatusCode != http.StatusOK || !strings.Contains(page, "viewer") {
		t.Fatalf("the auditor's sign-in: %d %s", r.StatusCode, page)
	}
	_, seen := auditor.get(c.url + "/apps/ledger/pins/tool/get_balance")
	if strings.Contains(seen, `id="approve"`) {
		t.Errorf("a viewer is offered the approval")
	}
	if r, _ := auditor.post(approve, url.Values{"csrf": {csrf(t, admin.page(c.url+"/"))}, "sha256": {pending}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's approval with another's token: %d", r.StatusCode)
	}
	// Someone in neither group.
	if r, page := newConsoleUser(t).signInConsole(c.url, "mallory"); r.StatusCode != http.StatusForbidden || !strings.Contains(page, "not one of the people") {
		t.Errorf("mallory's sign-in: %d %s", r.StatusCode, page)
	}

	// Approvals (none held) and policies, with an evaluation.
	if _, page := admin.get(c.url + "/approvals"); !strings.Contains(page, "No call is held for approval") {
		t.Errorf("the approvals page: %s", page)
	}
	_, policies := admin.get(c.url + "/policies")
	if !strings.Contains(policies, "transfer-limit") {
		t.Fatalf("the policies page: %s", policies)
	}
	evalURL := c.url + "/policies/eval"
	input := `{"request":{"mcp":{"method":"tools/call","tool":{"params":{"name":"transfer","arguments":{"amount":5000}}}}},"purpose":"call"}`
	if r, page := admin.post(evalURL, url.Values{"csrf": {csrf(t, policies)}, "app": {"ledger"}, "input": {input}}); r.StatusCode != http.StatusOK || !strings.Contains(page, "denied by policy") || !strings.Contains(page, "limited to an amount of 1000") {
		t.Errorf("evaluating the policy: %d %s", r.StatusCode, page)
	}
	for _, bad := range []struct {
		form url.Values
		want int
	}{
		{url.Values{"csrf": {csrf(t, policies)}, "app": {"ledger"}, "input": {"{not json"}}, http.StatusBadRequest},
		{url.Values{"csrf": {csrf(t, policies)}, "app": {"ledger"}, "input": {"[1]"}}, http.StatusBadRequest},
		{url.Values{"csrf": {csrf(t, policies)}, "app": {"nope"}, "input": {"{}"}}, http.StatusBadRequest},
		{url.Values{"csrf": {csrf(t, policies)}, "app": {"ledger"}, "input": {`{"a":"` + strings.Repeat("x", 40<<10) + `"}`}}, http.StatusRequestEntityTooLarge},
		{url.Values{"app": {"ledger"}, "input": {"{}"}}, http.StatusForbidden},
	} {
		if r, page := admin.post(evalURL, bad.form); r.StatusCode != bad.want || strings.Contains(page, "<script>") {
			t.Errorf("evaluating %.40q: %d, want %d", bad.form.Get("input"), r.StatusCode, bad.want)
		}
	}

	r, after := admin.post(approve, url.Values{"csrf": {csrf(t, pin)}, "sha256": {pending}})
	if r.StatusCode != http.StatusOK || !strings.Contains(after, `<dd id="pin-status">approved</dd>`) || strings.Contains(after, "pin-diff") {
		t.Fatalf("after the approval: %d %s", r.StatusCode, after)
	}
	if tools := listedTools(t, s.session(t)); !slices.Contains(tools, "ledger_get_balance") {
		t.Fatalf("the approved tool is not served again: %v", tools)
	}
	if r, page := admin.post(c.url+"/signout", url.Values{"csrf": {csrf(t, after)}}); r.StatusCode != http.StatusOK || !strings.Contains(page, "signed out") {
		t.Fatalf("sign-out: %d %s", r.StatusCode, page)
	}
	if r, page := admin.get(c.url + "/"); !strings.Contains(page, `name="password"`) {
		t.Errorf("after signing out the console is still open: %d", r.StatusCode)
	}

	events := map[string]string{}
	var approvedBy string
	if err := audit.Query(c.trail, audit.Filter{}, func(r *audit.Record) bool {
		if r.Kind == audit.KindConsole {
			events[r.Event+" "+r.Subject] = r.Detail
		}
		if r.Kind == audit.KindPin && r.Event == "pin.approved" {
			approvedBy = r.Pin.By
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"console.signin admin", "console.signin auditor", "console.refused mallory", "console.refused admin", "console.signout admin"} {
		if _, ok := events[want]; !ok {
			t.Errorf("the trail has no %q (%v)", want, events)
		}
	}
	if approvedBy != "console:admin" {
		t.Errorf("the approval is recorded by %q, want console:admin", approvedBy)
	}
}

// page is the body of a GET.
func (u *webUser) page(target string) string {
	_, body := u.get(target)
	return body
}

func regexpFind(s, pattern string) string {
	return regexp.MustCompile(pattern).FindString(s)
}

// Where the console signs people in at an OIDC connector, the browser goes
// to the provider and back through the console's callback.
func TestConsoleSignInAtConnector(t *testing.T) {
	admin := freeAddress(t)
	consoleURL := "http://" + admin + "/console"
	idp := startIDPArgs(t, "--login-redirect", consoleURL+"/callback")
	trail := filepath.Join(t.TempDir(), "audit")
	startBroker(t, scenario(t, "console-connector"), idp.Issuer, admin, trail)
	waitListening(t, admin)
	b := newBrowser(t)
	stop, page := b.signIn(consoleURL+"/", "carol", "carol-password", func(*url.URL) bool { return false })
	if stop != nil || !strings.Contains(page, "Overview") || !strings.Contains(page, "carol-7d1f") || !strings.Contains(page, "operator") {
		t.Fatalf("the console after the provider's sign-in: %s\nrequests:\n%s", page, strings.Join(b.trail, "\n"))
	}
	want := []string{"GET " + consoleURL + "/signin 303", "GET " + idp.Issuer + "/auth", "GET " + consoleURL + "/callback 303", "GET " + consoleURL + "/ 200"}
	if missed := b.missed(want); missed != "" {
		t.Fatalf("the sign-in missed %q; requests:\n%s", missed, strings.Join(b.trail, "\n"))
	}
}

// With listener: main the console is served beside the agents' endpoints,
// at the Auth Provider's issuer, and not on the admin listener.
func TestConsoleOnTheMainListener(t *testing.T) {
	addr, admin := freeAddress(t), freeAddress(t)
	base := startBrokerAt(t, addr, scenario(t, "console-main"), filepath.Join(t.TempDir(), "broker.db"), "http://"+addr, demoPasswordHash, admin)
	waitListening(t, admin)
	if r, page := newConsoleUser(t).signInConsole(base+"/console", "admin"); r.StatusCode != http.StatusOK || !strings.Contains(page, "Overview") {
		t.Fatalf("the console on the main listener: %d %s", r.StatusCode, page)
	}
	resp, err := http.Get("http://" + admin + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the admin listener serves the console too: %d", resp.StatusCode)
	}
}
