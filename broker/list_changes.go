package broker

import (
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// listChangedKinds maps an upstream's list_changed notification to the
// kinds of list whose kept pages it makes stale.
func listChangedKinds(method string) (list string, kinds []listKind, ok bool) {
	switch method {
	case "notifications/tools/list_changed":
		return "tools", []listKind{kindTool}, true
	case "notifications/prompts/list_changed":
		return "prompts", []listKind{kindPrompt}, true
	case "notifications/resources/list_changed":
		return "resources", []listKind{kindResource, kindTemplate}, true
	}
	return "", nil, false
}

// listChangedEvery bounds how often one app's list_changed of one kind is
// passed on to every session: an upstream that sends them without end
// makes at most one round of notifications a second.
const listChangedEvery = time.Second

// maxListChangeKeys is the number of app and list pairs remembered before
// the stale ones are dropped.
const maxListChangeKeys = 1024

// listChanges passes an upstream's list_changed on to every session
// listening on its GET stream: their lists came from the same cache, now
// stale. One app's notices of one list are passed on at most once a
// second: a flood from an upstream reaches clients as a trickle.
type listChanges struct {
	mu      sync.Mutex
	pending map[listChangeKey]*listChangeState
}

type listChangeKey struct {
	app    *apps.App
	method string
}

type listChangeState struct {
	last     time.Time
	trailing bool // a round is scheduled for the end of the interval
}

// listChanged drops the app's kept pages of the lists the notification
// names, counts it, and tells the sessions.
func (b *Broker) listChanged(app *apps.App, method string) {
	list, kinds, ok := listChangedKinds(method)
	if !ok {
		return
	}
	for _, k := range kinds {
		app.Lists.Invalidate(uint8(k))
	}
	b.metrics.ListChanged(app.Name, list)
	lc := &b.listChanges
	key := listChangeKey{app, method}
	now := time.Now()
	lc.mu.Lock()
	if lc.pending == nil {
		lc.pending = make(map[listChangeKey]*listChangeState)
	}
	st := lc.pending[key]
	if st == nil {
		if len(lc.pending) >= maxListChangeKeys {
			// Apps a reload replaced leave their entries behind.
			for k, old := range lc.pending {
				if !old.trailing && now.Sub(old.last) > listChangedEvery {
					delete(lc.pending, k)
				}
			}
		}
		st = &listChangeState{}
		lc.pending[key] = st
	}
	if st.trailing {
		lc.mu.Unlock()
		return
	}
	if wait := st.last.Add(listChangedEvery).Sub(now); wait > 0 {
		st.trailing = true
		lc.mu.Unlock()
		time.AfterFunc(wait, func() {
			lc.mu.Lock()
			st.trailing, st.last = false, time.Now()
			lc.mu.Unlock()
			b.notifySessions(method)
		})
		return
	}
	st.last = now
	lc.mu.Unlock()
	b.notifySessions(method)
}

// notifySessions sends a notification without parameters on the
// standalone stream of every session this replica holds one of.
func (b *Broker) notifySessions(method string) {
	m := &jsonrpc.Message{Method: method}
	b.sessions.Range(func(key, _ any) bool {
		key.(*provider.Session).Notify(m)
		return true
	})
}
