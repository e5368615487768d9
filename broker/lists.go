package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// listKind is one of the lists the broker merges across apps.
type listKind uint8

const (
	kindTool listKind = iota
	kindPrompt
	kindResource
	kindTemplate
)

// listSpec says how a list is called and which field holds its items.
var listSpecs = [...]struct {
	method string
	field  string
}{
	kindTool:     {"tools/list", "tools"},
	kindPrompt:   {"prompts/list", "prompts"},
	kindResource: {"resources/list", "resources"},
	kindTemplate: {"resources/templates/list", "resourceTemplates"},
}

func kindOf(method string) listKind {
	for k, s := range listSpecs {
		if s.method == method {
			return listKind(k)
		}
	}
	return kindTool
}

// maxRoutes bounds the names and URIs a session remembers per kind.
const maxRoutes = 10000

// maxNameBytes bounds the upstream tool and prompt names the broker shows
// (MCP suggests 1 to 128 characters): a session remembers the names it
// showed, so their length, not only their count, must be bounded.
const maxNameBytes = 512

// aggregate answers a list request with the items of every app: each app's
// first page at once, then, through our cursor, the next pages of the apps
// that have more. An app that fails is left out and logged; the others
// still answer. The pages come from the apps' list caches when they hold
// them; the answer is the items' bytes joined, encoded once.
func (b *Broker) aggregate(ctx context.Context, c *Call) error {
	k := kindOf(c.Message.Method)
	var cursors map[string]string
	if c.Params.Cursor != nil {
		var err error
		if cursors, err = decodeCursor(c.gen.catalog, *c.Params.Cursor); err != nil {
			return err
		}
	}
	if k == kindResource {
		// A later app's URI under an earlier app's template is left out
		// only once the template is known.
		if _, err := b.learnURIs(ctx, c, kindTemplate); err != nil {
			return err
		}
	}
	page, err := b.collect(ctx, c, k, cursors)
	if err != nil {
		return err
	}
	c.Response = &jsonrpc.Message{Result: page.encode(listSpecs[k].field)}
	return nil
}

// listPage is a merged page.
type listPage struct {
	items [][]byte
	bytes int
	next  map[string]string // app name -> upstream cursor
}

// encode writes the page as a list result, {"nextCursor":...,"<field>":[...]},
// members in the order encoding/json gives a map's.
func (p *listPage) encode(field string) json.RawMessage {
	var cursor string
	if len(p.next) > 0 {
		cursor = encodeCursor(p.next) // base64url: nothing to escape
	}
	out := make([]byte, 0, p.bytes+len(p.items)+len(cursor)+len(field)+32)
	out = append(out, '{')
	if cursor != "" {
		out = append(out, `"nextCursor":"`...)
		out = append(out, cursor...)
		out = append(out, `",`...)
	}
	out = append(out, '"')
	out = append(out, field...)
	out = append(out, `":[`...)
	for i, item := range p.items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, item...)
	}
	return append(out, "]}"...)
}

// collect fetches one page of a list from each app (all apps, or those
// named in cursors), keeps what the caller may see, and learns routes.
func (b *Broker) collect(ctx context.Context, c *Call, k listKind, cursors map[string]string) (listPage, error) {
	targets := c.gen.catalog.Apps
	if cursors != nil {
		targets = nil
		for _, app := range c.gen.catalog.Apps {
			if _, ok := cursors[app.Name]; ok {
				targets = append(targets, app)
			}
		}
	}
	type result struct {
		page    *apps.ListPage
		visible []*apps.ListItem
		err     error
	}
	results := make([]result, len(targets))
	eachIndex(len(targets), func(i int) {
		app := targets[i]
		page, err := b.listApp(ctx, c, app, k, cursors[app.Name])
		if err != nil {
			results[i] = result{err: err}
			return
		}
		// Each app's items are put to its policy as soon as they are
		// there, beside the other apps'.
		results[i] = result{page: page, visible: b.filterList(ctx, c, app, k, page.Items)}
	})
	var page listPage
	var failed []string
	visible := 0
	for _, r := range results {
		visible += len(r.visible)
	}
	page.items = make([][]byte, 0, visible)
	for i, app := range targets {
		r := results[i]
		if r.err != nil {
			if !errors.Is(r.err, errNotSupported) {
				failed = append(failed, app.Name)
				b.log.Warn("list failed", "app", app.Name, "method", listSpecs[k].method, "error", r.err)
			}
			continue
		}
		// Learned in configuration order, so the first app keeps a name
		// that two offer, whichever answered first.
		refused := c.State.learn(c.gen.catalog, app, k, r.visible, cursors[app.Name] == "", &page)
		if refused.count > 0 {
			b.log.Warn("list items left out: their URIs are another app's, lie outside the app's resourceNamespace, or are too long to route",
				"app", app.Name, "method", listSpecs[k].method, "item", refused.first, "count", refused.count)
		}
		if r.page.Next != "" {
			if page.next == nil {
				page.next = make(map[string]string)
			}
			page.next[app.Name] = r.page.Next
		}
	}
	if cursors == nil && len(failed) == 0 {
		c.State.markListed(k)
	}
	if len(failed) > 0 && len(failed) == len(targets) {
		return page, fmt.Errorf("%w: %s", ErrUpstreamFailed, strings.Join(failed, ", "))
	}
	return page, nil
}

// errNotSupported marks an app that does not offer a list at all.
var errNotSupported = errors.New("list not supported")

// listApp returns one page of one app's list, before the policy: from the
// app's list cache, or asked of the upstream in this session's upstream
// session (opened now if this is its first need of the app). An app that
// said at its latest initialize that it does not offer the list is not
// asked.
func (b *Broker) listApp(ctx context.Context, c *Call, app *apps.App, k listKind, cursor string) (*apps.ListPage, error) {
	if r := app.Info(); r != nil && !offers(r.Capabilities, k) {
		return nil, errNotSupported
	}
	if err := app.Available(); err != nil {
		// What it listed before is not shown while it does not answer.
		return nil, fmt.Errorf("apps: %s: %w", app.Name, err)
	}
	page, outcome, err := app.Lists.Page(ctx, uint8(k), listCaller(c), cursor, func() (*apps.ListPage, error) {
		return b.fetchList(ctx, c, app, k, cursor)
	})
	b.metrics.ListCache(app.Name, outcome)
	return page, err
}

// listCaller keys an app's lists kept for one caller: the token's issuer,
// subject and client, everything an exchanged token tells the upstream.
func listCaller(c *Call) string {
	p := c.Principal
	if p == nil {
		return ""
	}
	return p.Issuer + "\x00" + p.Subject + "\x00" + p.ClientID
}

// fetchList asks the upstream for one page of a list and reads each item
// once: names, URIs, the exposed name written in place.
func (b *Broker) fetchList(ctx context.Context, c *Call, app *apps.App, k listKind, cursor string) (*apps.ListPage, error) {
	conn, err := b.conn(ctx, c.Session, app)
	if err != nil {
		return nil, err
	}
	if r := conn.Result(); r != nil && !offers(r.Capabilities, k) {
		return nil, errNotSupported
	}
	var params json.RawMessage
	if cursor != "" {
		params, _ = json.Marshal(map[string]string{"cursor": cursor})
	}
	msg := &jsonrpc.Message{ID: jsonrpc.Int64ID(conn.NextID()), Method: listSpecs[k].method, Params: params}
	resp, err := conn.Call(ctx, msg, nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		if resp.Error.Code == jsonrpc.CodeMethodNotFound {
			return nil, errNotSupported
		}
		return nil, resp.Error
	}
	// The result came through the strict decoder with the response: its
	// members and items are read where they are written, once each.
	malformed := func(err error) error { return fmt.Errorf("malformed %s result: %w", listSpecs[k].method, err) }
	page := &apps.ListPage{}
	if raw, ok, err := jsonrpc.Member(resp.Result, "nextCursor"); err != nil {
		return nil, malformed(err)
	} else if ok {
		_ = json.Unmarshal(raw, &page.Next)
	}
	items, ok, err := jsonrpc.Member(resp.Result, listSpecs[k].field)
	if err != nil {
		return nil, malformed(err)
	}
	var refused refusedItems
	if ok {
		// Gathered in a reused slice, then kept in one of their number.
		scratch := listItemsPool.Get().(*[]apps.ListItem)
		defer func() {
			clear(*scratch)
			*scratch = (*scratch)[:0]
			listItemsPool.Put(scratch)
		}()
		trust := c.gen.trust[app.Name]
		checked := definitionKind(k) && trust.definitions()
		err = jsonrpc.Elements(items, func(raw []byte) error {
			item, ok, err := readListItem(app, k, raw)
			if err != nil {
				return err
			}
			if !ok {
				refused.add(item.Key)
				return nil
			}
			switch {
			case checked:
				if !b.checkDefinition(ctx, app, trust, k, item.Key, bytes.Clone(compactJSON(raw))).Serve {
					return nil // held: reported once per change by checkDefinition
				}
			case k == kindTool && (app.Modern() || bytes.Contains(raw, xMCPHeader)):
				// Kept for what a call reads of its tool's definition
				// beyond the trust checks: the arguments its schema marks
				// for Mcp-Param headers (every tool of a modern upstream,
				// so that a call finds its tool's either way).
				app.Definitions.Put(&apps.Definition{Kind: string(pinKinds[kindTool]), Name: item.Key, Raw: bytes.Clone(compactJSON(raw)), Pin: pinUnpinned, Serve: true})
			}
			*scratch = append(*scratch, item)
			return nil
		})
		if err != nil {
			return nil, malformed(err)
		}
		page.Items = slices.Clone(*scratch)
	}
	if refused.count > 0 {
		reason := fmt.Sprintf("their names are longer than %d bytes", maxNameBytes)
		if k == kindResource || k == kindTemplate {
			reason = "their URIs lie outside the app's resourceNamespace, in another app's, or are too long to route"
		}
		b.log.Warn("list items left out: "+reason,
			"app", app.Name, "method", listSpecs[k].method, "item", refused.first, "count", refused.count)
	}
	return page, nil
}

// listItemsPool holds the slices fetchList gathers a page's items in.
var listItemsPool = sync.Pool{New: func() any { return new([]apps.ListItem) }}

// readListItem reads what the broker needs of one item: a tool's or
// prompt's name (ok false when it is too long to show), a resource's URI,
// a template's URI template. The item is compacted, with the exposed name
// in place of the upstream's; nothing else of it changes.
func readListItem(app *apps.App, k listKind, raw json.RawMessage) (item apps.ListItem, ok bool, err error) {
	member := "name"
	switch k {
	case kindResource:
		member = "uri"
	case kindTemplate:
		member = "uriTemplate"
	}
	value, found, err := jsonrpc.Member(raw, member)
	if err != nil {
		return item, false, fmt.Errorf("malformed list item: %w", err)
	}
	var key string
	if found {
		if plainString(value) {
			key = string(value[1 : len(value)-1])
		} else if err := json.Unmarshal(value, &key); err != nil && (k == kindTool || k == kindPrompt) {
			return item, false, fmt.Errorf("malformed list item: %s is not a string", member)
		}
	}
	item.Key = key
	if (k == kindResource || k == kindTemplate) && !mayRoute(app, k, key) {
		return item, false, nil
	}
	if k == kindTool || k == kindPrompt {
		item.Name = key
		if len(key) > maxNameBytes {
			return item, false, nil
		}
		item.Exposed, item.Shortened = app.ExposedName(key)
		if item.Exposed != key {
			name, _ := jsonrpc.Marshal(item.Exposed)
			if raw, err = jsonrpc.SetMember(raw, "name", name); err != nil {
				return item, false, fmt.Errorf("malformed list item: %w", err)
			}
		}
	}
	item.Raw = compactJSON(raw)
	return item, true, nil
}

// plainString reports whether value, valid JSON, is a string without
// escapes, whose bytes between the quotes are its text.
func plainString(value []byte) bool {
	return len(value) >= 2 && value[0] == '"' && bytes.IndexByte(value[1:len(value)-1], '\\') < 0
}

// compactJSON drops the whitespace between the tokens of valid JSON, as
// json.Compact does; JSON that has none is returned as it is.
func compactJSON(b []byte) []byte {
	var out []byte // made at the first whitespace to drop
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			end := jsonrpc.StringEnd(b, i)
			if end < 0 {
				end = len(b) // not valid JSON: kept as it is
			}
			if out != nil {
				out = append(out, b[i:end]...)
			}
			i = end - 1
		case ' ', '\t', '\n', '\r':
			if out == nil {
				out = append(make([]byte, 0, len(b)), b[:i]...)
			}
		default:
			if out != nil {
				out = append(out, c)
			}
		}
	}
	if out == nil {
		return b
	}
	return out
}

// mayRoute reports whether a resource URI or template of an app's list
// can be shown at all, whatever else the session has learned: it lies in
// what the app may list, and when URIs are routed by lists, it is short
// enough to route by.
func mayRoute(app *apps.App, k listKind, uri string) bool {
	if k == kindTemplate {
		uri, _, _ = strings.Cut(uri, "{")
	}
	if uri == "" || !app.MayList(uri) {
		return false
	}
	return !app.SharesURIs() || len(apps.FoldURI(uri)) <= maxRoutedURIBytes
}

func offers(caps apps.Capabilities, k listKind) bool {
	switch k {
	case kindTool:
		return caps.Tools != nil
	case kindPrompt:
		return caps.Prompts != nil
	}
	return caps.Resources != nil
}

// learn adds to page the items of an app's page the session may show, and
// records what routing needs of them: which app serves a name that
// carries no prefix, the upstream's name of a shortened one, which app
// serves a resource URI or template.
//
// Names never collide in what clients see: an item whose exposed name
// another unprefixed app already holds, or that an unprefixed app offers
// under another app's prefix, is left out (prefixed apps' names cannot
// meet: configuration keeps prefixes apart). Resources and templates
// whose URIs are another app's (uri_routes.go) are left out and counted
// in refused.
func (st *sessionState) learn(catalog *apps.Catalog, app *apps.App, k listKind, items []*apps.ListItem, firstPage bool, page *listPage) (refused refusedItems) {
	st.mu.Lock()
	defer st.mu.Unlock()
	key := shortenedKey{app, k}
	if firstPage && st.shortened != nil {
		delete(st.shortened, key) // a new listing: only what it shows is kept
	}
	// Routes by name matter only between apps without a prefix; a
	// prefixed app's names are routed by their prefix.
	routeNames := app.Prefix == "" && len(catalog.Unprefixed()) > 1
	for _, item := range items {
		switch k {
		case kindTool, kindPrompt:
			if app.Prefix == "" {
				if other, _, shadowed := catalog.ByPrefix(item.Exposed); shadowed && other != app {
					continue // calls by this name would go to the other app
				}
			}
			if routeNames {
				routes := st.namedRoutes(k)
				if owner, taken := routes[item.Exposed]; taken && owner != app {
					continue // another app holds the name
				}
				if len(routes) < maxRoutes {
					routes[item.Exposed] = app
				}
			}
			if item.Shortened || app.MaybeShortened(item.Exposed) {
				// Also a name that only looks shortened: its calls are
				// routed by this record, not by listing again.
				st.rememberShortened(key, item.Exposed, item.Name)
			}
		case kindResource:
			if !st.learnResource(app, item.Key) {
				refused.add(item.Key)
				continue
			}
		case kindTemplate:
			if !st.learnTemplate(app, item.Key) {
				refused.add(item.Key)
				continue
			}
		}
		page.items = append(page.items, item.Raw)
		page.bytes += len(item.Raw)
	}
	return refused
}

// namedRoutes returns the session's routes of tool or prompt names,
// made on first use; st.mu is held.
func (st *sessionState) namedRoutes(k listKind) map[string]*apps.App {
	routes := &st.tools
	if k == kindPrompt {
		routes = &st.prompts
	}
	if *routes == nil {
		*routes = make(map[string]*apps.App)
	}
	return *routes
}

// rememberShortened records the upstream's name of a shortened name the
// session was shown; st.mu is held.
func (st *sessionState) rememberShortened(key shortenedKey, exposed, name string) {
	if st.shortened == nil {
		st.shortened = make(map[shortenedKey]map[string]string)
	}
	names := st.shortened[key]
	if names == nil {
		names = make(map[string]string)
		st.shortened[key] = names
	}
	if len(names) < maxRoutes {
		names[exposed] = name
	}
}

// refusedItems counts the items learn left out for their names or URIs,
// and keeps the first (shortened) for the log.
type refusedItems struct {
	count int
	first string
}

func (r *refusedItems) add(nameOrURI string) {
	if r.count == 0 {
		const keep = 256
		if len(nameOrURI) > keep {
			nameOrURI = nameOrURI[:keep] + "..."
		}
		r.first = nameOrURI
	}
	r.count++
}

// Cursors are opaque to clients: base64url of the apps' own cursors.
func encodeCursor(next map[string]string) string {
	raw, _ := json.Marshal(next)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeCursor(catalog *apps.Catalog, cursor string) (map[string]string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) > 64<<10 {
		return nil, ErrInvalidCursor
	}
	var next map[string]string
	if err := jsonrpc.Unmarshal(raw, &next); err != nil || len(next) == 0 {
		return nil, ErrInvalidCursor
	}
	for name := range next {
		if catalog.App(name) == nil {
			return nil, ErrInvalidCursor
		}
	}
	return next, nil
}

// each runs f for every app concurrently and waits for all of them.
func each(list []*apps.App, f func(*apps.App)) {
	eachIndex(len(list), func(i int) { f(list[i]) })
}

// eachIndex runs f for 0..n-1 concurrently and waits for all of them.
func eachIndex(n int, f func(int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// filterList keeps the items the app's policy would allow this caller to
// use: an agent is not shown what it may not call.
func (b *Broker) filterList(ctx context.Context, c *Call, app *apps.App, k listKind, items []apps.ListItem) []*apps.ListItem {
	kept := make([]*apps.ListItem, 0, len(items))
	policy := c.listPolicyFor(app, k)
	recorded := b.audit != nil // the hidden names are for the audit record only
	for i := range items {
		item := &items[i]
		if policy != nil && !policy.allowed(ctx, item.Key) {
			if recorded {
				c.hide(app.Name + "/" + item.Key)
			}
			continue
		}
		kept = append(kept, item)
	}
	return kept
}

// xMCPHeader marks a schema property whose argument travels in a header.
var xMCPHeader = []byte(`"x-mcp-header"`)
