package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

// subOpts are the options of one subscription, as the client sent them.
type subOpts struct {
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32 // v5 Subscription Identifier; 0 means none

	// durable: the subscription is counted in the cluster as a durable route (see
	// Server.subscribe), so that it is removed as the kind it was added as.
	durable bool
}

// delivery is one message on its way to one session, with what this subscriber sees of it.
type delivery struct {
	msg    *message
	qos    byte
	retain bool
	subIDs []uint32
	// seq is the message's sequence number in a persistent session's log (persist.go), 0 for
	// a delivery of the memory path. dup: it may have been sent before (a resumed session).
	seq uint64
	dup bool
	rel bool // a log message whose PUBREC was received: its PUBREL is due, not the PUBLISH
	// enc, when set, shares one encoding of a QoS 0 delivery among the subscribers of one routed
	// message. It lives only for that routing call and is never queued.
	enc *sharedEncoding
}

// sharedEncoding holds the encodings of one QoS 0 PUBLISH, one per protocol family, made on first
// use. A PUBLISH to many subscribers is thus encoded at most twice, not once per subscriber.
type sharedEncoding struct {
	v3, v5 []byte
}

// get returns the encoding of p for version v, making it on first use.
func (e *sharedEncoding) get(v mqtt.Version, p *mqtt.Publish) []byte {
	b := &e.v3
	if v == mqtt.V5 {
		b = &e.v5
	}
	if *b == nil {
		*b = p.AppendHeader(make([]byte, 0, p.Size(v)), v)
		*b = append(*b, p.Payload...)
	}
	return *b
}

// inflight is a QoS 1/2 message sent to the client and not yet fully acknowledged.
type inflight struct {
	id       uint16
	d        delivery
	released bool // QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP
}

// session is the state the broker keeps for one client id, connected or not [MQTT-4.1]. A
// persistent one (stored) also lives in the SessionStore, which holds its QoS 1/2 messages
// (persist.go); a clean one lives in memory only.
type session struct {
	ID  string
	srv *Server
	// username is the user name of the connection that last attached (for the ACL); written
	// under Server.mu before the connection takes the session over.
	username string
	// client is the connection using the session, nil while offline. It is written with mu held
	// and read without it on the QoS 0 path.
	client atomic.Pointer[client]

	// mu guards everything that follows.
	mu       sync.Mutex
	subs     map[string]subOpts // filter as subscribed ($share form included) -> options
	inflight []*inflight        // sent QoS 1/2 messages in send order
	queue    []delivery         // waiting for the inflight window or for the client to return
	qBytes   int64
	nextID   uint16
	// inQoS2 are QoS 2 packet ids received and PUBREC'd, waiting for PUBREL [MQTT-4.3.3-8],
	// with the message id (a persistent session's are in the store too).
	inQoS2 map[uint16]bus.MessageID
	// expiry is how long the session outlives its connection; neverExpire means forever.
	expiry      time.Duration
	expiryTimer *time.Timer
	offlineAt   time.Time // when the connection last ended (the expiry counts from it)
	// will is a will waiting for its delay to pass while the session is offline.
	will      *message
	willTimer *time.Timer
	ended     bool // removed from the server; a late reconnect must make a new session

	// stored: a persistent session held in the SessionStore under claim epoch, incarnation inc;
	// lg is its place in its log (persist.go). stored is written with mu held and read without
	// it by the router.
	stored     atomic.Bool
	epoch, inc uint64
	lgp        *logState // see lg
}

// lg is the session's place in its log, made at first use: only persistent sessions have one,
// and a connection with a clean session does not carry its few hundred bytes. Called with mu
// held, or before anyone else uses the session.
func (s *session) lg() *logState {
	if s.lgp == nil {
		s.lgp = new(logState)
	}
	return s.lgp
}

const neverExpire = time.Duration(1<<63 - 1)

func newSession(srv *Server, id string) *session {
	return &session{ID: id, srv: srv, subs: make(map[string]subOpts)}
}

// nextPacketIDLocked returns a packet id not used by any inflight message [MQTT-2.2.1-3], nor by
// the next messages of the log (their ids follow their sequence numbers).
func (s *session) nextPacketIDLocked() (uint16, bool) {
	if len(s.inflight) >= 65535 {
		return 0, false
	}
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if s.findInflightLocked(s.nextID) < 0 && !s.logWillUseLocked(s.nextID) {
			return s.nextID, true
		}
	}
}

// logWillUseLocked reports whether id is the packet id of one of the next messages of a
// persistent session's log that may be sent soon.
func (s *session) logWillUseLocked(id uint16) bool {
	if !s.stored.Load() || s.lgp == nil || s.lgp.nextSeq == 0 {
		return false
	}
	d := (uint64(id) + 65535 - uint64(seqPacketID(s.lgp.nextSeq))) % 65535
	return d < readLow
}

func (s *session) removeInflightLocked(i int) {
	s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
	s.srv.stats.inflight.Add(-1)
}

func (s *session) findInflightLocked(id uint16) int {
	for i, f := range s.inflight {
		if f.id == id {
			return i
		}
	}
	return -1
}

// deliver hands one message to the session: straight to the connection for QoS 0, through the
// inflight window for QoS 1/2, into the queue when the window is full or the client is away.
// It returns false when the message was dropped (and counted).
func (s *session) deliver(d delivery, now time.Time, via *client) bool {
	if d.qos == mqtt.QoS0 {
		c := s.client.Load()
		if c == nil {
			// QoS 0 messages are not queued for offline sessions, as in mosquitto's default.
			return false
		}
		return c.sendPublish(d, 0, false, now, via)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	c := s.client.Load()
	if c != nil && len(s.queue) == 0 && len(s.inflight) < c.sendQuota {
		return s.sendInflightLocked(c, d, now, via)
	}
	return s.enqueueLocked(d)
}

func (s *session) enqueueLocked(d delivery) bool {
	d.enc = nil
	lim := s.srv.cfg
	if len(s.queue) >= lim.MaxQueuedMessages || (lim.MaxQueuedBytes > 0 && s.qBytes+d.msg.size() > lim.MaxQueuedBytes) {
		s.srv.stats.drop(dropQueueFull)
		return false
	}
	s.queue = append(s.queue, d)
	s.qBytes += d.msg.size()
	s.srv.stats.queued.Add(1)
	return true
}

func (s *session) sendInflightLocked(c *client, d delivery, now time.Time, via *client) bool {
	id, ok := s.nextPacketIDLocked()
	if !ok {
		return s.enqueueLocked(d)
	}
	return s.sendWithIDLocked(c, d, id, now, via)
}

func (s *session) sendWithIDLocked(c *client, d delivery, id uint16, now time.Time, via *client) bool {
	f := &inflight{id: id, d: d}
	if !c.sendPublish(d, id, d.dup, now, via) {
		// Too large for the client: a dropped message, as if acknowledged [MQTT-3.1.2-25]. The
		// connection going away is no drop for a log message: it stays in the log, read again
		// when the client is back.
		if d.seq != 0 && !c.closed.Load() && !c.out.isClosed() {
			s.markDoneLocked(d.seq)
		}
		return false
	}
	s.inflight = append(s.inflight, f)
	s.srv.stats.inflight.Add(1)
	return true
}

// fillWindowLocked moves queued messages into the inflight window while it has room, and reads
// more of a persistent session's log when few wait.
func (s *session) fillWindowLocked(now time.Time, via *client) {
	c := s.client.Load()
	if c == nil {
		return
	}
	n := 0
	for n < len(s.queue) && len(s.inflight) < c.sendQuota {
		d := s.queue[n]
		if d.seq != 0 && s.findInflightLocked(seqPacketID(d.seq)) >= 0 {
			// Its packet id is still in use (a message 65535 further back was never
			// acknowledged): wait for it.
			break
		}
		s.queue[n] = delivery{}
		n++
		s.qBytes -= d.msg.size()
		if d.rel {
			s.inflight = append(s.inflight, &inflight{id: seqPacketID(d.seq), d: d, released: true})
			s.srv.stats.inflight.Add(1)
			c.sendAck(mqtt.PUBREL, seqPacketID(d.seq), mqtt.Success)
			continue
		}
		if d.seq != 0 {
			if !s.deliverableLocked(d, now) {
				s.markDoneLocked(d.seq)
				continue
			}
			s.sendWithIDLocked(c, d, seqPacketID(d.seq), now, via)
			continue
		}
		if d.msg.expired(now) {
			s.srv.stats.drop(dropExpired)
			continue
		}
		s.sendInflightLocked(c, d, now, via)
	}
	if n > 0 {
		s.queue = append(s.queue[:0], s.queue[n:]...)
		s.srv.stats.queued.Add(int64(-n))
	}
	if s.stored.Load() {
		s.readLogLocked()
	}
}

// ack handles PUBACK (qos 1) and PUBCOMP (qos 2): the message is done and the window moves.
func (s *session) ack(id uint16, wantReleased bool, via *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.findInflightLocked(id)
	if i < 0 || s.inflight[i].released != wantReleased || (!wantReleased && s.inflight[i].d.qos != mqtt.QoS1) {
		return false
	}
	seq := s.inflight[i].d.seq
	s.removeInflightLocked(i)
	if seq != 0 {
		s.markDoneLocked(seq)
	}
	s.fillWindowLocked(time.Now(), via)
	return true
}

// received handles PUBREC: the message moves to its release phase and the PUBREL is sent, for a
// persistent session's log message once that is written. failed is a v5 PUBREC with an error
// reason code, which ends the exchange [MQTT-4.3.3-4]. It returns false for an unknown id.
func (s *session) received(id uint16, failed bool, via *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.findInflightLocked(id)
	if i < 0 || s.inflight[i].d.qos != mqtt.QoS2 {
		return false
	}
	f := s.inflight[i]
	if failed {
		s.removeInflightLocked(i)
		if f.d.seq != 0 {
			s.markDoneLocked(f.d.seq)
		}
		s.fillWindowLocked(time.Now(), via)
		return true
	}
	if f.d.seq != 0 {
		if !f.released {
			f.released = true
			s.releaseLocked(f.d.seq, id, via)
		}
		return true
	}
	f.released = true
	via.sendAck(mqtt.PUBREL, id, mqtt.Success)
	return true
}

// resumeLocked resends what the previous connection left unacknowledged, with DUP set on PUBLISH
// [MQTT-4.4.0-1], then moves queued messages into the window.
func (s *session) resumeLocked(c *client, now time.Time) {
	if s.srv.auth != nil && len(s.queue) > 0 {
		kept := s.queue[:0]
		for _, d := range s.queue {
			if s.srv.allowed(s.ID, s.username, d.msg.Topic, auth.Read) {
				kept = append(kept, d)
				continue
			}
			s.qBytes -= d.msg.size()
			s.srv.stats.queued.Add(-1)
			s.srv.stats.drop(dropNotAuthorized)
		}
		clear(s.queue[len(kept):])
		s.queue = kept
	}
	if s.srv.auth != nil {
		// Unacknowledged messages are sent again below; those the client may no longer read are
		// dropped instead (a QoS 2 message already released stays: it was delivered).
		for i := len(s.inflight) - 1; i >= 0; i-- {
			f := s.inflight[i]
			if !f.released && !s.srv.allowed(s.ID, s.username, f.d.msg.Topic, auth.Read) {
				s.removeInflightLocked(i)
				s.srv.stats.drop(dropNotAuthorized)
			}
		}
	}
	for _, f := range s.inflight {
		if f.released {
			c.sendAck(mqtt.PUBREL, f.id, mqtt.Success)
			continue
		}
		c.sendPublish(f.d, f.id, true, now, c)
	}
	s.fillWindowLocked(now, c)
}

// subscriptions returns a copy of the session's subscriptions.
func (s *session) subscriptions() map[string]subOpts {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]subOpts, len(s.subs))
	for k, v := range s.subs {
		m[k] = v
	}
	return m
}

func (s *session) subscriptionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

func (s *session) hasSubscription(filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.subs[filter]
	return ok
}
