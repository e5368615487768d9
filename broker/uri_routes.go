package broker

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"

	"github.com/mcpbroker/mcpbroker/apps"
)

// Which app serves a resource URI. A URI in a declared space
// (resourceNamespace) is its app's, without any list. Among the apps that
// declare none, the first in configuration order that claims the URI —
// lists it, or a template whose literal beginning starts it — serves it,
// whichever app listed first, last or the longest template. What a later
// app lists over an earlier app's claim is left out of its lists.
//
// st.templates holds every such app's template beginnings, grouped by app
// in configuration order; within a group they are sorted and none starts
// another (an app's nested templates are kept as the shorter). Routes do
// not depend on the order in which lists arrive: a claim is never dropped
// for another, only outranked.

// maxRoutedURIBytes bounds the URIs and template beginnings a session
// records to route by: their count is bounded by maxRoutes, their length
// by this.
const maxRoutedURIBytes = 2048

// learnResource records a listed resource URI and reports whether the item
// is shown.
func (st *sessionState) learnResource(app *apps.App, uri string) bool {
	if uri == "" || !app.MayList(uri) {
		return false
	}
	if !app.SharesURIs() {
		return true // routed by its declaration, or as the one app without one
	}
	key := apps.FoldURI(uri)
	if len(key) > maxRoutedURIBytes {
		return false
	}
	if t := st.templateOf(key); t != nil && t.app != app && t.app.Precedes(app) {
		return false
	}
	owner, taken := st.resources[key]
	switch {
	case taken && owner != app && owner.Precedes(app):
		return false
	case taken || len(st.resources) < maxRoutes:
		if st.resources == nil {
			st.resources = make(map[string]*apps.App)
		}
		st.resources[key] = app
	}
	return true
}

// learnTemplate records a listed template and reports whether the item is
// shown: not when an earlier app has a template one of whose beginnings
// starts the other's.
func (st *sessionState) learnTemplate(app *apps.App, uriTemplate string) bool {
	literal, _, _ := strings.Cut(uriTemplate, "{")
	if uriTemplate == "" || !app.MayList(literal) {
		return false
	}
	if !app.SharesURIs() {
		return true
	}
	key := apps.FoldURI(literal)
	if len(key) > maxRoutedURIBytes {
		return false
	}
	shown := true
	from, to := st.templateGroup(app)
	for i := 0; i < from && shown; {
		end := st.groupEnd(i)
		if st.overlaps(i, end, key) {
			shown = false
		}
		i = end
	}
	at := from + sort.Search(to-from, func(i int) bool { return st.templates[from+i].prefix >= key })
	if at > from && strings.HasPrefix(key, st.templates[at-1].prefix) {
		return shown // within a template of its own already
	}
	end := at
	for end < to && strings.HasPrefix(st.templates[end].prefix, key) {
		end++
	}
	if at == end && len(st.templates) >= maxRoutes {
		return shown // shown; routed no more than other items past the bound
	}
	st.templates = slices.Replace(st.templates, at, end, templateRoute{prefix: key, app: app})
	return shown
}

// templateGroup is the range of st.templates holding app's templates.
func (st *sessionState) templateGroup(app *apps.App) (from, to int) {
	from = sort.Search(len(st.templates), func(i int) bool { return !st.templates[i].app.Precedes(app) })
	to = from + sort.Search(len(st.templates)-from, func(i int) bool { return app.Precedes(st.templates[from+i].app) })
	return from, to
}

// groupEnd is the end of the group starting at i.
func (st *sessionState) groupEnd(i int) int {
	_, to := st.templateGroup(st.templates[i].app)
	return to
}

// covering returns the template of the group [from, to) whose beginning
// starts key: in a sorted, prefix-free group only the greatest not above
// key can.
func (st *sessionState) covering(from, to int, key string) *templateRoute {
	at := from + sort.Search(to-from, func(i int) bool { return st.templates[from+i].prefix > key })
	if at > from && strings.HasPrefix(key, st.templates[at-1].prefix) {
		return &st.templates[at-1]
	}
	return nil
}

// overlaps reports whether a template of the group [from, to) starts key
// or begins with it.
func (st *sessionState) overlaps(from, to int, key string) bool {
	if st.covering(from, to, key) != nil {
		return true
	}
	at := from + sort.Search(to-from, func(i int) bool { return st.templates[from+i].prefix >= key })
	return at < to && strings.HasPrefix(st.templates[at].prefix, key)
}

// templateOf returns the template of the first app, in configuration
// order, with a template starting the folded URI key.
func (st *sessionState) templateOf(key string) *templateRoute {
	for i := 0; i < len(st.templates); {
		end := st.groupEnd(i)
		if t := st.covering(i, end, key); t != nil {
			return t
		}
		i = end
	}
	return nil
}

// resourceApp finds the app of a URI among those without declared spaces:
// the earlier in configuration order of the app that listed it and the
// first app whose template starts it.
func (st *sessionState) resourceApp(uri string) *apps.App {
	st.mu.Lock()
	defer st.mu.Unlock()
	key := apps.FoldURI(uri)
	app := st.resources[key]
	if t := st.templateOf(key); t != nil && (app == nil || t.app.Precedes(app)) {
		app = t.app
	}
	return app
}

// uriKinds are the lists that reveal who serves a URI.
var uriKinds = [2]listKind{kindResource, kindTemplate}

func uriKindIndex(k listKind) int {
	if k == kindTemplate {
		return 1
	}
	return 0
}

// markListed records a first page of a URI list that every app answered.
func (st *sessionState) markListed(k listKind) {
	if k != kindResource && k != kindTemplate {
		return
	}
	st.mu.Lock()
	st.urisListed[uriKindIndex(k)] = true
	st.mu.Unlock()
}

func (st *sessionState) listed(k listKind) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.urisListed[uriKindIndex(k)]
}

// learnURIs makes sure the session has heard every app's claims of the
// given kinds before a URI is routed or a resource list is judged by them:
// otherwise a later app's listing could be taken for a URI an earlier app
// has yet to list. Needed only where two apps without declared spaces
// could claim the same URI; it reports whether it listed anything.
func (b *Broker) learnURIs(ctx context.Context, c *Call, kinds ...listKind) (bool, error) {
	if len(c.gen.catalog.Undeclared()) < 2 {
		return false, nil
	}
	listed := false
	for _, k := range kinds {
		if c.State.listed(k) {
			continue
		}
		if _, err := b.collect(ctx, c, k, nil); err != nil && !errors.Is(err, ErrUpstreamFailed) {
			return listed, err
		}
		listed = true
	}
	return listed, nil
}
