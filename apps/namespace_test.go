package apps

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestExposedName(t *testing.T) {
	long := strings.Repeat("x", 70)
	cases := []struct {
		prefix, name string
		want         string // "" means: shortened, checked by shape
		mangled      bool
	}{
		{"ledger_", "list_accounts", "ledger_list_accounts", false},
		{"", "list_accounts", "list_accounts", false},
		{"", "odd name/with spaces", "odd name/with spaces", false}, // namespacing off: as the upstream says
		{"a.", "b-c.d_e", "a.b-c.d_e", false},
		{"ledger_", long, "", true},
		{"ledger_", "has space", "", true},
		{"ledger_", "naïve", "", true},
	}
	for _, tc := range cases {
		got, mangled := exposedName(tc.prefix, tc.name)
		if mangled != tc.mangled {
			t.Errorf("%q+%q: mangled=%v, want %v", tc.prefix, tc.name, mangled, tc.mangled)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("%q+%q = %q, want %q", tc.prefix, tc.name, got, tc.want)
		}
		if tc.mangled {
			if !validName(got) || !strings.HasPrefix(got, tc.prefix) {
				t.Errorf("%q+%q = %q: not a valid name with the prefix", tc.prefix, tc.name, got)
			}
			again, _ := exposedName(tc.prefix, tc.name)
			if again != got {
				t.Errorf("%q+%q not deterministic: %q then %q", tc.prefix, tc.name, got, again)
			}
		}
	}
	// Two long names that share their first 64 characters stay distinct.
	a, _ := exposedName("p_", long+"a")
	b, _ := exposedName("p_", long+"b")
	if a == b {
		t.Errorf("long names collide: %q", a)
	}
}

func TestAppNamesRoundTrip(t *testing.T) {
	app := &App{Name: "ledger", Prefix: "ledger_"}
	for _, tc := range []struct {
		name      string
		shortened bool
	}{{"get_balance", false}, {strings.Repeat("y", 80), true}, {"with space", true}, {"ends_deadbeef", false}} {
		exposed, shortened := app.ExposedName(tc.name)
		if shortened != tc.shortened {
			t.Errorf("ExposedName(%q): shortened %v, want %v", tc.name, shortened, tc.shortened)
		}
		if !shortened && exposed != app.Prefix+tc.name {
			t.Errorf("ExposedName(%q) = %q", tc.name, exposed)
		}
		if shortened && !app.MaybeShortened(exposed) {
			t.Errorf("MaybeShortened(%q) = false for a shortened name", exposed)
		}
	}
	if app.MaybeShortened("ledger_get_balance") {
		t.Error("MaybeShortened(ledger_get_balance) = true")
	}
	c, err := NewCatalog([]Options{
		{Name: "ledger", Prefix: app.Prefix, URL: "http://127.0.0.1:1/mcp"},
		{Name: "plain", URL: "http://127.0.0.1:1/mcp"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	app = c.App("ledger")
	if a, up, ok := c.ByPrefix("ledger_get_balance"); !ok || a != app || up != "get_balance" {
		t.Errorf("ByPrefix: %v %q %v", a, up, ok)
	}
	if _, _, ok := c.ByPrefix("ledger_"); ok {
		t.Error("the bare prefix names no tool")
	}
	if _, _, ok := c.ByPrefix("get_balance"); ok {
		t.Error("an unprefixed name matched a prefix")
	}
	if got := c.Unprefixed(); len(got) != 1 || got[0].Name != "plain" {
		t.Errorf("Unprefixed: %v", got)
	}
}

func TestHealthBacksOff(t *testing.T) {
	var h health
	now := time.Unix(1000, 0)
	refused := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	if err := h.check(now); err != nil {
		t.Fatalf("fresh app unavailable: %v", err)
	}
	h.observe(errors.New("jsonrpc error -32601"), now)
	if err := h.check(now); err != nil {
		t.Fatalf("an answer is not a failure: %v", err)
	}
	h.observe(refused, now)
	if err := h.check(now.Add(100 * time.Millisecond)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after a refusal: %v", err)
	}
	if err := h.check(now.Add(firstBackoff + time.Millisecond)); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
	h.observe(refused, now)
	if err := h.check(now.Add(firstBackoff + time.Millisecond)); err == nil {
		t.Fatal("the second failure should double the back-off")
	}
	for range 20 {
		h.observe(refused, now)
	}
	if err := h.check(now.Add(maxBackoff + time.Millisecond)); err != nil {
		t.Fatalf("back-off beyond its cap: %v", err)
	}
	h.observe(nil, now)
	if err := h.check(now); err != nil {
		t.Fatalf("success did not reset: %v", err)
	}
}
