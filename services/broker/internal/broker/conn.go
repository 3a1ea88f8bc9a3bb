package broker

import (
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// The transport of a connection: the read loop, closing, encoding and writing, and holding a
// QoS 0 producer back while a subscriber has no room.

// readPacket reads one packet's fixed header and body. The body is freshly allocated, so packets
// decoded from it may be kept (a PUBLISH body becomes the routed message).
func (c *client) readPacket() (mqtt.FixedHeader, []byte, error) {
	fh, err := mqtt.ReadFixedHeader(&c.rd, c.srv.cfg.MaxPacketSize)
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

// readLoop reads and handles packets until the connection ends (false) or goes idle and parks
// (true: the goroutine must return; a wake-up continues the loop in another, see park.go). cause
// is why this goroutine was started: 0 after CONNECT, else the wake-up's cause.
func (c *client) readLoop(cause wakeCause) (parkedNow bool) {
	batch := 0
	canPark := c.canPark()
	for ; ; cause = 0 {
		// woke: this packet is the first since the reader waited (see the Gosched below).
		woke := cause == wakeInput
		if c.rd.Buffered() == 0 {
			batch = 0
			// About to wait: let everything produced from this batch of input go out.
			c.flushKicks()
			if cause != wakeTimer { // after wakeTimer, the read below times out at once
				// After a wake-up for input the park deadline may be past: a read would then time
				// out at once without reading, so it moves whatever the last move.
				c.moveReadDeadline(canPark, cause == wakeInput)
				if canPark {
					parked, waited, err := c.waitOrPark()
					switch {
					case parked:
						return true
					case err != nil:
						c.readFailed(err)
						return false
					}
					woke = woke || waited
				}
			}
			woke = woke || c.rd.Buffered() == 0 // the read below waits
		}
		fh, body, err := c.readPacket()
		if err != nil {
			c.readFailed(err)
			return false
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
			return false
		}
		// Long batches still let output go every few dozen packets, so latency stays bounded.
		if batch++; batch >= 64 {
			c.flushKicks()
			batch = 0
		}
	}
}

// waitOrPark waits at a packet boundary for input until the park deadline, and parks the
// connection if none came (parked true: the reader must return). A connection with input within
// BROKER_PARK_AFTER keeps its goroutine and waits in the runtime's poller as any other: parking
// and waking cost more than a wait, and a busy connection would pay them at every pause.
// waited says the input came after a wait.
func (c *client) waitOrPark() (parked, waited bool, err error) {
	err = c.rd.waitInput()
	if err == nil || !c.rd.parkDeadlinePassed(err) {
		return false, true, err
	}
	c.rd.release() // nothing is buffered: an idle connection holds no buffer
	if c.park() {
		return true, false, nil
	}
	// Not parked (closed meanwhile, or the poller refused): wait as a connection that cannot.
	c.rd.idle = false
	_ = c.conn.SetReadDeadline(c.rd.kaDeadline())
	return false, true, nil
}

// moveReadDeadline keeps the keep-alive read deadline at 1.5 x keep alive from now
// [MQTT-3.1.2-24] and, for a connection that may park, the park deadline at BROKER_PARK_AFTER
// from now, whichever comes first being the one set at packet boundaries. Moving them costs a
// timer update, so they move at most every deadlineSlack: a silent connection closes between
// 1.5 x keep alive and that plus deadlineSlack.
func (c *client) moveReadDeadline(canPark, force bool) {
	now := monoNow()
	if now-c.lastMove < int64(deadlineSlack) && !force {
		return
	}
	parkAfter := c.srv.cfg.ParkAfter
	if c.lastMove == neverMoved {
		// Right after CONNECT: a client's first packets (SUBSCRIBE) follow the CONNACK at once,
		// and a flood of connections (a reconnect storm) should not keep a goroutine each for
		// a whole BROKER_PARK_AFTER.
		parkAfter = min(parkAfter, connectParkAfter)
	}
	c.lastMove = now
	if c.keepAlive > 0 {
		c.rd.kaAt = now + int64(c.keepAlive*3/2+deadlineSlack)
		c.kaMoved = true
	}
	d := c.rd.kaDeadline()
	c.rd.idle = false
	if parkAt := now + int64(parkAfter); canPark && (c.rd.kaAt == 0 || parkAt < c.rd.kaAt) {
		d = monoTime(parkAt)
		c.rd.idle = true
	}
	if c.keepAlive > 0 || c.rd.idle {
		_ = c.conn.SetReadDeadline(d)
	}
}

// othersRunnable reports whether goroutines are waiting to run (about 60 ns; no allocation).
func (c *client) othersRunnable() bool {
	s := runnableSamples.Get().(*[1]metrics.Sample)
	metrics.Read(s[:])
	v := s[0].Value
	runnableSamples.Put(s)
	return v.Kind() == metrics.KindUint64 && v.Uint64() > 0
}

// neverMoved is lastMove before the first moveReadDeadline.
const neverMoved = math.MinInt64 / 2

// connectParkAfter is the park deadline right after CONNECT (at most BROKER_PARK_AFTER).
const connectParkAfter = 50 * time.Millisecond

// runnableSamples are othersRunnable's samples (a connection keeps none of its own).
var runnableSamples = sync.Pool{New: func() any {
	return &[1]metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
}}

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
		c.event(c.srv.log.Debug()).Str("client_id", c.id).Msg("keep alive timeout")
		c.sendDisconnect(mqtt.KeepAliveTimeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
	default:
		var me *mqtt.Error
		if errors.As(err, &me) {
			c.protocolFailure(err)
			return
		}
		c.event(c.srv.log.Debug()).Err(err).Msg("read failed")
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
	c.event(c.srv.log.Debug()).Err(err).Msg("closing connection on protocol error")
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
		c.event(c.srv.log.Error()).Err(err).Str("packet", pk.Type().String()).Msg("encode failed")
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
