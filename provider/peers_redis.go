package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// peerCopyTTL is how long a stream's shared copy outlives its last
	// event: long enough for a client to come back, short enough that
	// Redis never keeps copies nobody reads.
	peerCopyTTL = 10 * time.Minute
	// maxPeerCopyEvents bounds a shared copy like a stream's own replay.
	maxPeerCopyEvents = 2 * maxStreamEvents
)

// NewRedisPeers connects replicas through Redis: one publish/subscribe
// channel carries what they tell each other, and a list per stream holds
// the events copied out for a client resuming it elsewhere, which Redis
// expires.
func NewRedisPeers(client redis.UniversalClient, keyPrefix string) Peers {
	return &redisPeers{client: client, channel: keyPrefix + "peers", prefix: keyPrefix + "stream:"}
}

type redisPeers struct {
	client  redis.UniversalClient
	channel string
	prefix  string
}

func (r *redisPeers) Publish(ctx context.Context, m PeerMessage) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	if err := r.client.Publish(ctx, r.channel, data).Err(); err != nil {
		return fmt.Errorf("provider: peers in redis: %w", err)
	}
	return nil
}

func (r *redisPeers) Run(ctx context.Context, deliver func(PeerMessage), ready func()) {
	sub := r.client.Subscribe(ctx, r.channel)
	defer sub.Close()
	// The subscription is confirmed before anything is published that
	// this replica must hear; with Redis down, ready comes after a while
	// and the client subscribes once Redis is back.
	confirm, cancel := context.WithTimeout(ctx, peerReadyWait)
	_, _ = sub.Receive(confirm)
	cancel()
	ready()
	// The client resubscribes by itself after Redis comes back. A replica
	// slow to take messages leaves them with Redis, which bounds what it
	// keeps for a subscriber.
	messages := sub.Channel(redis.WithChannelSize(maxPeerDeliveries))
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-messages:
			if !ok {
				return
			}
			var m PeerMessage
			if len(msg.Payload) <= 2*maxPeerMessageBytes && json.Unmarshal([]byte(msg.Payload), &m) == nil {
				deliver(m)
			}
		}
	}
}

func (r *redisPeers) key(session, stream string) string { return r.prefix + session + ":" + stream }

// An event is stored as its sequence number, a space, "f" for the final
// marker or "e" for an event, a newline, then its data.
func encodePeerEvent(e PeerEvent) string {
	kind := "e"
	if e.Final {
		kind = "f"
	}
	return strconv.Itoa(e.Seq) + " " + kind + "\n" + string(e.Data)
}

func decodePeerEvent(s string) (PeerEvent, bool) {
	head, data, ok := strings.Cut(s, "\n")
	if !ok {
		return PeerEvent{}, false
	}
	seqText, kind, ok := strings.Cut(head, " ")
	seq, err := strconv.Atoi(seqText)
	if !ok || err != nil {
		return PeerEvent{}, false
	}
	e := PeerEvent{Seq: seq, Final: kind == "f"}
	if data != "" {
		e.Data = []byte(data)
	}
	return e, true
}

func (r *redisPeers) Append(ctx context.Context, session, stream string, events []PeerEvent) error {
	if len(events) == 0 {
		return nil
	}
	values := make([]any, len(events))
	for i, e := range events {
		values[i] = encodePeerEvent(e)
	}
	key := r.key(session, stream)
	notice, err := json.Marshal(PeerMessage{Kind: PeerEvents, Session: session, Stream: stream})
	if err != nil {
		return err
	}
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, key, values...)
		p.LTrim(ctx, key, -maxPeerCopyEvents, -1)
		p.Expire(ctx, key, peerCopyTTL)
		p.Publish(ctx, r.channel, notice)
		return nil
	})
	if err != nil {
		return fmt.Errorf("provider: peers in redis: %w", err)
	}
	return nil
}

func (r *redisPeers) Events(ctx context.Context, session, stream string) ([]PeerEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	raw, err := r.client.LRange(ctx, r.key(session, stream), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("provider: peers in redis: %w", err)
	}
	events := make([]PeerEvent, 0, len(raw))
	for _, s := range raw {
		if e, ok := decodePeerEvent(s); ok {
			events = append(events, e)
		}
	}
	return events, nil
}
