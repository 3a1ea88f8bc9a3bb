package broker

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// Stats are the broker's counters; $SYS topics and metrics read them.
type Stats struct {
	connections       atomic.Int64 // open network connections
	clients           atomic.Int64 // connected MQTT clients (after CONNACK)
	connects          atomic.Int64
	msgsRecv          atomic.Int64
	msgsSent          atomic.Int64
	bytesRecv         atomic.Int64
	bytesSent         atomic.Int64
	droppedQueueFull  atomic.Int64
	droppedSlow       atomic.Int64
	droppedTooLarge   atomic.Int64
	droppedExpired    atomic.Int64
	droppedDenied     atomic.Int64
	slowConsumers     atomic.Int64
	protocolErrors    atomic.Int64
	keepAliveTimeouts atomic.Int64
	panics            atomic.Int64
	takeovers         atomic.Int64
	willsSent         atomic.Int64
}

// Server is one broker replica.
type Server struct {
	cfg      config.Config
	log      zerolog.Logger
	started  time.Time
	stats    Stats
	router   *router
	retained RetainedStore

	// mu guards everything that follows.
	mu        sync.Mutex
	sessions  map[string]*Session
	listeners []net.Listener
	conns     map[*client]struct{}
	closing   bool

	wg       sync.WaitGroup
	stop     chan struct{}
	stopOnce sync.Once
}

// New returns a broker replica configured by cfg. It serves nothing until Serve is called.
func New(cfg config.Config, log zerolog.Logger) *Server {
	s := &Server{
		cfg:      cfg,
		log:      log,
		started:  time.Now(),
		router:   newRouter(),
		retained: newMemoryRetained(),
		sessions: make(map[string]*Session),
		conns:    make(map[*client]struct{}),
		stop:     make(chan struct{}),
	}
	if cfg.SysInterval > 0 {
		s.goFunc(s.sysLoop)
	}
	return s
}

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
		delay = 0
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
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
// store first, then every matching local subscription.
func (s *Server) publish(m *Message, from *client) {
	if m.Retain {
		s.retained.Set(m)
	}
	s.router.route(m, time.Now(), from)
}

func (s *Server) subscribe(sess *Session, filter string, opts SubOpts) (existed bool) {
	sess.mu.Lock()
	_, existed = sess.subs[filter]
	sess.subs[filter] = opts
	sess.mu.Unlock()
	_, _ = s.router.subs.Subscribe(filter, sess, opts)
	return existed
}

func (s *Server) unsubscribe(sess *Session, filter string) bool {
	sess.mu.Lock()
	_, ok := sess.subs[filter]
	delete(sess.subs, filter)
	sess.mu.Unlock()
	if ok {
		s.router.subs.Unsubscribe(filter, sess)
	}
	return ok
}

// denySubscribe reports whether filter is on the configured deny list.
func (s *Server) denySubscribe(filter string) bool {
	for _, f := range s.cfg.DenySubscribe {
		if f == filter || topic.Match(f, filter) {
			return true
		}
	}
	return false
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

// endSessionLocked removes a session and its subscriptions. Called with s.mu held.
func (s *Server) endSessionLocked(sess *Session) {
	if s.sessions[sess.ID] == sess {
		delete(s.sessions, sess.ID)
	}
	sess.mu.Lock()
	sess.ended = true
	sess.client.Store(nil)
	subs := sess.subs
	sess.subs = map[string]SubOpts{}
	sess.queue = nil
	sess.inflight = nil
	if sess.expiryTimer != nil {
		sess.expiryTimer.Stop()
	}
	will := sess.will
	sess.will = nil
	if sess.willTimer != nil {
		sess.willTimer.Stop()
	}
	sess.mu.Unlock()
	for f := range subs {
		s.router.subs.Unsubscribe(f, sess)
	}
	if will != nil {
		// A delayed will is sent at the latest when its session ends [MQTT-3.1.3-9].
		go s.publishWill(will)
	}
}

// Stats returns a snapshot of selected counters, for tests and $SYS.
func (s *Server) Stats() map[string]int64 {
	return map[string]int64{
		"connections":       s.stats.connections.Load(),
		"clients":           s.stats.clients.Load(),
		"messages_received": s.stats.msgsRecv.Load(),
		"messages_sent":     s.stats.msgsSent.Load(),
		"dropped_slow":      s.stats.droppedSlow.Load(),
		"dropped_queue":     s.stats.droppedQueueFull.Load(),
		"protocol_errors":   s.stats.protocolErrors.Load(),
		"panics":            s.stats.panics.Load(),
	}
}
