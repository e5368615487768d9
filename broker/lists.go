package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
// still answer.
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
	result := map[string]any{listSpecs[k].field: page.items}
	if len(page.next) > 0 {
		result["nextCursor"] = encodeCursor(page.next)
	}
	raw, err := jsonrpc.Marshal(result) // items as the upstreams wrote them, unescaped
	if err != nil {
		return fmt.Errorf("broker: encode %s: %w", c.Message.Method, err)
	}
	c.Response = &jsonrpc.Message{Result: raw}
	return nil
}

// listPage is a merged page.
type listPage struct {
	items []json.RawMessage
	next  map[string]string // app name -> upstream cursor
}

// collect fetches one page of a list from each app (all apps, or those
// named in cursors), rewrites names, and learns routes.
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
		items []json.RawMessage
		next  string
		err   error
	}
	results := make([]result, len(targets))
	index := make(map[*apps.App]int, len(targets))
	for i, app := range targets {
		index[app] = i
	}
	each(targets, func(app *apps.App) {
		items, next, err := b.listApp(ctx, c, app, k, cursors[app.Name])
		results[index[app]] = result{items, next, err}
	})
	var page listPage
	var failed []string
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
		items, refused, err := c.State.learn(app, k, r.items, cursors[app.Name] == "", c.gen.catalog.ByPrefix)
		if err != nil {
			failed = append(failed, app.Name)
			b.log.Warn("list failed", "app", app.Name, "method", listSpecs[k].method, "error", err)
			continue
		}
		if refused.count > 0 {
			reason := "their URIs are another app's, lie outside the app's resourceNamespace, or are too long to route"
			if k == kindTool || k == kindPrompt {
				reason = fmt.Sprintf("their names are longer than %d bytes", maxNameBytes)
			}
			b.log.Warn("list items left out: "+reason,
				"app", app.Name, "method", listSpecs[k].method, "item", refused.first, "count", refused.count)
		}
		page.items = append(page.items, items...)
		if r.next != "" {
			if page.next == nil {
				page.next = make(map[string]string)
			}
			page.next[app.Name] = r.next
		}
	}
	if page.items == nil {
		page.items = []json.RawMessage{}
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

// listApp fetches one page of one app's list.
func (b *Broker) listApp(ctx context.Context, c *Call, app *apps.App, k listKind, cursor string) ([]json.RawMessage, string, error) {
	conn, err := b.conn(ctx, c.Session, app)
	if err != nil {
		return nil, "", err
	}
	if r := conn.Result(); r != nil && !offers(r.Capabilities, k) {
		return nil, "", errNotSupported
	}
	var params json.RawMessage
	if cursor != "" {
		params, _ = json.Marshal(map[string]string{"cursor": cursor})
	}
	msg := &jsonrpc.Message{ID: jsonrpc.Int64ID(conn.NextID()), Method: listSpecs[k].method, Params: params}
	resp, err := conn.Call(ctx, msg, nil, nil)
	if err != nil {
		return nil, "", err
	}
	if resp.Error != nil {
		if resp.Error.Code == jsonrpc.CodeMethodNotFound {
			return nil, "", errNotSupported
		}
		return nil, "", resp.Error
	}
	var page struct {
		NextCursor string `json:"nextCursor"`
	}
	var fields map[string]json.RawMessage
	if err := jsonrpc.Unmarshal(resp.Result, &fields); err != nil {
		return nil, "", fmt.Errorf("malformed %s result: %w", listSpecs[k].method, err)
	}
	if raw, ok := fields["nextCursor"]; ok {
		_ = jsonrpc.Unmarshal(raw, &page.NextCursor)
	}
	var items []json.RawMessage
	if raw, ok := fields[listSpecs[k].field]; ok {
		if err := jsonrpc.Unmarshal(raw, &items); err != nil {
			return nil, "", fmt.Errorf("malformed %s result: %w", listSpecs[k].method, err)
		}
	}
	return b.filterList(ctx, c, app, k, items), page.NextCursor, nil
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

// learn rewrites tool and prompt names to the exposed ones and records which
// app serves each name, URI and template.
//
// Names never collide in what clients see: an item whose exposed name
// another app already holds, or that an unprefixed app offers under
// another app's prefix, is left out. Names longer than maxNameBytes, and
// resources and templates whose URIs are another app's (uri_routes.go),
// are left out and counted in refused.
func (st *sessionState) learn(app *apps.App, k listKind, items []json.RawMessage, firstPage bool, byPrefix func(string) (*apps.App, string, bool)) (kept []json.RawMessage, refused refusedItems, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	key := shortenedKey{app, k}
	if firstPage {
		delete(st.shortened, key) // a new listing: only what it shows is kept
	}
	kept = items[:0]
	for _, item := range items {
		switch k {
		case kindTool, kindPrompt:
			var head struct {
				Name string `json:"name"`
			}
			if err := jsonrpc.Unmarshal(item, &head); err != nil {
				return nil, refused, fmt.Errorf("malformed list item: %w", err)
			}
			if len(head.Name) > maxNameBytes {
				refused.add(head.Name)
				continue
			}
			exposed, shortened := app.ExposedName(head.Name)
			routes := st.tools
			if k == kindPrompt {
				routes = st.prompts
			}
			if owner, taken := routes[exposed]; taken && owner != app {
				continue // another app holds the name
			}
			if app.Prefix == "" {
				if other, _, shadowed := byPrefix(exposed); shadowed && other != app {
					continue // calls by this name would go to the other app
				}
			}
			if exposed != head.Name {
				// Only the name changes; the rest keeps the upstream's bytes.
				name, _ := jsonrpc.Marshal(exposed)
				renamed, err := jsonrpc.SetMember(item, "name", name)
				if err != nil {
					return nil, refused, fmt.Errorf("malformed list item: %w", err)
				}
				item = renamed
			}
			if len(routes) < maxRoutes {
				routes[exposed] = app
			}
			if shortened {
				if st.shortened == nil {
					st.shortened = make(map[shortenedKey]map[string]string)
				}
				names := st.shortened[key]
				if names == nil {
					names = make(map[string]string)
					st.shortened[key] = names
				}
				if len(names) < maxRoutes {
					names[exposed] = head.Name
				}
			}
		case kindResource:
			var head struct {
				URI string `json:"uri"`
			}
			if jsonrpc.Unmarshal(item, &head) != nil || !st.learnResource(app, head.URI) {
				refused.add(head.URI)
				continue
			}
		case kindTemplate:
			var head struct {
				URITemplate string `json:"uriTemplate"`
			}
			if jsonrpc.Unmarshal(item, &head) != nil || !st.learnTemplate(app, head.URITemplate) {
				refused.add(head.URITemplate)
				continue
			}
		}
		kept = append(kept, item)
	}
	return kept, refused, nil
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
	if len(list) == 1 {
		f(list[0])
		return
	}
	var wg sync.WaitGroup
	for _, app := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(app)
		}()
	}
	wg.Wait()
}

// filterList keeps the items the app's policy would allow this caller to
// use: an agent is not shown what it may not call.
func (b *Broker) filterList(ctx context.Context, c *Call, app *apps.App, k listKind, items []json.RawMessage) []json.RawMessage {
	if c.gen.authz == nil || c.gen.authz.policies[app.Name] == nil {
		return items
	}
	kept := items[:0]
	for _, item := range items {
		var head struct {
			Name        string `json:"name"`
			URI         string `json:"uri"`
			URITemplate string `json:"uriTemplate"`
		}
		if jsonrpc.Unmarshal(item, &head) != nil {
			continue
		}
		key := head.Name
		switch k {
		case kindResource:
			key = head.URI
		case kindTemplate:
			key = head.URITemplate
		}
		if b.allowedInList(ctx, c, app, k, key) {
			kept = append(kept, item)
			continue
		}
		c.hide(app.Name + "/" + key)
	}
	return kept
}
