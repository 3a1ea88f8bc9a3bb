package broker

import (
	"time"
)

// Parking: an idle connection holds no goroutine.
//
// A goroutine blocked in Read costs an idle connection its stack (2 KiB at least, often more),
// and an IoT broker's connections are idle nearly all the time. So a reader waits for input at a
// packet boundary only until the park deadline (BROKER_PARK_AFTER without input; 50 ms right
// after CONNECT, see moveReadDeadline); when that passes it parks the connection: the socket is
// handed to the poller (an epoll instance of the broker's own, armed one-shot for input) and the
// goroutine returns. When input arrives, the keep-alive deadline passes, or the connection is
// closed from elsewhere (takeover, kick, slow consumer, shutdown), wake starts a new goroutine that
// carries on where the old one stopped. Everything the reader owns (session state, pending
// acknowledgements, aliases) lives in the client, so nothing is lost between the two. A busy
// connection never reaches its park deadline and waits in the runtime's poller as before: parking
// and waking cost more than a wait.
//
// parkState hands the connection over exactly once: park stores parked only after the reader has
// finished with the connection, and the single waker whose compare-and-swap takes it back to
// running starts the next reader. Any wake-up may be spurious (a readiness event of a socket
// number reused by another connection, a timer of a deadline that has since moved): the reader
// then finds nothing to read and parks again.
//
// TLS connections park too: when the park deadline passes in the middle of a record, crypto/tls
// keeps the part it has (a deadline is a temporary error) and goes on from there at the next
// read. WebSocket connections and platforms without the poller keep a goroutine per connection.

const (
	running int32 = iota
	parked
)

// wakeCause says why a parked connection's reader was started again.
type wakeCause uint8

const (
	wakeInput  wakeCause = iota + 1 // the socket became readable (or hung up)
	wakeTimer                       // the keep-alive deadline passed
	wakeClosed                      // closeConn closed it
)

// runReadLoop is the body of a reader goroutine: the first one after CONNECT (cause 0) and each
// one a wake-up starts. The connection finishes when the read loop ends without parking.
func (c *client) runReadLoop(cause wakeCause) {
	parkedNow := false
	defer func() {
		if !parkedNow {
			c.finish()
			c.srv.wg.Done()
		}
	}()
	defer c.recoverPanic()
	parkedNow = c.readLoop(cause)
}

// canPark reports whether this connection's reader may park when idle.
func (c *client) canPark() bool { return c.rd.canPark() && connPoller() != nil }

// park hands the idle connection to the poller and reports whether the calling reader must now
// return (true), or go on and wait in a read (false: the connection closed meanwhile, or the
// poller refused it; the read then fails or waits as it would without parking).
func (c *client) park() bool {
	p := connPoller()
	if !c.pollAdded {
		if err := p.add(c); err != nil {
			return false
		}
		c.pollAdded = true
	}
	c.armKeepAliveTimer()
	st := &c.srv.stats
	st.parkedNow.Add(1)
	c.parkState.Store(parked)
	// From here another goroutine may own the connection: only the hand-over below is allowed.
	if c.closed.Load() || p.arm(c) != nil {
		if c.parkState.CompareAndSwap(parked, running) {
			st.parkedNow.Add(-1)
			return false
		}
	}
	st.parks.Add(1)
	return true
}

// wake starts a reader for a parked connection; it does nothing for one that is running.
func (c *client) wake(cause wakeCause) {
	if c.parkState.CompareAndSwap(parked, running) {
		c.srv.stats.parkedNow.Add(-1)
		go c.runReadLoop(cause)
	}
}

// armKeepAliveTimer makes sure a parked connection wakes when its read deadline passes
// [MQTT-3.1.2-24]: the timer is moved only when the deadline moved (at most every deadlineSlack)
// or it has fired.
func (c *client) armKeepAliveTimer() {
	if c.keepAlive <= 0 {
		return
	}
	switch {
	case c.kaTimer == nil:
		c.kaTimer = time.AfterFunc(time.Duration(c.rd.kaAt-monoNow()), c.keepAliveExpired)
	case c.kaMoved || c.kaFired.Load():
		c.kaFired.Store(false)
		c.kaTimer.Reset(time.Duration(c.rd.kaAt - monoNow()))
	}
	c.kaMoved = false
}

func (c *client) keepAliveExpired() {
	c.kaFired.Store(true)
	c.wake(wakeTimer)
}

// unpark releases what parking holds once the connection has finished.
func (c *client) unpark() {
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	if c.pollAdded {
		connPoller().remove(c)
	}
}
