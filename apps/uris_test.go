package apps

import (
	"testing"
)

func TestFoldURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ledger://accounts/Alice", "ledger://accounts/Alice"},
		{"LEDGER://Accounts/Alice", "ledger://accounts/Alice"},
		{"HTTPS://Wiki.Example:8443/Docs?Q=A#F", "https://wiki.example:8443/Docs?Q=A#F"},
		{"HTTPS://Wiki.Example", "https://wiki.example"},
		{"Urn:ISBN:0451450523", "urn:ISBN:0451450523"},
		{"File:///Etc/Hosts", "file:///Etc/Hosts"},
		{"not a URI", "not a URI"},
		{"1ab:x", "1ab:x"},
		{"", ""},
	} {
		if got := FoldURI(tc.in); got != tc.want {
			t.Errorf("FoldURI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func testCatalog(t *testing.T, prefixes ...[]string) *Catalog {
	t.Helper()
	var list []Options
	for i, p := range prefixes {
		list = append(list, Options{Name: string(rune('a' + i)), URL: "http://127.0.0.1:1/mcp", URIPrefixes: p})
	}
	c, err := NewCatalog(list, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A URI in a declared space is its app's alone; an app lists only what
// lies in its own space, or, without one, nothing in another's.
func TestURISpaces(t *testing.T) {
	c := testCatalog(t, []string{"ledger://", "ledger://accounts/", "https://ledger.example/"}, nil, []string{"wiki://"}, nil)
	ledger, plain, wiki, other := c.Apps[0], c.Apps[1], c.Apps[2], c.Apps[3]
	for _, tc := range []struct {
		uri   string
		owner *App
	}{
		{"ledger://accounts/alice", ledger},
		{"LEDGER://accounts/alice", ledger},
		{"ledger:", nil},
		{"ledger:/", nil},
		{"https://ledger.example/x", ledger},
		{"https://LEDGER.example/x", ledger},
		{"https://ledger.example", nil},
		{"wiki://page", wiki},
		{"wik://page", nil},
		{"notes://1", nil},
		{"", nil},
	} {
		if got := c.URIOwner(tc.uri); got != tc.owner {
			t.Errorf("URIOwner(%q) = %v, want %v", tc.uri, got, tc.owner)
		}
	}
	for _, tc := range []struct {
		app  *App
		uri  string
		want bool
	}{
		{ledger, "ledger://accounts/alice", true},
		{ledger, "ledger://", true},
		{ledger, "ledger:", false}, // a template "ledger:{x}" reaches outside the space
		{ledger, "notes://1", false},
		{ledger, "wiki://page", false},
		{plain, "ledger://accounts/alice", false},
		{plain, "Ledger://accounts/alice", false},
		{plain, "ledger", true}, // a template "ledger{+x}" only begins like the space
		{plain, "notes://1", true},
		{plain, "", true},
		{wiki, "wiki://x", true},
		{other, "wiki://x", false},
	} {
		if got := tc.app.MayList(tc.uri); got != tc.want {
			t.Errorf("%s.MayList(%q) = %v, want %v", tc.app.Name, tc.uri, got, tc.want)
		}
	}
	if got := c.Undeclared(); len(got) != 2 || got[0] != plain || got[1] != other {
		t.Errorf("Undeclared = %v", got)
	}
	if !ledger.Precedes(plain) || other.Precedes(wiki) {
		t.Error("Precedes does not follow configuration order")
	}
	if ledger.SharesURIs() || !plain.SharesURIs() || !other.SharesURIs() {
		t.Error("SharesURIs: want true for the two apps without a declared space only")
	}
	if one := testCatalog(t, []string{"ledger://"}, nil); one.Apps[1].SharesURIs() {
		t.Error("SharesURIs: the one app without a declared space shares with none")
	}
}

// Configuration refuses nesting prefixes of two apps; the catalog refuses
// them as well rather than give a URI to either.
func TestURISpacesNestAcrossApps(t *testing.T) {
	list := []Options{
		{Name: "a", URL: "http://127.0.0.1:1/mcp", URIPrefixes: []string{"ledger://"}},
		{Name: "b", URL: "http://127.0.0.1:2/mcp", URIPrefixes: []string{"LEDGER://accounts/"}},
	}
	if _, err := NewCatalog(list, nil); err == nil {
		t.Fatal("NewCatalog accepted nesting URI prefixes of two apps")
	}
}
