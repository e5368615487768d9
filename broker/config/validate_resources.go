package config

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mcpbroker/mcpbroker/apps"
)

// Bounds on resourceNamespace.uriPrefixes.
const (
	maxURIPrefixes     = 64
	maxURIPrefixLength = 512
)

// resourceNamespace checks the URI prefixes one app declares.
func (v *validator) resourceNamespace(path string, app *App) {
	namespace := app.ResourceNamespace
	if namespace == nil {
		return
	}
	path = field(path, "resourceNamespace.uriPrefixes")
	switch n := len(namespace.URIPrefixes); {
	case n == 0:
		v.add(path, `required: the URI prefixes the app owns, like "ledger://"`)
		return
	case n > maxURIPrefixes:
		v.add(path, fmt.Sprintf("at most %d prefixes, got %d", maxURIPrefixes, n))
		return
	}
	first := map[string]int{}
	for i, prefix := range namespace.URIPrefixes {
		if message := uriPrefixProblem(prefix); message != "" {
			v.add(index(path, i), message)
			continue
		}
		if earlier, ok := first[prefix]; ok {
			v.add(index(path, i), fmt.Sprintf("duplicate of uriPrefixes[%d]", earlier))
			continue
		}
		first[prefix] = i
	}
}

// uriPrefixProblem says what is wrong with one declared URI prefix. Scheme
// and authority must be written in lower case: the broker compares URIs
// with them folded (RFC 3986, 6.2.2.1), so "LEDGER://x" is the app's too.
func uriPrefixProblem(prefix string) string {
	switch {
	case prefix == "":
		return "must not be empty"
	case len(prefix) > maxURIPrefixLength:
		return fmt.Sprintf("at most %d bytes, got %d", maxURIPrefixLength, len(prefix))
	case strings.ContainsAny(prefix, "{}"):
		return fmt.Sprintf(`must not contain "{" or "}": a prefix is literal, not a URI template, got %s`, quote(prefix))
	case strings.ContainsFunc(prefix, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Sprintf("must not contain spaces or control characters, got %s", quote(prefix))
	}
	head, ok := apps.URIHead(prefix)
	if !ok {
		return fmt.Sprintf(`want a URI scheme and ":" first, like "ledger://", got %s`, quote(prefix))
	}
	if head != strings.ToLower(head) {
		return fmt.Sprintf("write the scheme and authority in lower case (URIs are compared with them folded): want %s, got %s",
			quote(strings.ToLower(head)+prefix[len(head):]), quote(prefix))
	}
	return ""
}

// resourceNamespaceOverlaps reports URI prefixes of two apps where one
// starts the other: a URI under both could belong to either app. Each
// prefix is reported once, on the later app, against the first app it
// overlaps. The prefixes are sorted, so the ones that begin an entry are
// those on a stack of nested levels, at most maxURIPrefixLength deep, each
// keeping the first two apps that declared it.
func (v *validator) resourceNamespaceOverlaps(apps []App) {
	var all []declaredPrefix
	for i := range apps {
		if apps[i].ResourceNamespace == nil || len(apps[i].ResourceNamespace.URIPrefixes) > maxURIPrefixes {
			continue
		}
		for j, prefix := range apps[i].ResourceNamespace.URIPrefixes {
			if uriPrefixProblem(prefix) == "" {
				all = append(all, declaredPrefix{prefix, i, j})
			}
		}
	}
	// Stable: equal prefixes stay in configuration order.
	slices.SortStableFunc(all, func(a, b declaredPrefix) int { return strings.Compare(a.prefix, b.prefix) })
	type level struct {
		prefix string
		first  []declaredPrefix // at most two, of different apps
	}
	clashes := map[[2]int]prefixClash{} // the later prefix (app, nth) -> its clash
	var stack []level
	for _, entry := range all {
		for len(stack) > 0 && !strings.HasPrefix(entry.prefix, stack[len(stack)-1].prefix) {
			stack = stack[:len(stack)-1]
		}
		for _, l := range stack {
			outer := l.first[0]
			if outer.app == entry.app {
				if len(l.first) == 1 {
					continue // nested in one app: the app owns both
				}
				outer = l.first[1]
			}
			c := prefixClash{later: entry, earlier: outer}
			if outer.app > entry.app {
				c = prefixClash{later: outer, earlier: entry}
			}
			key := [2]int{c.later.app, c.later.nth}
			if found, ok := clashes[key]; !ok || c.earlier.app < found.earlier.app {
				clashes[key] = c
			}
		}
		if top := len(stack) - 1; top >= 0 && stack[top].prefix == entry.prefix {
			if len(stack[top].first) == 1 && stack[top].first[0].app != entry.app {
				stack[top].first = append(stack[top].first, entry)
			}
			continue
		}
		stack = append(stack, level{entry.prefix, []declaredPrefix{entry}})
	}
	ordered := slices.SortedFunc(maps.Values(clashes), func(a, b prefixClash) int {
		return cmp.Or(cmp.Compare(a.later.app, b.later.app), cmp.Compare(a.later.nth, b.later.nth))
	})
	for _, c := range ordered {
		other := fmt.Sprintf("apps[%d] (%s)", c.earlier.app, quote(apps[c.earlier.app].Name))
		var message string
		switch {
		case c.later.prefix == c.earlier.prefix:
			message = fmt.Sprintf("%s is also declared by %s", quote(c.later.prefix), other)
		case strings.HasPrefix(c.earlier.prefix, c.later.prefix):
			message = fmt.Sprintf("%s is a prefix of %s, declared by %s; a resource URI could belong to either app", quote(c.later.prefix), quote(c.earlier.prefix), other)
		default:
			message = fmt.Sprintf("%s starts with %s, declared by %s; a resource URI could belong to either app", quote(c.later.prefix), quote(c.earlier.prefix), other)
		}
		v.add(index(field(index("apps", c.later.app), "resourceNamespace.uriPrefixes"), c.later.nth), message)
	}
}

// declaredPrefix is one entry of apps[app].resourceNamespace.uriPrefixes[nth].
type declaredPrefix struct {
	prefix   string
	app, nth int
}

type prefixClash struct{ later, earlier declaredPrefix }
