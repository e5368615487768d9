package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

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

	// With Redis, replicas tell each other on channel <prefix>lists; each
	// ignores what it published itself (replica).
	redis   redis.UniversalClient
	channel string
	replica string
}

// listChangeNotice is what a replica publishes of an upstream's
// list_changed.
type listChangeNotice struct {
	Replica string `json:"r"`
	App     string `json:"a"`
	Method  string `json:"m"`
}

// publish tells the other replicas; a failure is logged, and their lists
// are refreshed by their ttl.
func (lc *listChanges) publish(app, method string, log *slog.Logger) {
	if lc.redis == nil {
		return
	}
	payload, _ := json.Marshal(listChangeNotice{Replica: lc.replica, App: app, Method: method})
	ctx, cancel := context.WithTimeout(context.Background(), redisIOTimeout)
	defer cancel()
	if err := lc.redis.Publish(ctx, lc.channel, payload).Err(); err != nil {
		log.Warn("an upstream's list_changed cannot be passed to the other replicas; their lists are refreshed by listCache.ttl", "app", app, "error", err)
	}
}

// listenForListChanges applies the other replicas' notices until ctx ends,
// subscribing again after Redis comes back.
func (b *Broker) listenForListChanges(ctx context.Context) {
	lc := &b.listChanges
	if lc.redis == nil {
		return
	}
	go func() {
		for ctx.Err() == nil {
			sub := lc.redis.Subscribe(ctx, lc.channel)
			for msg := range sub.Channel() {
				var n listChangeNotice
				if json.Unmarshal([]byte(msg.Payload), &n) != nil || n.Replica == lc.replica {
					continue
				}
				if app := b.current().catalog.App(n.App); app != nil {
					b.dropLists(app, n.Method)
				}
			}
			_ = sub.Close()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
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
// names, counts it, tells the sessions, and with Redis the other replicas.
func (b *Broker) listChanged(app *apps.App, method string) {
	list, _, ok := listChangedKinds(method)
	if !ok {
		return
	}
	b.metrics.ListChanged(app.Name, list)
	b.listChanges.publish(app.Name, method, b.log)
	b.dropLists(app, method)
}

// dropLists drops the app's kept pages of the lists a list_changed names
// and tells the listening sessions, at most once a second.
func (b *Broker) dropLists(app *apps.App, method string) {
	_, kinds, ok := listChangedKinds(method)
	if !ok {
		return
	}
	for _, k := range kinds {
		app.Lists.Invalidate(uint8(k))
	}
	// The definitions read from those lists are checked again at the
	// next listing or call.
	app.Definitions.Forget()
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

// randomReplicaID names this process among the replicas.
func randomReplicaID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
