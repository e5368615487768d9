package apps

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Resource URIs are not rewritten, so unlike tool names they carry no
// app of their own. An app may declare the prefixes of the URIs it owns
// (resourceNamespace.uriPrefixes); a URI under one of them is that app's
// alone: no other app may list it, or a template over it, and reads,
// subscriptions and completions of it go to no other app.

// uriSpaces is every declared URI prefix with its app, sorted and
// prefix-free: configuration forbids two apps' prefixes to nest, and an
// app's own nested prefixes are kept as the shorter one. So the one
// prefix that can start a URI is the greatest not above it.
type uriSpaces []uriSpace

type uriSpace struct {
	prefix string // folded (FoldURI)
	app    *App
}

func newURISpaces(list []*App) (uriSpaces, error) {
	var all uriSpaces
	for _, app := range list {
		for _, prefix := range app.uriPrefixes {
			all = append(all, uriSpace{FoldURI(prefix), app})
		}
	}
	slices.SortStableFunc(all, func(a, b uriSpace) int { return strings.Compare(a.prefix, b.prefix) })
	var out uriSpaces
	for _, s := range all {
		if n := len(out); n > 0 && strings.HasPrefix(s.prefix, out[n-1].prefix) {
			if out[n-1].app != s.app {
				return nil, fmt.Errorf("apps: %s: resource URI prefix %q nests with %q of %s", s.app.Name, s.prefix, out[n-1].prefix, out[n-1].app.Name)
			}
			continue // inside a shorter prefix of the same app
		}
		out = append(out, s)
	}
	return out, nil
}

// owner returns the app whose declared prefix starts a folded URI.
func (spaces uriSpaces) owner(folded string) *App {
	i := sort.Search(len(spaces), func(i int) bool { return spaces[i].prefix > folded })
	if i > 0 && strings.HasPrefix(folded, spaces[i-1].prefix) {
		return spaces[i-1].app
	}
	return nil
}

// URIOwner returns the app that declared a URI space holding uri, or nil.
func (c *Catalog) URIOwner(uri string) *App { return c.spaces.owner(FoldURI(uri)) }

// Undeclared lists the apps that declare no URI space, in configuration
// order: those a URI outside every declared space may belong to.
func (c *Catalog) Undeclared() []*App { return c.undeclared }

// DeclaresURIs reports whether the app declared the URIs it owns.
func (a *App) DeclaresURIs() bool { return len(a.uriPrefixes) > 0 }

// MayList reports whether the app may show a resource URI, or a template
// whose literal beginning is uri: an app that declared a space lists only
// what lies in it; any other app nothing in another app's space. A
// template that merely begins like a declared space ("ledger{+rest}") may
// be listed: the URIs of the space still go to their owner.
func (a *App) MayList(uri string) bool {
	owner := a.spaces.owner(FoldURI(uri))
	if a.DeclaresURIs() {
		return owner == a
	}
	return owner == nil
}

// SharesURIs reports whether the app is one of several without a declared
// URI space: which of them serves a URI is then learned from their lists.
func (a *App) SharesURIs() bool { return a.sharesURIs }

// Precedes reports whether a comes before b in configuration order; of
// two apps without declared spaces that list the same URI, the first
// keeps it.
func (a *App) Precedes(b *App) bool { return a.order < b.order }

// FoldURI returns uri with its scheme and authority in lower case, the
// parts RFC 3986 (6.2.2.1) compares without case, so "LEDGER://x" is not
// a URI apart from "ledger://x". Anything that does not begin with a
// scheme is returned as it is.
func FoldURI(uri string) string {
	head, ok := URIHead(uri)
	if !ok {
		return uri
	}
	upper := false
	for i := 0; i < len(head); i++ {
		if c := uri[i]; c >= 'A' && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return uri
	}
	b := []byte(uri)
	for i := 0; i < len(head); i++ {
		if c := b[i]; c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// URIHead returns the part of uri compared without case: the scheme, ":"
// and, after "//", the authority. ok is false when uri does not begin with
// a scheme.
func URIHead(uri string) (head string, ok bool) {
	end := schemeEnd(uri)
	if end < 0 {
		return "", false
	}
	rest := uri[end+1:]
	if !strings.HasPrefix(rest, "//") {
		return uri[:end+1], true
	}
	n := strings.IndexAny(rest[2:], "/?#")
	if n < 0 {
		return uri, true
	}
	return uri[:end+3+n], true
}

// schemeEnd is the index of the ":" ending uri's scheme
// (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )), or -1.
func schemeEnd(uri string) int {
	for i := 0; i < len(uri); i++ {
		c := uri[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return i
		default:
			return -1
		}
	}
	return -1
}
