package broker

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/sockio"
)

// client is one network connection. Its reader goroutine (serve) parses and handles packets; its
// outbound carries everything written to it.
type client struct {
	srv  *Server
	conn net.Conn
	out  outbound
	rd   connReader

	// Set once while connecting, read-only afterwards.
	id        string
	username  string // after authentication: the user name, or the certificate's CN
	device    string // the device the client id names in the Cloud IoT Core mode (iotcore.go)
	version   mqtt.Version
	sess      *session
	keepAlive time.Duration
	sendQuota int // outbound QoS 1/2 window: min(client's Receive Maximum, MaxInflight)
	// acks are PUBACK/PUBREC not yet sent because Redis has not yet accepted an earlier message
	// of this client for another replica; guarded by ackMu (before out.mu in the lock order).
	ackMu   sync.Mutex
	acks    []*pendingAck
	ackFree []*pendingAck // sent acknowledgements to reuse (each belongs to this client for good)
	// storeFailed: a 3.x publish of this connection could not be stored; the connection is
	// closing, and nothing it sends after is stored (see pendingAck.done).
	storeFailed atomic.Bool
	maxOut      uint32 // client's Maximum Packet Size; 0 means no limit
	aliasMax    uint16 // topic aliases the client accepts from us

	// Reader goroutine only.
	rate       *tokenBucket // publish rate limit; nil when unlimited
	aliasesIn  map[uint16]string
	kicks      []*outbound
	exp        *exportBatch // messages to export (export.go); nil when none
	will       *message
	willDelay  time.Duration
	sessExpiry time.Duration
	// tokenExpires is when the JWT the client authenticated with stops being valid (nil: no
	// JWT, or one that does not expire); tokenTimer closes the connection then (jwt.go).
	tokenExpires *time.Time
	tokenTimer   *time.Timer
	since        time.Time // when the connection was accepted

	// aliasesOut is guarded by out.mu.
	aliasesOut map[string]uint16

	done              chan struct{} // closed when the reader has finished and the session is released
	takeover          atomic.Bool   // closed because the client id connected again
	takeoverKeepsWill atomic.Bool   // ...by a connection that resumes the session: the will waits

	// reason is why the connection ended, plus 1 (0: not decided yet); the first one set wins.
	reason atomic.Int32

	closed     atomic.Bool
	disconnect atomic.Uint32 // reason code sent in a server DISCONNECT, plus 1 (0 = none)
	// normal is set when the client sent DISCONNECT without asking for its will.
	normal bool

	presence presenceConn // see presence.go

	// Parking (park.go). parkState is running or parked; the rest belongs to the reader.
	parkState atomic.Int32
	pollAdded bool
	kaMoved   bool        // the keep-alive deadline (rd.kaAt) moved since kaTimer was set
	slot      *slotHolder // a connect slot (connslots.go); while connecting only
	pollFd    int32
	lastMove  int64 // monotonic ns when the read deadlines last moved (moveReadDeadline)
	kaTimer   *time.Timer
	kaFired   atomic.Bool
}

// event adds the client id, once known, to a log event of the server's logger (nil when its level
// is off: then nothing is done). A connection keeps no logger of its own: that cost every idle
// connection a copy of the logger's context.
func (c *client) event(e *zerolog.Event) *zerolog.Event {
	if c.id != "" {
		e = e.Str("client_id", c.id)
	}
	return e
}

// setReason records why the connection ends, unless a reason was recorded already.
func (c *client) setReason(r disconnectReason) { c.reason.CompareAndSwap(0, int32(r)+1) }

// errClientGone ends the reader without another answer: the connection is already closed.
var errClientGone = errors.New("connection closed")

func newClient(srv *Server, conn net.Conn) *client {
	conn = sockio.Wrap(conn) // plain TCP: raw socket calls (see package sockio)
	c := &client{srv: srv, conn: conn, lastMove: neverMoved, done: make(chan struct{}), since: time.Now()}
	c.out.init(c, conn, srv.cfg.MaxPendingBytes)
	return c
}

// closeConn closes the network connection once; the reader then unwinds and cleans up.
func (c *client) closeConn() {
	if c.closed.CompareAndSwap(false, true) {
		_ = c.conn.Close()
		c.wake(wakeClosed) // a parked reader finishes the connection
	}
}

// serve runs the connection from accept to close. It is the reader goroutine.
func (c *client) serve() {
	handedOver := false
	defer func() {
		if !handedOver {
			c.releaseSlot() // after a panic in readConnect
			c.finish()
		}
	}()
	defer c.recoverPanic()
	c.rd = newConnReader(c.conn)
	deadline := time.Now().Add(c.srv.cfg.ConnectTimeout)
	_ = c.conn.SetReadDeadline(deadline)
	c.holdSlots(deadline) // readConnect gives the slot back once CONNECT is read
	if err := c.readConnect(); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.setReason(discConnectTimeout)
		}
		if !errors.Is(err, errClientGone) {
			c.event(c.srv.log.Debug()).Err(err).Str("remote", c.conn.RemoteAddr().String()).Msg("connect failed")
		}
		return
	}
	// Handling CONNECT (TLS handshake, authentication, session resume) grows a goroutine's stack
	// to several KiB, and Go keeps it until a GC shrinks it. The read loop runs on a fresh
	// goroutine instead, whose small stack is all an idle connection then holds.
	handedOver = true
	c.srv.wg.Add(1)
	go c.runReadLoop(0)
}

// recoverPanic is the last guard: a bug in handling one connection costs that connection only.
// It must be deferred itself (recover works only when called by the deferred function).
func (c *client) recoverPanic() {
	if r := recover(); r != nil {
		c.event(c.srv.log.Error()).Interface("panic", r).Msg("recovered from panic in connection handler")
		c.srv.stats.panics.Add(1)
	}
}

// handle dispatches one packet after CONNECT.
func (c *client) handle(fh mqtt.FixedHeader, body []byte) error {
	switch fh.Type {
	case mqtt.PUBLISH:
		var p mqtt.Publish
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		return c.handlePublish(&p)
	case mqtt.PUBACK:
		var p mqtt.Puback
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		c.sess.ack(p.PacketID, false, c)
	case mqtt.PUBREC:
		var p mqtt.Pubrec
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		if !c.sess.received(p.PacketID, p.ReasonCode.IsError(), c) {
			c.sendAck(mqtt.PUBREL, p.PacketID, mqtt.PacketIdentifierNotFound)
		}
	case mqtt.PUBREL:
		var p mqtt.Pubrel
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		c.handlePubrel(p.PacketID)
	case mqtt.PUBCOMP:
		var p mqtt.Pubcomp
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		c.sess.ack(p.PacketID, true, c)
	case mqtt.SUBSCRIBE:
		var p mqtt.Subscribe
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		return c.handleSubscribe(&p)
	case mqtt.UNSUBSCRIBE:
		var p mqtt.Unsubscribe
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		c.handleUnsubscribe(&p)
	case mqtt.PINGREQ:
		var p mqtt.Pingreq
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		c.writePacket(&mqtt.Pingresp{})
	case mqtt.DISCONNECT:
		var p mqtt.Disconnect
		if err := p.Decode(fh.Flags, body, c.version); err != nil {
			return err
		}
		return c.handleDisconnect(&p)
	case mqtt.CONNECT:
		return &mqtt.Error{Code: mqtt.ProtocolError, Msg: "second CONNECT [MQTT-3.1.0-2]"}
	case mqtt.AUTH:
		if c.version != mqtt.V5 {
			return &mqtt.Error{Code: mqtt.MalformedPacket, Msg: "AUTH in MQTT 3"}
		}
		return &mqtt.Error{Code: mqtt.ProtocolError, Msg: "AUTH without an authentication method [MQTT-4.12.0-1]"}
	default:
		// CONNACK, SUBACK, UNSUBACK and PINGRESP only flow from server to client.
		return &mqtt.Error{Code: mqtt.ProtocolError, Msg: fmt.Sprintf("%s sent to the server", fh.Type)}
	}
	return nil
}

func (c *client) handleDisconnect(p *mqtt.Disconnect) error {
	if c.version == mqtt.V5 {
		if p.Properties.Has(mqtt.PropSessionExpiry) {
			if c.sessExpiry == 0 && p.Properties.SessionExpiry != 0 {
				// [MQTT-3.14.2-2]
				return &mqtt.Error{Code: mqtt.ProtocolError, Msg: "session expiry set on DISCONNECT after 0 on CONNECT [MQTT-3.14.2-2]"}
			}
			c.sessExpiry = c.srv.capExpiry(p.Properties.SessionExpiry)
		}
		if p.ReasonCode == mqtt.DisconnectWithWill {
			c.setReason(discNormal)
			c.closeConn()
			return errClientGone
		}
	}
	// A normal DISCONNECT discards the will [MQTT-3.1.2-10], [MQTT-3.14.4-3].
	c.setReason(discNormal)
	c.normal = true
	c.will = nil
	c.closeConn()
	return errClientGone
}

// finish runs once when the reader stops: the session goes offline (or away), the will is handled.
func (c *client) finish() {
	c.stopTokenTimer()
	c.flushKicks()
	c.closeConn()
	c.unpark()
	c.setReason(discConnectionLost)
	c.srv.stats.disconnects[c.reason.Load()-1].Add(1)
	c.rd.release()
	if c.sess == nil {
		c.srv.connDone(c, false)
		close(c.done)
		return
	}
	c.srv.presenceDisconnected(c)
	c.srv.detach(c)
}
