package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// The operators' management requests (pkg/wire admin.go), as the health gateway sends them to
// every replica through the bus: list and look at the clients this replica holds, kick one, ban
// (bans.go), drop a retained message from this replica's copy, publish a message. HandleAdmin
// is the replica's bus.Options.OnRequest.

// maxClientsPage bounds the clients one answer lists.
const maxClientsPage = 1000

// kickWait bounds how long a kick waits for the connection's teardown.
const kickWait = 3 * time.Second

// HandleAdmin answers one management request.
func (s *Server) HandleAdmin(ctx context.Context, op string, body []byte) (any, error) {
	switch op {
	case wire.OpClients:
		var q wire.ClientsQuery
		if err := decodeAdmin(body, &q); err != nil {
			return nil, err
		}
		return s.adminClients(q), nil
	case wire.OpSession, wire.OpKick:
		var ref wire.ClientRef
		if err := decodeAdmin(body, &ref); err != nil {
			return nil, err
		}
		if op == wire.OpKick {
			return s.kick(ctx, func(c *client) bool { return c.id == ref.ClientID }), nil
		}
		return s.adminSession(ref.ClientID)
	case wire.OpBan, wire.OpUnban:
		var b wire.Ban
		if err := decodeAdmin(body, &b); err != nil {
			return nil, err
		}
		return s.adminBan(ctx, op, b)
	case wire.OpRetainedDelete:
		var ref wire.RetainedRef
		if err := decodeAdmin(body, &ref); err != nil {
			return nil, err
		}
		// Dropped from this replica's copy unless a newer one arrived meanwhile; the gateway
		// removes it from Redis.
		s.retained.setNewer(&message{Topic: ref.Topic, Created: time.Now()})
		return nil, nil
	case wire.OpPublish:
		var p wire.PublishRequest
		if err := decodeAdmin(body, &p); err != nil {
			return nil, err
		}
		return nil, s.adminPublish(&p)
	}
	return nil, errors.New(wire.ErrTextUnknownOp)
}

func decodeAdmin(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

// connected returns the clients connected now whose session this replica holds.
func (s *Server) connected() []*client {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*client, 0, len(s.sessions))
	for _, sess := range s.sessions {
		if c := sess.client.Load(); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// adminClients lists the connected clients q selects, in client id order.
func (s *Server) adminClients(q wire.ClientsQuery) wire.ClientsPage {
	limit := q.Limit
	if limit <= 0 || limit > maxClientsPage {
		limit = maxClientsPage
	}
	var page wire.ClientsPage
	for _, c := range s.connected() {
		if c.id <= q.After && q.After != "" {
			continue
		}
		ci := s.clientInfo(c)
		if q.Matches(&ci) {
			page.Clients = append(page.Clients, ci)
		}
	}
	slices.SortFunc(page.Clients, func(a, b wire.ClientInfo) int { return strings.Compare(a.ClientID, b.ClientID) })
	if len(page.Clients) > limit {
		page.Clients, page.More = page.Clients[:limit], true
	}
	if page.Clients == nil {
		page.Clients = []wire.ClientInfo{}
	}
	return page
}

// clientInfo describes connection c.
func (s *Server) clientInfo(c *client) wire.ClientInfo {
	ci := wire.ClientInfo{ClientID: c.id, Username: c.username, Replica: s.cfg.ID,
		Protocol: c.version.String(), ConnectedAt: c.since.UTC(), KeepAlive: int(c.keepAlive / time.Second)}
	if a := c.conn.RemoteAddr(); a != nil {
		ci.RemoteAddr = a.String()
	}
	if sess := c.sess; sess != nil {
		ci.Persistent = sess.stored.Load()
		sess.mu.Lock()
		ci.Subscriptions, ci.Inflight, ci.Queued = len(sess.subs), len(sess.inflight), len(sess.queue)
		sess.mu.Unlock()
	}
	return ci
}

// adminSession describes the session of id, if this replica holds it. The locks are held while
// it reads: a reconnect writes the session's expiry under the server's lock, a disconnect under
// the session's.
func (s *Server) adminSession(id string) (*wire.SessionInfo, error) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return nil, errors.New(wire.ErrTextNotHere)
	}
	si := &wire.SessionInfo{ClientID: id, Replica: s.cfg.ID, Subscriptions: []wire.Subscription{}}
	if c := sess.client.Load(); c != nil {
		ci := s.clientInfo(c)
		si.Connected, si.Client = true, &ci
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.mu.Lock()
	defer sess.mu.Unlock()
	switch sess.expiry {
	case neverExpire:
		si.ExpirySeconds = -1
	default:
		si.ExpirySeconds = int64(sess.expiry / time.Second)
		if !si.Connected && !sess.offlineAt.IsZero() {
			at := sess.offlineAt.Add(sess.expiry).UTC()
			si.ExpiresAt = &at
		}
	}
	for f, o := range sess.subs {
		si.Subscriptions = append(si.Subscriptions, wire.Subscription{Filter: f, QoS: o.QoS, NoLocal: o.NoLocal,
			RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling, SubscriptionID: o.SubID})
	}
	slices.SortFunc(si.Subscriptions, func(a, b wire.Subscription) int { return strings.Compare(a.Filter, b.Filter) })
	si.Inflight, si.Queued, si.QueuedBytes = len(sess.inflight), len(sess.queue), sess.qBytes
	return si, nil
}

// kick disconnects every connected client match selects (v5: DISCONNECT 0x98 Administrative
// action; 3.x: the connection is closed) and waits, a few seconds at most, until they are gone.
func (s *Server) kick(ctx context.Context, match func(*client) bool) wire.KickResult {
	res := wire.KickResult{Kicked: []string{}}
	var kicked []*client
	for _, c := range s.connected() {
		if match(c) {
			c.setReason(discKicked)
			c.event(c.srv.log.Info()).Msg("client kicked by an operator")
			go c.sendDisconnect(mqtt.AdministrativeAction)
			kicked = append(kicked, c)
			res.Kicked = append(res.Kicked, c.id)
		}
	}
	t := time.NewTimer(kickWait)
	defer t.Stop()
	for _, c := range kicked {
		select {
		case <-c.done:
		case <-t.C:
			return res
		case <-ctx.Done():
			return res
		}
	}
	slices.Sort(res.Kicked)
	return res
}

// adminPublish publishes an operator's message from this replica, as the broker itself (no
// publisher: no-local does not apply; the ACL is not asked).
func (s *Server) adminPublish(p *wire.PublishRequest) error {
	if err := topic.ValidateName(p.Topic); err != nil {
		return fmt.Errorf("topic: %w", err)
	}
	if topic.IsSystem(p.Topic) {
		return errors.New("topic: $-topics belong to the broker")
	}
	if p.QoS > 2 {
		return fmt.Errorf("qos %d: want 0, 1 or 2", p.QoS)
	}
	if len(p.Payload) > s.cfg.MaxPacketSize {
		return fmt.Errorf("payload of %d bytes: larger than BROKER_MAX_PACKET_SIZE", len(p.Payload))
	}
	m := &message{ID: bus.NewMessageID(), Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain,
		Created: time.Now()}
	if p.ContentType != "" || len(p.UserProps) > 0 {
		m.Props = &messageProps{ContentType: p.ContentType}
		if p.ContentType != "" {
			m.Props.Present |= 1 << mqtt.PropContentType
		}
		keys := make([]string, 0, len(p.UserProps))
		for k := range p.UserProps {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			m.Props.User = append(m.Props.User, mqtt.UserProperty{Key: k, Value: p.UserProps[k]})
		}
		if len(keys) > 0 {
			m.Props.Present |= 1 << mqtt.PropUserProperty
		}
	}
	s.publish(m, nil, nil)
	return nil
}
