package broker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/sockio"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

// client is one network connection. Its reader goroutine (serve) parses and handles packets; its
// outbound carries everything written to it.
type client struct {
	srv  *Server
	conn net.Conn
	log  zerolog.Logger
	out  outbound
	rd   *connReader

	// Set once while connecting, read-only afterwards.
	id        string
	username  string // after authentication: the user name, or the certificate's CN
	version   mqtt.Version
	sess      *Session
	keepAlive time.Duration
	sendQuota int // outbound QoS 1/2 window: min(client's Receive Maximum, MaxInflight)
	// acks are PUBACK/PUBREC not yet sent because Redis has not yet accepted an earlier message
	// of this client for another replica; guarded by ackMu (before out.mu in the lock order).
	// runnable is the reader's sample of the scheduler's runnable-goroutine count (see readLoop).
	runnable [1]metrics.Sample
	ackMu    sync.Mutex
	acks     []*pendingAck
	ackFree  []*pendingAck // sent acknowledgements to reuse (each belongs to this client for good)
	// storeFailed: a 3.x publish of this connection could not be stored; the connection is
	// closing, and nothing it sends after is stored (see pendingAck.done).
	storeFailed atomic.Bool
	maxOut      uint32 // client's Maximum Packet Size; 0 means no limit
	aliasMax    uint16 // topic aliases the client accepts from us

	// Reader goroutine only.
	rate       *tokenBucket // publish rate limit; nil when unlimited
	aliasesIn  map[uint16]string
	kicks      []*outbound
	exp        *[]byte // messages to export, an envelope batch (export); nil when none
	expN       int
	will       *Message
	willDelay  time.Duration
	sessExpiry time.Duration

	// aliasesOut is guarded by out.mu.
	aliasesOut map[string]uint16

	done              chan struct{} // closed when the reader has finished and the session is released
	takeover          atomic.Bool   // closed because the client id connected again
	takeoverKeepsWill atomic.Bool   // ...by a connection that resumes the session: the will waits

	// reason is why the connection ended, plus 1 (0: not decided yet); the first one set wins.
	reason atomic.Int32

	closeOnce  sync.Once
	closed     atomic.Bool
	disconnect atomic.Uint32 // reason code sent in a server DISCONNECT, plus 1 (0 = none)
	// normal is set when the client sent DISCONNECT without asking for its will.
	normal bool

	presence presenceConn // see presence.go
}

// setReason records why the connection ends, unless a reason was recorded already.
func (c *client) setReason(r disconnectReason) { c.reason.CompareAndSwap(0, int32(r)+1) }

// errClientGone ends the reader without another answer: the connection is already closed.
var errClientGone = errors.New("connection closed")

func newClient(srv *Server, conn net.Conn) *client {
	conn = sockio.Wrap(conn) // plain TCP: raw socket calls (see package sockio)
	c := &client{srv: srv, conn: conn, log: srv.log, done: make(chan struct{})}
	c.runnable[0].Name = "/sched/goroutines/runnable:goroutines"
	c.out.init(conn, srv.cfg.WriteTimeout, srv.cfg.MaxPendingBytes)
	c.out.onError = func(err error) { c.closeConn() }
	c.out.onWritten = func(n int) { srv.stats.bytesSent.Add(int64(n)) }
	return c
}

// closeConn closes the network connection once; the reader then unwinds and cleans up.
func (c *client) closeConn() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		_ = c.conn.Close()
	})
}

// serve runs the connection from accept to close. It is the reader goroutine.
func (c *client) serve() {
	handedOver := false
	defer func() {
		if !handedOver {
			c.finish()
		}
	}()
	defer c.recoverPanic()
	c.rd = newConnReader(c.conn)
	_ = c.conn.SetReadDeadline(time.Now().Add(c.srv.cfg.ConnectTimeout))
	if err := c.readConnect(); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.setReason(discConnectTimeout)
		}
		if !errors.Is(err, errClientGone) {
			c.log.Debug().Err(err).Str("remote", c.conn.RemoteAddr().String()).Msg("connect failed")
		}
		return
	}
	// Handling CONNECT (TLS handshake, authentication, session resume) grows a goroutine's stack
	// to several KiB, and Go keeps it until a GC shrinks it. The read loop runs on a fresh
	// goroutine instead, whose small stack is all an idle connection then holds.
	handedOver = true
	c.srv.wg.Add(1)
	go func() {
		defer c.srv.wg.Done()
		defer c.finish()
		defer c.recoverPanic()
		c.readLoop()
	}()
}

// recoverPanic is the last guard: a bug in handling one connection costs that connection only.
// It must be deferred itself (recover works only when called by the deferred function).
func (c *client) recoverPanic() {
	if r := recover(); r != nil {
		c.log.Error().Interface("panic", r).Str("client_id", c.id).Msg("recovered from panic in connection handler")
		c.srv.stats.panics.Add(1)
	}
}

// readPacket reads one packet's fixed header and body. The body is freshly allocated, so packets
// decoded from it may be kept (a PUBLISH body becomes the routed message).
func (c *client) readPacket() (mqtt.FixedHeader, []byte, error) {
	fh, err := mqtt.ReadFixedHeader(c.rd, c.srv.cfg.MaxPacketSize)
	if err != nil {
		return fh, nil, err
	}
	body := make([]byte, fh.Remaining)
	if err := c.rd.ReadFull(body); err != nil {
		return fh, nil, err
	}
	c.srv.stats.bytesRecv.Add(int64(fh.Remaining + 2))
	return fh, body, nil
}

func (c *client) readLoop() {
	batch := 0
	var lastDeadline time.Time
	for {
		if c.rd.Buffered() == 0 {
			batch = 0
			// About to block: let everything produced from this batch of input go out.
			c.flushKicks()
			if c.keepAlive > 0 {
				// [MQTT-3.1.2-24]: close after 1.5 x keep alive without a packet. Moving the
				// deadline costs a timer update, so it moves at most every deadlineSlack; the
				// connection then closes between 1.5 x keep alive and that plus deadlineSlack.
				if now := time.Now(); now.Sub(lastDeadline) >= deadlineSlack {
					lastDeadline = now
					_ = c.conn.SetReadDeadline(now.Add(c.keepAlive*3/2 + deadlineSlack))
				}
			}
		}
		woke := c.rd.Buffered() == 0 // this read parks the goroutine until data arrives
		fh, body, err := c.readPacket()
		if err != nil {
			c.readFailed(err)
			return
		}
		if woke && fh.Type == mqtt.PUBLISH && c.othersRunnable() {
			// Packets that arrive together on several connections are woken in reverse order
			// by the runtime's poller (it hands back a LIFO list and runs the head at once). A
			// PUBLISH that just woke this reader while other goroutines wait to run yields once,
			// so a SUBSCRIBE that arrived on another connection just before it is handled
			// first, as in arrival order.
			runtime.Gosched()
		}
		if err := c.handle(fh, body); err != nil {
			if !errors.Is(err, errClientGone) {
				c.protocolFailure(err)
			}
			return
		}
		// Long batches still let output go every few dozen packets, so latency stays bounded.
		if batch++; batch >= 64 {
			c.flushKicks()
			batch = 0
		}
	}
}

// othersRunnable reports whether goroutines are waiting to run (about 60 ns; no allocation).
func (c *client) othersRunnable() bool {
	metrics.Read(c.runnable[:])
	return c.runnable[0].Value.Kind() == metrics.KindUint64 && c.runnable[0].Value.Uint64() > 0
}

// deadlineSlack is how far past 1.5 x keep alive a silent connection may live (see readLoop).
const deadlineSlack = 250 * time.Millisecond

// readFailed decides how a read error ends the connection.
func (c *client) readFailed(err error) {
	var ne net.Error
	switch {
	case c.closed.Load(), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.As(err, &ne) && ne.Timeout():
		// Keep alive expired [MQTT-3.1.2-24].
		c.setReason(discKeepAlive)
		c.log.Debug().Str("client_id", c.id).Msg("keep alive timeout")
		c.sendDisconnect(mqtt.KeepAliveTimeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
	default:
		var me *mqtt.Error
		if errors.As(err, &me) {
			c.protocolFailure(err)
			return
		}
		c.log.Debug().Err(err).Str("client_id", c.id).Msg("read failed")
	}
}

// protocolFailure answers a malformed packet or protocol violation: a v5 client gets DISCONNECT with
// the reason code [MQTT-4.13.2-1]; a 3.x client's connection is just closed [MQTT-4.8.0-1].
func (c *client) protocolFailure(err error) {
	c.setReason(discProtocolError)
	code := mqtt.ProtocolError
	var me *mqtt.Error
	if errors.As(err, &me) {
		code = me.Code
	}
	c.log.Debug().Err(err).Str("client_id", c.id).Msg("closing connection on protocol error")
	if c.version == mqtt.V5 && c.disconnect.CompareAndSwap(0, uint32(code)+1) {
		d := &mqtt.Disconnect{ReasonCode: code}
		if me != nil && me.Msg != "" {
			// Say why, unless that would break the client's Maximum Packet Size [MQTT-3.14.2-3].
			d.Properties.ReasonString = me.Msg
			d.Properties.Set(mqtt.PropReasonString)
			if c.maxOut > 0 && d.Size(c.version) > int(c.maxOut) {
				d.Properties.Clear(mqtt.PropReasonString)
			}
		}
		c.writePacket(d)
	}
	c.lingerClose()
}

// lingerClose flushes the output, half-closes the connection where the transport can (TCP FIN,
// TLS close_notify) and discards what the client still sends for a moment before closing. Closing
// a socket with unread input makes the kernel answer with a reset, and a client that is still
// writing (acks, pipelined publishes) would then lose the DISCONNECT or CONNACK that explains why.
// Only the reader goroutine may call it.
func (c *client) lingerClose() {
	c.out.closeAndDrain(time.Second)
	if !c.closed.Load() {
		if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, io.LimitReader(c.conn, 1<<20))
	}
	c.closeConn()
}

// lingerTimeout bounds lingerClose.
const lingerTimeout = 2 * time.Second

// sendDisconnect sends a v5 DISCONNECT with code (nothing for 3.x) and closes the connection once it
// is written.
func (c *client) sendDisconnect(code mqtt.ReasonCode) {
	if c.version == mqtt.V5 && c.disconnect.CompareAndSwap(0, uint32(code)+1) {
		c.writePacket(&mqtt.Disconnect{ReasonCode: code})
	}
	c.out.closeAndDrain(time.Second)
	c.closeConn()
}

// flushKicks starts the writers of every connection this reader produced output for.
func (c *client) flushKicks() {
	c.flushExport()
	for i, o := range c.kicks {
		o.kick()
		c.kicks[i] = nil
	}
	c.kicks = c.kicks[:0]
}

// export adds bm to the connection's export batch, which goes to the export queue at the next
// flushKicks (the end of a burst of input): one lock of the shared queue per burst instead of
// one per message. Called from the reader goroutine only.
func (c *client) export(bm *bus.Message) {
	if c.exp == nil {
		c.exp = exportBufs.Get().(*[]byte)
		*c.exp = bus.AppendBatchHeader((*c.exp)[:0])
	}
	b, err := bus.AppendMessage(*c.exp, bm)
	if err != nil {
		return // QoS above 2: the codec never lets one in
	}
	*c.exp = b
	c.expN++
	if len(b) >= exportFlushBytes {
		c.flushExport()
	}
}

// flushExport hands the connection's export batch over.
func (c *client) flushExport() {
	if c.exp == nil {
		return
	}
	if c.expN > 0 {
		c.srv.cluster.ExportBatch(*c.exp, c.expN)
	}
	if cap(*c.exp) <= 4*exportFlushBytes {
		exportBufs.Put(c.exp)
	}
	c.exp, c.expN = nil, 0
}

// exportFlushBytes hands a connection's export batch over early when it grows this large.
const exportFlushBytes = 64 << 10

// exportBufs are the connections' export batches, held only during a burst of input.
var exportBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// writePacket encodes pk into the outbound buffer and starts the writer.
func (c *client) writePacket(pk mqtt.Packet) {
	o := &c.out
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	n := len(o.buf)
	buf, err := pk.AppendTo(o.buf, c.version)
	if err != nil {
		o.mu.Unlock()
		c.log.Error().Err(err).Str("packet", pk.Type().String()).Msg("encode failed")
		return
	}
	o.buf = buf
	o.pending += len(buf) - n
	o.startLocked()
	o.mu.Unlock()
}

// sendAck writes a PUBACK, PUBREC, PUBREL or PUBCOMP. It is cheap and batched like any output.
func (c *client) sendAck(t mqtt.Type, id uint16, code mqtt.ReasonCode) {
	var pk mqtt.Packet
	switch t {
	case mqtt.PUBACK:
		pk = &mqtt.Puback{PacketID: id, ReasonCode: code}
	case mqtt.PUBREC:
		pk = &mqtt.Pubrec{PacketID: id, ReasonCode: code}
	case mqtt.PUBREL:
		pk = &mqtt.Pubrel{PacketID: id, ReasonCode: code}
	default:
		pk = &mqtt.Pubcomp{PacketID: id, ReasonCode: code}
	}
	c.writePacket(pk)
}

// sendPublish encodes one PUBLISH for this client into its outbound buffer. id is 0 for QoS 0.
// via is the client whose reader goroutine is running this call (nil elsewhere): the writer is
// started when via's reader has handled its whole input batch.
// It returns false if the message was dropped: too large for the client, the connection closing,
// or (QoS 0 only) the client too slow to keep up.
func (c *client) sendPublish(d delivery, id uint16, dup bool, now time.Time, via *client) bool {
	m := d.msg
	p := mqtt.Publish{Dup: dup, QoS: d.qos, Retain: d.retain, Topic: m.Topic, PacketID: id, Payload: m.Payload}
	if c.version == mqtt.V5 {
		m.Props.copyTo(&p.Properties)
		if secs, ok := m.remainingExpiry(now); ok {
			p.Properties.MessageExpiry = secs
			p.Properties.Set(mqtt.PropMessageExpiry)
		}
		if len(d.subIDs) > 0 {
			p.Properties.SubscriptionIDs = d.subIDs
			p.Properties.Set(mqtt.PropSubscriptionID)
		}
	}
	// A QoS 0 message that this client sees exactly like every other client of its version is
	// encoded once per routed message and copied (see sharedEncoding).
	var shared []byte
	if d.enc != nil && id == 0 && (c.version != mqtt.V5 || c.aliasMax == 0 && c.maxOut == 0) {
		shared = d.enc.get(c.version, &p)
	}
	o := &c.out
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	if d.qos == mqtt.QoS0 && o.pending >= o.limit && !c.waitForRoomLocked() {
		o.mu.Unlock()
		c.srv.stats.drop(dropSlowConsumer)
		return false
	}
	n := len(o.buf)
	if shared != nil {
		o.buf = append(o.buf, shared...)
	} else {
		if c.aliasMax > 0 {
			c.applyAliasLocked(&p)
		}
		if c.maxOut > 0 && p.Size(c.version) > int(c.maxOut) {
			o.mu.Unlock()
			c.srv.stats.drop(dropTooLarge)
			return false
		}
		o.buf = p.AppendHeader(o.buf, c.version)
		o.buf = append(o.buf, p.Payload...)
	}
	o.pending += len(o.buf) - n
	if o.pending > 2*o.limit && d.qos > 0 {
		// QoS 1/2 output piles up behind a client that does not read: cut it off.
		o.mu.Unlock()
		c.setReason(discSlowConsumer)
		c.closeConn()
		return true
	}
	switch {
	case o.writing || o.queued:
	case via != nil:
		o.queued = true
		via.kicks = append(via.kicks, o)
	default:
		o.startLocked()
	}
	o.mu.Unlock()
	c.srv.stats.msgsSent[d.qos].Add(1)
	return true
}

// waitForRoomLocked holds a QoS 0 producer back while a subscriber's output is over the limit, so a
// burst is absorbed without loss; a subscriber that makes no progress for a while is marked
// congested, and QoS 0 messages to it are dropped until it catches up. Called with out.mu held.
func (c *client) waitForRoomLocked() bool {
	o := &c.out
	if o.congested {
		return false
	}
	deadline := time.Now().Add(qos0Stall)
	for o.pending >= o.limit && !o.closed {
		if !o.writing {
			o.writing = true
			o.queued = false
			go o.writeLoop(nil, nil)
		}
		wait := time.Until(deadline)
		if wait <= 0 || !o.waitProgressLocked(wait) {
			if o.pending >= o.limit {
				o.congested = true
				return false
			}
		}
	}
	return !o.closed
}

// qos0Stall is how long a publisher may be held back by one slow QoS 0 subscriber.
const qos0Stall = 500 * time.Millisecond

// applyAliasLocked replaces the topic with a topic alias the client accepts [MQTT-3.3.2-12]: the
// first message on a topic carries the topic and a new alias, later ones the alias alone.
func (c *client) applyAliasLocked(p *mqtt.Publish) {
	if a, ok := c.aliasesOut[p.Topic]; ok {
		p.Topic = ""
		p.Properties.TopicAlias = a
		p.Properties.Set(mqtt.PropTopicAlias)
		return
	}
	if len(c.aliasesOut) >= int(c.aliasMax) {
		return
	}
	if c.aliasesOut == nil {
		c.aliasesOut = make(map[string]uint16)
	}
	a := uint16(len(c.aliasesOut) + 1)
	c.aliasesOut[p.Topic] = a
	p.Properties.TopicAlias = a
	p.Properties.Set(mqtt.PropTopicAlias)
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

func (c *client) handlePublish(p *mqtt.Publish) error {
	c.srv.stats.msgsRecv[p.QoS].Add(1)
	if c.storeFailed.Load() {
		c.srv.stats.drop(dropClusterUnavailable)
		c.closeConn()
		return errClientGone
	}
	name := p.Topic
	if c.version == mqtt.V5 && p.Properties.Has(mqtt.PropTopicAlias) {
		a := p.Properties.TopicAlias
		if a == 0 || a > c.srv.cfg.TopicAliasMaximum {
			return &mqtt.Error{Code: mqtt.TopicAliasInvalid, Msg: fmt.Sprintf("topic alias %d outside 1..%d [MQTT-3.3.2-9]", a, c.srv.cfg.TopicAliasMaximum)}
		}
		if name != "" {
			if c.aliasesIn == nil {
				c.aliasesIn = make(map[uint16]string)
			}
			c.aliasesIn[a] = name
		} else if name = c.aliasesIn[a]; name == "" {
			return &mqtt.Error{Code: mqtt.ProtocolError, Msg: fmt.Sprintf("unknown topic alias %d", a)}
		}
	}
	if err := topic.ValidateName(name); err != nil {
		return &mqtt.Error{Code: mqtt.TopicNameInvalid, Msg: err.Error()}
	}
	if p.QoS == mqtt.QoS2 && c.sess.qos2Received(p.PacketID) {
		// Already received and routed: acknowledge again, deliver once [MQTT-4.3.3-10].
		c.ack(mqtt.PUBREC, p.PacketID, mqtt.Success)
		return nil
	}
	cfg := &c.srv.cfg
	if len(name) > cfg.MaxTopicLength || cfg.MaxTopicLevels > 0 && topic.LevelCount(name) > cfg.MaxTopicLevels {
		if c.version != mqtt.V5 {
			return &mqtt.Error{Code: mqtt.TopicNameInvalid, Msg: "topic beyond the broker's length or level limit"}
		}
		return c.rejectPublish(p, mqtt.TopicNameInvalid, dropTopicTooLong)
	}
	if c.rate != nil {
		if wait := c.rate.take(time.Now(), c.version != mqtt.V5); wait > 0 {
			if c.version == mqtt.V5 {
				// 0x96 is a DISCONNECT reason only; PUBACK cannot carry it.
				c.srv.stats.drop(dropRateLimited)
				return &mqtt.Error{Code: mqtt.MessageRateTooHigh, Msg: fmt.Sprintf("more than %g publishes per second", c.srv.cfg.MaxPublishRate)}
			}
			// 3.x cannot be told: hold the publisher back instead (TCP backpressure, no loss).
			c.flushKicks()
			time.Sleep(wait)
		}
	}
	if p.QoS == mqtt.QoS2 && c.sess.qos2Pending() >= int(c.srv.cfg.ReceiveMaximum) {
		return &mqtt.Error{Code: mqtt.ReceiveMaximumExceeded, Msg: "more unacknowledged QoS 2 publishes than Receive Maximum [MQTT-3.3.4-9]"}
	}
	if !c.srv.allowed(c.id, c.username, name, auth.Write) {
		// Refused by the ACL: v5 hears why [MQTT-3.3.5-2], and a refused QoS 2 exchange ends
		// with its PUBREC, so its packet id is not recorded [MQTT-4.3.3-4]; 3.x gets its usual
		// acknowledgement and the message is dropped, as in mosquitto (its PUBREL then finds
		// the id).
		if c.version == mqtt.V5 {
			return c.rejectPublish(p, mqtt.NotAuthorized, dropNotAuthorized)
		}
		c.srv.stats.drop(dropNotAuthorized)
		switch p.QoS {
		case mqtt.QoS1:
			c.ack(mqtt.PUBACK, p.PacketID, mqtt.Success)
		case mqtt.QoS2:
			c.sess.beginQoS2(p.PacketID, bus.MessageID{})
			c.ack(mqtt.PUBREC, p.PacketID, mqtt.Success)
		}
		return nil
	}
	now := time.Now()
	if topic.IsSystem(name) && !strings.HasPrefix(name, bus.ProbeTopicPrefix) {
		// $-topics belong to the broker; clients may not publish into them. The message is
		// acknowledged and dropped, as mosquitto does. The health gateway's probe topics are
		// the exception: under '$' so that "#" subscribers never see them.
		c.srv.stats.drop(dropNotAuthorized)
		switch p.QoS {
		case mqtt.QoS1:
			c.ack(mqtt.PUBACK, p.PacketID, mqtt.Success)
		case mqtt.QoS2:
			c.sess.beginQoS2(p.PacketID, bus.MessageID{})
			c.ack(mqtt.PUBREC, p.PacketID, mqtt.Success)
		}
		return nil
	}
	m := newMessage(p, name, c.id, c.username, now)
	if p.QoS == mqtt.QoS0 {
		c.srv.publish(m, c, nil)
		return nil
	}
	if p.QoS == mqtt.QoS2 {
		c.sess.beginQoS2(p.PacketID, m.ID)
	}
	// The acknowledgement waits until the message is stored for every persistent session it
	// matches and Redis has it for every other replica it goes to; acknowledgements still leave
	// in PUBLISH order [MQTT-4.6.0-2].
	pa := c.pendAck(p)
	c.srv.publish(m, c, pa)
	c.settleAck(pa)
	return nil
}

// rejectPublish refuses a v5 PUBLISH with a reason code in its acknowledgement (nothing for QoS 0)
// and counts the drop. A refused QoS 2 message is finished: no PUBREL follows [MQTT-4.3.3-4].
func (c *client) rejectPublish(p *mqtt.Publish, code mqtt.ReasonCode, cause dropCause) error {
	c.srv.stats.drop(cause)
	switch p.QoS {
	case mqtt.QoS1:
		c.ack(mqtt.PUBACK, p.PacketID, code)
	case mqtt.QoS2:
		c.ack(mqtt.PUBREC, p.PacketID, code)
	}
	return nil
}

func (c *client) handlePubrel(id uint16) { c.sess.endQoS2(id, c) }

func (c *client) handleSubscribe(p *mqtt.Subscribe) error {
	codes := make([]mqtt.ReasonCode, len(p.Subscriptions))
	var subID uint32
	if c.version == mqtt.V5 && p.Properties.Has(mqtt.PropSubscriptionID) && len(p.Properties.SubscriptionIDs) > 0 {
		subID = p.Properties.SubscriptionIDs[0]
	}
	type retainedReq struct {
		filter string
		opts   SubOpts
	}
	var wantRetained []retainedReq
	var routes, retires []func()
	for i, sub := range p.Subscriptions {
		_, shared, err := topic.ParseShare(sub.Filter)
		if err == nil {
			err = topic.ValidateFilter(sub.Filter)
		}
		if err != nil {
			codes[i] = c.failCode(mqtt.TopicFilterInvalid)
			continue
		}
		if shared && sub.NoLocal && c.version == mqtt.V5 {
			return &mqtt.Error{Code: mqtt.ProtocolError, Msg: "no local on a shared subscription [MQTT-3.8.3-4]"}
		}
		if !c.srv.allowed(c.id, c.username, sub.Filter, auth.Subscribe) {
			codes[i] = c.failCode(c.srv.cfg.SubackDeniedCode())
			continue
		}
		cfg := &c.srv.cfg
		if len(sub.Filter) > cfg.MaxTopicLength || cfg.MaxTopicLevels > 0 && topic.LevelCount(sub.Filter) > cfg.MaxTopicLevels {
			codes[i] = c.failCode(mqtt.TopicFilterInvalid)
			continue
		}
		if cfg.MaxSubscriptions > 0 && c.sess.subscriptionCount() >= cfg.MaxSubscriptions && !c.sess.hasSubscription(sub.Filter) {
			codes[i] = c.failCode(mqtt.QuotaExceeded)
			continue
		}
		opts := SubOpts{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
			RetainHandling: sub.RetainHandling, SubID: subID}
		existed, route, retire := c.srv.subscribe(c.sess, sub.Filter, opts)
		if route != nil {
			routes = append(routes, route)
		}
		if retire != nil {
			retires = append(retires, retire)
		}
		codes[i] = mqtt.ReasonCode(sub.QoS)
		// Retained messages go to new non-shared subscriptions per Retain Handling [MQTT-3.3.1-9..11].
		if !shared && (sub.RetainHandling == 0 || (sub.RetainHandling == 1 && !existed)) {
			wantRetained = append(wantRetained, retainedReq{sub.Filter, opts})
		}
	}
	// The SUBACK waits until the other replicas route matching messages here and, for a
	// persistent session, until every replica appends them to its log, so that a message
	// published anywhere after the SUBACK reaches this subscription.
	for _, wait := range routes {
		wait()
	}
	if err := c.sess.subscriptionsChanged(); err != nil {
		// A persistent session's new subscriptions that the store did not take are refused,
		// not acknowledged: they would be lost when the session moves.
		c.log.Warn().Err(err).Msg("subscriptions of a persistent session not stored; refused")
		for i, sub := range p.Subscriptions {
			if !codes[i].IsError() {
				c.srv.unsubscribe(c.sess, sub.Filter)
				codes[i] = c.failCode(mqtt.UnspecifiedError)
			}
		}
		wantRetained = nil
	}
	for _, retire := range retires {
		retire()
	}
	c.writePacket(&mqtt.Suback{PacketID: p.PacketID, ReasonCodes: codes})
	now := time.Now()
	for _, r := range wantRetained {
		c.srv.retained.Match(r.filter, func(m *Message) {
			if m.expired(now) || !c.srv.allowed(c.id, c.username, m.Topic, auth.Read) {
				return
			}
			qos := min(m.QoS, r.opts.QoS)
			if qos > 0 && c.sess.stored.Load() {
				// Through the session's log, like any QoS 1/2 message it gets.
				c.srv.appendRetained(c.sess, m, qos)
				return
			}
			d := delivery{msg: m, qos: qos, retain: true}
			if r.opts.SubID != 0 {
				d.subIDs = []uint32{r.opts.SubID}
			}
			c.sess.deliver(d, now, c)
		})
	}
	return nil
}

// failCode is a SUBACK failure: the v5 reason code, or 0x80 for 3.x [MQTT-3.9.3-2].
func (c *client) failCode(v5 mqtt.ReasonCode) mqtt.ReasonCode {
	if c.version == mqtt.V5 {
		return v5
	}
	return mqtt.V3SubackFailure
}

func (c *client) handleUnsubscribe(p *mqtt.Unsubscribe) {
	codes := make([]mqtt.ReasonCode, len(p.Filters))
	for i, f := range p.Filters {
		if c.srv.unsubscribe(c.sess, f) {
			codes[i] = mqtt.Success
		} else {
			codes[i] = mqtt.NoSubscriptionExisted
		}
	}
	if err := c.sess.subscriptionsChanged(); err != nil {
		c.log.Warn().Err(err).Msg("unsubscribe of a persistent session not stored; it applies here and is written when Redis is back")
	}
	c.writePacket(&mqtt.Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
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
	c.flushKicks()
	c.closeConn()
	c.setReason(discConnectionLost)
	c.srv.stats.disconnects[c.reason.Load()-1].Add(1)
	if c.rd != nil {
		c.rd.release()
	}
	if c.sess == nil {
		c.srv.connDone(c, false)
		close(c.done)
		return
	}
	c.srv.presenceDisconnected(c)
	c.srv.detach(c)
}
