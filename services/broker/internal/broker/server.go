package broker

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/cluster"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/iotcore"
)

// Server is one broker replica.
type Server struct {
	cfg      config.Config
	log      zerolog.Logger
	started  time.Time
	stats    counters
	router   *router
	retained *memoryRetained
	cluster  Cluster // the other replicas (standalone: none)
	// clustered: cluster is a real one (SetCluster), so messages may go to other replicas.
	clustered bool
	store     SessionStore                  // persistent sessions (memStore when alone)
	auth      *auth.Store                   // nil: everyone may do everything
	iot       *iotcore.Mode                 // the Cloud IoT Core compatible mode; nil: off
	jwt       *auth.JWT                     // nil: no JWT authentication
	peerName  func(net.Conn) (string, bool) // verified client-certificate CN, if any
	bans      banList                       // operators' bans (bans.go)

	// mu guards everything that follows.
	mu        sync.Mutex
	sessions  map[string]*session
	listeners []net.Listener
	conns     map[*client]struct{}
	closing   bool

	wg   sync.WaitGroup
	stop chan struct{}

	connSlots connSlots // connecting clients handled at once (connslots.go)
	stopOnce  sync.Once
}

// New returns a broker replica configured by cfg. It serves nothing until Serve is called.
func New(cfg config.Config, log zerolog.Logger, opts ...Option) *Server {
	s := &Server{
		cfg:       cfg,
		log:       log,
		started:   time.Now(),
		router:    newRouter(),
		retained:  newMemoryRetained(),
		sessions:  make(map[string]*session),
		conns:     make(map[*client]struct{}),
		stop:      make(chan struct{}),
		connSlots: newConnSlots(cfg.ConnectConcurrency),
	}
	s.router.srv = s
	s.cluster = newStandalone()
	s.store = newMemStore(cfg.MaxQueuedMessages+int(cfg.MaxInflight), host{s}.Wake, func() { s.stats.drop(dropQueueFull) })
	for _, o := range opts {
		o(s)
	}
	if cfg.SysInterval > 0 {
		s.goFunc(s.sysLoop)
	}
	return s
}

// Option changes a Server made by New.
type Option func(*Server)

// WithAuth makes the server authenticate clients and check every publish, subscription and
// delivery against st. Without it, every client may do everything.
func WithAuth(st *auth.Store) Option { return func(s *Server) { s.auth = st } }

// WithJWT makes the server accept JWT passwords, verified by j (see authenticate for the order of
// the methods). It needs WithAuth too.
func WithJWT(j *auth.JWT) Option { return func(s *Server) { s.jwt = j } }

// WithPeerName tells the server how to find the verified client-certificate common name of a
// connection, for BROKER_TLS_CN_AS_USERNAME.
func WithPeerName(f func(net.Conn) (string, bool)) Option { return func(s *Server) { s.peerName = f } }

// allowed asks the ACL; true without one. A device of the compatible mode has its own rules.
func (s *Server) allowed(clientID, username, topic string, a auth.Access) bool {
	if device, ok := s.deviceOf(clientID); ok {
		return deviceAllowed(device, topic, a)
	}
	return s.auth == nil || s.auth.Allowed(clientID, username, topic, a)
}

// checksACL reports whether allowed may say no: an ACL or the compatible mode is on.
func (s *Server) checksACL() bool { return s.auth != nil || s.iot != nil }

// goFunc starts f as a goroutine owned by the server: Close waits for it.
func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Serve accepts MQTT connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			select {
			case <-s.stop:
				return nil
			default:
			}
			if isTemporary(err) {
				// Back off on transient errors such as EMFILE instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0 // net sets TCP_NODELAY on every TCP connection it makes
		if lim := s.cfg.MaxConnections; lim > 0 && s.stats.connections.Load() >= int64(lim)+connectingSlack {
			// Far over the limit: not even worth reading a CONNECT to refuse it.
			s.stats.disconnects[discRefused].Add(1)
			_ = conn.Close()
			continue
		}
		c := newClient(s, conn)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = conn.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.stats.connections.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.serve()
		}()
	}
}

// connectingSlack is how many connections beyond MaxConnections may still be read, so that they
// are refused with a CONNACK saying why rather than just closed.
const connectingSlack = 256

// isTemporary reports whether an accept error is worth retrying (EMFILE, ENFILE, ECONNABORTED...).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Close stops the listeners, tells v5 clients the server is shutting down, lets queued output
// drain until ctx ends, and closes every connection. It is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	conns := make([]*client, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.shutdown(ctx)
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connDone forgets a connection that has finished.
func (s *Server) connDone(c *client, wasClient bool) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.stats.connections.Add(-1)
	if wasClient {
		s.stats.clients.Add(-1)
	}
}

// publish routes a message accepted from a client (or made by the broker, with from nil): retained
// store first, then every matching local subscription, then the other replicas, then the logs of
// the persistent sessions it matches. ack, when set, is released once every replica the message
// went to has it (Redis accepted it) and every persistent session it matched has it stored.
// matched tells whether it found any subscription for m, here, on another replica or in a
// persistent session.
func (s *Server) publish(m *message, from *client, ack *pendingAck) (matched bool) {
	if m.Retain {
		s.setRetained(m)
	}
	now := m.Created // a client's message was made just now (acceptPublish): no second clock read
	if from == nil {
		now = time.Now()
	}
	matched = s.router.route(m, now, from, nil, ack)
	var q2 *cluster.Q2
	if ack != nil && ack.t == mqtt.PUBREC && from.sess.stored.Load() {
		// The packet id is recorded in the publisher's session with the appends: a resend
		// after a crash is not delivered again.
		q2 = &cluster.Q2{Publisher: from.id, Epoch: from.sess.epoch, PacketID: ack.id}
	}
	hasDurable := m.QoS > 0 && s.store.Has(m.Topic)
	matched = matched || hasDurable
	if hasDurable || m.QoS > 0 && q2 != nil {
		bm := new(bus.Message)
		toBus(bm, m, s.cfg.ID)
		if ack != nil {
			ack.add()
			ack.durable = true
			s.store.Append(bm, q2, from.storeFailed.Load, ack.done)
		} else {
			s.store.Append(bm, nil, nil, func(err error) {
				if err != nil {
					s.stats.drop(dropClusterUnavailable)
				}
			})
		}
	}
	if s.cluster.Exports(m.Topic) {
		if from != nil {
			// Into the connection's own export batch, handed over once per burst of input.
			var bm bus.Message
			toBus(&bm, m, s.cfg.ID)
			from.export(&bm)
		} else {
			bm := new(bus.Message)
			toBus(bm, m, s.cfg.ID)
			s.cluster.Export(bm)
		}
	}
	return matched
}

// setRetained stores m as its topic's retained message, here and (for topics that travel
// between replicas) in the cluster.
func (s *Server) setRetained(m *message) {
	s.retained.Set(m)
	if forwardable(m.Topic) {
		var bm bus.Message
		toBus(&bm, m, s.cfg.ID)
		s.cluster.SetRetained(&bm)
	}
}

// subscribe adds or replaces one subscription of sess. wait, when not nil, returns once the
// other replicas route the filter here (see Cluster.AddFilter). A persistent session's
// non-shared subscription at QoS 1 or 2 is a durable route: the other replicas forward it only
// QoS 0 messages, its QoS 1/2 ones reach it through its log. retire, when not nil, removes the
// route of the kind the replaced subscription had: call it once the new one is in place
// (routed, and for a persistent session indexed), so that the flow of messages is never
// interrupted [MQTT-3.8.4-3].
func (s *Server) subscribe(sess *session, filter string, opts subOpts) (existed bool, wait, retire func()) {
	_, shared, _ := topic.ParseShare(filter)
	opts.durable = !shared && opts.QoS > 0 && sess.stored.Load()
	sess.mu.Lock()
	old, existed := sess.subs[filter]
	sess.subs[filter] = opts
	sess.mu.Unlock()
	_, _ = s.router.subs.Subscribe(filter, sess, opts)
	switch {
	case !existed:
		wait = s.cluster.AddFilter(filter, opts.durable)
	case old.durable != opts.durable:
		wait = s.cluster.AddFilter(filter, opts.durable)
		retire = func() { s.cluster.RemoveFilter(filter, old.durable) }
	}
	return existed, wait, retire
}

func (s *Server) unsubscribe(sess *session, filter string) bool {
	sess.mu.Lock()
	o, ok := sess.subs[filter]
	delete(sess.subs, filter)
	sess.mu.Unlock()
	if ok {
		s.router.subs.Unsubscribe(filter, sess)
		s.cluster.RemoveFilter(filter, o.durable)
	}
	return ok
}

// undurable turns the durable routes of a session that is no longer stored (a persistent
// session resumed as a clean one) into plain ones: its QoS 1/2 messages come over the bus again.
func (s *Server) undurable(sess *session) {
	sess.mu.Lock()
	var fs []string
	for f, o := range sess.subs {
		if o.durable {
			o.durable = false
			sess.subs[f] = o
			fs = append(fs, f)
			_, _ = s.router.subs.Subscribe(f, sess, o)
		}
	}
	sess.mu.Unlock()
	// Not waited for (the caller holds the server's lock): the route loop writes the
	// additions before the removals, and the other replicas apply them in that order.
	for _, f := range fs {
		_ = s.cluster.AddFilter(f, false)
		s.cluster.RemoveFilter(f, true)
	}
}

// capExpiry turns a v5 Session Expiry Interval into a duration, capped by MaxSessionExpiry.
func (s *Server) capExpiry(secs uint32) time.Duration {
	if secs == 0xFFFFFFFF && s.cfg.MaxSessionExpiry == 0 {
		return neverExpire
	}
	if s.cfg.MaxSessionExpiry > 0 && secs > s.cfg.MaxSessionExpiry {
		secs = s.cfg.MaxSessionExpiry
	}
	return time.Duration(secs) * time.Second
}

// endSessionLocked removes a session and its subscriptions, deletes it from the store, and
// publishes a will still waiting for its delay. Called with s.mu held.
func (s *Server) endSessionLocked(sess *session) {
	sess.mu.Lock()
	sess.endStoredLocked()
	sess.mu.Unlock()
	will := s.dropSessionLocked(sess, false)
	if will != nil {
		// A delayed will is sent at the latest when its session ends [MQTT-3.1.3-9].
		go s.publishWill(will)
	}
}

// dropSessionLocked removes a session from this replica's memory: from the session table and
// the index, timers stopped. It returns the delayed will it held, if any. disown: another claim
// holds the session now, so nothing more is written to the store (in the same critical section
// as ended, so that the router never sees a persistent session as a clean one that still
// takes deliveries). Called with s.mu held.
func (s *Server) dropSessionLocked(sess *session, disown bool) (will *message) {
	if s.sessions[sess.ID] == sess {
		delete(s.sessions, sess.ID)
	}
	sess.mu.Lock()
	sess.ended = true
	if disown {
		sess.stored.Store(false)
	}
	sess.client.Store(nil)
	subs := sess.subs
	sess.subs = map[string]subOpts{}
	s.stats.queued.Add(int64(-len(sess.queue)))
	s.stats.inflight.Add(int64(-len(sess.inflight)))
	sess.queue = nil
	sess.inflight = nil
	if sess.expiryTimer != nil {
		sess.expiryTimer.Stop()
	}
	will = sess.will
	sess.will = nil
	if sess.willTimer != nil {
		sess.willTimer.Stop()
	}
	if sess.lgp != nil && sess.lgp.retry != nil {
		sess.lgp.retry.Stop()
		sess.lgp.retry = nil
	}
	sess.mu.Unlock()
	for f, o := range subs {
		s.router.subs.Unsubscribe(f, sess)
		s.cluster.RemoveFilter(f, o.durable)
	}
	return will
}

// release lets go of session id: another replica claimed it, or this replica lost it. Its
// connection (if any) closes as taken over; the session leaves memory without being written
// (the store has it). cleanStart: the new owner starts afresh, so a delayed will is due now.
func (s *Server) release(id string, cleanStart bool) { s.releaseSession(id, nil, cleanStart) }

// releaseSession is release for the session object only (nil: whichever is held), so that a
// replica that lost an old session never lets go of the new one in its place.
func (s *Server) releaseSession(id string, only *session, cleanStart bool) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if only != nil && sess != only {
		return
	}
	if sess == nil {
		s.store.Released(id)() // held elsewhere now
		return
	}
	if cl := sess.client.Load(); cl != nil {
		cl.takenOver(cleanStart) // returns after the connection's teardown
	}
	sess.settleCommits(time.Now().Add(5 * time.Second)) // the new owner starts from all of it
	s.mu.Lock()
	var will *message
	if s.sessions[id] == sess && (only == nil || sess == only) {
		will = s.dropSessionLocked(sess, true) // the store belongs to the new owner
	}
	s.mu.Unlock()
	s.store.Released(id)() // held elsewhere now
	if cleanStart && will != nil {
		go s.publishWill(will) // the session ends: its delayed will goes now [MQTT-3.1.3-9]
	}
}
