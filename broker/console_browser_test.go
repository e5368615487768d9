package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium is Debian's Chromium, installed by .ci/setup. Outside `make
// test` the browser test is skipped, unless CI is set, where its absence
// fails.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed: run the tests with make test")
		}
		t.Skip("chromium not installed: run make test")
	}
	return path
}

// screenshotDir is where the browser test leaves its screenshots: the
// build folder (bin/), for a person to look at.
func screenshotDir(t *testing.T) string {
	dir, err := filepath.Abs(filepath.Join("..", "bin", "screenshots"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// axeViolation is one finding of axe-core.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// A person runs the console in a real browser (headless Chromium): signs
// in as an operator through the Auth Provider's login page, sees the
// overview, opens the app, finds the tool whose definition the upstream
// changed, reads the diff and approves it, and a client session is served
// the tool again; then signs out. Someone in no console group is refused.
// It watches a call the policy denies appear on the live decisions page and
// opens its record. Every page passes axe-core's WCAG 2 A and AA rules and can be worked by
// keyboard; the screenshots of the overview and the diff are left in
// bin/screenshots.
func TestConsoleInBrowser(t *testing.T) {
	exe := chromium(t)
	_, modules := nodeTools(t)
	axe, err := os.ReadFile(filepath.Join(modules, "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	c := startConsole(t)
	s := c.pinning
	c.changeGetBalance(t)

	browser := func(t *testing.T) (context.Context, context.CancelFunc) {
		allocator, stopAllocator := chromedp.NewExecAllocator(context.Background(),
			append(chromedp.DefaultExecAllocatorOptions[:],
				chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
				chromedp.UserDataDir(t.TempDir()))...)
		ctx, stopBrowser := chromedp.NewContext(allocator)
		ctx, stopTimeout := context.WithTimeout(ctx, 90*time.Second)
		return ctx, func() { stopTimeout(); stopBrowser(); stopAllocator() }
	}
	ctx, stop := browser(t)
	defer stop()
	shots := screenshotDir(t)

	// accessible runs axe-core on the page and fails on any violation.
	accessible := func(page string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](string(axe))); err != nil {
			t.Fatalf("loading axe on %s: %v", page, err)
		}
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa"]}}).then(r => JSON.stringify(r.violations))`,
			chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("axe on %s: %v", page, err)
		}
		var violations []axeViolation
		if err := json.Unmarshal([]byte(raw), &violations); err != nil {
			t.Fatalf("axe on %s: %v: %s", page, err, raw)
		}
		for _, v := range violations {
			t.Errorf("%s: accessibility: %s (%s, %s) at %v", page, v.Help, v.ID, v.Impact, v.Nodes)
		}
	}
	// text is the text of the first element sel matches, read by the page
	// itself: a query by node would fail if the page were replaced between
	// finding the node and reading it.
	text := func(sel chromedp.CSS) string {
		t.Helper()
		quoted, _ := json.Marshal(string(sel))
		var v string
		eventually(t, "an element "+string(sel), func() bool {
			var err error
			v, err = chromedp.Run(ctx, chromedp.Evaluate[string](`(function () { var e = document.querySelector(`+string(quoted)+`); return e ? e.innerText : "\u0000"; })()`))
			return err == nil && v != "\x00"
		})
		return v
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		writeShot(t, filepath.Join(shots, name), png)
	}

	err = chromedp.Do(ctx,
		chromedp.Navigate(c.url+"/"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), "demo-password"),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("counters")),
	)
	if err != nil {
		t.Fatalf("signing in: %v", err)
	}
	if overview := text("main"); !strings.Contains(overview, "ledger") || !strings.Contains(overview, "1 waiting") {
		t.Fatalf("the overview shows: %s", overview)
	}
	shot("console-overview.png")
	accessible("overview")
	// The policy holds in the browser: a script put into the page does not run.
	if ran, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(function () {
		var s = document.createElement("script");
		s.textContent = "window.inlineRan = true";
		document.body.appendChild(s);
		return window.inlineRan === true;
	})()`)); err != nil || ran {
		t.Errorf("an inline script ran in the console (%v): its Content-Security-Policy does not hold", err)
	}

	// By keyboard: the first Tab reaches the skip link.
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	if focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.textContent`)); err != nil || focused != "Skip to content" {
		t.Errorf("the first Tab reaches %q (%v), want the skip link", focused, err)
	}

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/console/apps/ledger"]`)),
		chromedp.WaitVisible(chromedp.ID("pins")),
	)
	if err != nil {
		t.Fatalf("opening the app: %v", err)
	}
	if heading := text("h1"); heading != "App ledger" {
		t.Fatalf("the app page's heading: %q", heading)
	}
	accessible("app")
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/console/apps/ledger/pins/tool/get_balance"]`)),
		chromedp.WaitVisible(chromedp.ID("pin-sides")),
	)
	if err != nil {
		t.Fatalf("opening the changed tool: %v", err)
	}
	if diff := text("#pin-sides"); !strings.Contains(diff, "audit@example.net") || !strings.Contains(diff, "Return the balance of one account.") {
		t.Fatalf("the diff shows: %s", diff)
	}
	shot("console-tool-diff.png")
	accessible("tool")

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitNotPresent(chromedp.ID("pin-sides")),
	)
	if err != nil {
		t.Fatalf("approving: %v", err)
	}
	if status := text("#pin-status"); status != "approved" {
		t.Fatalf("after approving, the pin is %q", status)
	}
	if tools := listedTools(t, s.session(t)); !slices.Contains(tools, "ledger_get_balance") {
		t.Fatalf("the approved tool is not served again: %v", tools)
	}

	// The live decisions: a call the policy denies appears while the page
	// is open.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/console/decisions"]`)),
		chromedp.WaitVisible(chromedp.ID("decisions")),
	)
	if err != nil {
		t.Fatalf("opening the decisions: %v", err)
	}
	accessible("decisions")
	eventually(t, "the decisions page is live", func() bool { return strings.HasPrefix(text("#live-state"), "Live") })
	if _, e := call(t, s.session(t), "ledger_transfer", `{"from":"alice","to":"bob","amount":5000}`); e == nil || e["code"].(float64) != -32010 {
		t.Fatalf("a transfer over the limit: %v", e)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#decisions tbody tr[data-decision="denied"]`))); err != nil {
		t.Fatalf("the denied call did not appear on the live page: %v", err)
	}
	if row := text(`#decisions tbody tr[data-decision="denied"]`); !strings.Contains(row, "ledger_transfer") || !strings.Contains(row, "limited to an amount of 1000") {
		t.Errorf("the denied call's row: %q", row)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#decisions tbody tr[data-decision="denied"] a`)),
		chromedp.WaitVisible(chromedp.ID("record")),
	)
	if err != nil {
		t.Fatalf("opening the record: %v", err)
	}
	if record := text("pre"); !strings.Contains(record, `"externalMessage"`) || !strings.Contains(record, `"policyHash"`) {
		t.Errorf("the record page shows: %s", record)
	}
	accessible("record")

	for page, title := range map[string]string{"approvals": "Approvals", "policies": "Policies"} {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/console/`+page+`"]`))); err != nil {
			t.Fatalf("opening %s: %v", page, err)
		}
		eventually(t, "the "+page+" page", func() bool { return text("main h1") == title })
		accessible(page)
	}

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form.signout button`)),
		chromedp.WaitVisible(chromedp.CSS(`p[role="status"]`)),
	)
	if err != nil {
		t.Fatalf("signing out: %v", err)
	}
	if said := text(`p[role="status"]`); !strings.Contains(said, "signed out") {
		t.Fatalf("after signing out: %q", said)
	}
	cookies, err := chromedp.Run(ctx, chromedp.Action[[]*network.Cookie](func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{})
		return r.Cookies, err
	}))
	_ = err
	for _, k := range cookies {
		if k.Name == "mcpbroker_console" {
			t.Errorf("the console's cookie outlived the sign-out")
		}
	}

	// Someone in no console group.
	ctx2, stop2 := browser(t)
	defer stop2()
	err = chromedp.Do(ctx2,
		chromedp.Navigate(c.url+"/"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "mallory"),
		chromedp.SendKeys(chromedp.ID("password"), "demo-password"),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.CSS("p.error")),
	)
	if err != nil {
		t.Fatalf("mallory at the console: %v", err)
	}
	if refused, _ := chromedp.Run(ctx2, chromedp.Evaluate[string](`document.querySelector("p.error").innerText`)); !strings.Contains(refused, "not one of the people") {
		t.Fatalf("mallory at the console sees: %q", refused)
	}
	fmt.Fprintf(os.Stderr, "console screenshots: %s\n", shots)
}

func writeShot(t *testing.T, path string, png []byte) {
	t.Helper()
	if len(png) == 0 {
		t.Fatalf("no screenshot for %s", path)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}
