package broker

import (
	"math/rand/v2"
	"testing"

	"github.com/mcpbroker/mcpbroker/apps"
)

// Among apps without declared URI spaces, the first app in configuration
// order that claims a URI serves it, in whatever order the lists arrive;
// an app with a declared space is never learned from its lists, and no
// other app may list into its space.
func TestURIRoutesIndependentOfListingOrder(t *testing.T) {
	var list []apps.Options
	for _, name := range []string{"first", "second", "third", "ledger"} {
		a := apps.Options{Name: name, URL: "http://127.0.0.1:1/mcp"}
		if name == "ledger" {
			a.URIPrefixes = []string{"ledger://"}
		}
		list = append(list, a)
	}
	catalog, err := apps.NewCatalog(list, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, second, third, ledger := catalog.Apps[0], catalog.Apps[1], catalog.Apps[2], catalog.Apps[3]

	type listing struct {
		app   *apps.App
		kind  listKind
		uri   string
		shown bool // when listed in configuration order
	}
	listings := []listing{
		{first, kindTemplate, "files://{path}", true},
		{first, kindTemplate, "files://docs/{name}", true}, // inside its own
		{first, kindResource, "FILES://readme", true},
		{second, kindResource, "files://secret/a", false},   // under first's template
		{second, kindTemplate, "files://secret/{x}", false}, // inside first's
		{second, kindTemplate, "fil{+rest}", false},         // around first's
		{second, kindTemplate, "{+uri}", false},             // around everything
		{second, kindResource, "notes://1", true},
		{second, kindResource, "ledger://accounts/alice", false}, // ledger's space
		{second, kindTemplate, "ledger://accounts/alice{rest}", false},
		{second, kindTemplate, "ledger{+rest}", true}, // begins like ledger's space; its URIs stay ledger's
		{third, kindResource, "notes://1", false},     // second's
		{third, kindTemplate, "notes://{n}", false},   // second's {+uri} is around it
		{third, kindResource, "misc://x", false},      // second's {+uri}
		{ledger, kindResource, "ledger://accounts/alice", true},
		{ledger, kindResource, "wiki://page", false}, // outside its space
		{ledger, kindTemplate, "ledger://accounts/{id}", true},
		{ledger, kindTemplate, "{+uri}", false},
	}
	want := map[string]*apps.App{
		"files://secret/a":        first,
		"files://readme":          first,
		"Files://Readme":          first,
		"files://docs/x":          first,
		"notes://1":               second,
		"notes://2":               second, // second's {+uri} outranks third's template
		"misc://x":                second,
		"ledger://accounts/alice": ledger, // by its declaration, whatever the lists say
		"LEDGER://accounts/bob":   ledger,
	}

	orders := [][]listing{listings}
	reversed := make([]listing, len(listings))
	for i, l := range listings {
		reversed[len(listings)-1-i] = l
	}
	orders = append(orders, reversed)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := append([]listing(nil), listings...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		orders = append(orders, shuffled)
	}
	for n, order := range orders {
		st := newSessionState(false)
		for _, l := range order {
			var shown bool
			if l.kind == kindResource {
				shown = st.learnResource(l.app, l.uri)
			} else {
				shown = st.learnTemplate(l.app, l.uri)
			}
			if n == 0 && shown != l.shown {
				t.Errorf("%s listing %q: shown %v, want %v", l.app.Name, l.uri, shown, l.shown)
			}
			if !l.app.MayList(l.uri) && shown {
				t.Errorf("%s listed %q in another app's space", l.app.Name, l.uri)
			}
		}
		for uri, app := range want {
			got := catalog.URIOwner(uri) // as routeURI: a declared space first
			if got == nil {
				got = st.resourceApp(uri)
			}
			if got != app {
				t.Errorf("order %d: %s is routed to %v, want %v", n, uri, name(got), name(app))
			}
		}
	}
}

func name(app *apps.App) string {
	if app == nil {
		return "none"
	}
	return app.Name
}
