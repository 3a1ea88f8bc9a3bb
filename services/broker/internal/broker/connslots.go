package broker

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Connect slots bound how many connecting clients are handled at once: their TLS handshakes and
// CONNECT packets. When a replica dies, its devices reconnect to the others all at once; handled
// all together, every handshake would progress at the pace of all of them, each would take as long
// as the whole storm, and most would hit the CONNECT timeout and start again. With slots they are
// handled a few at a time, each in a millisecond or so, and the rest wait their turn (accepted,
// their CONNECT timeout running).
//
// A connection takes a slot only once its first bytes have arrived, keeps it while it waits for
// the rest for up to slotHold, and gives it back when it waits after that
// (sockio.Conn.SetReadHook), so a client that connects and stays silent holds none, and one that
// sends its handshake a byte at a time holds one for slotHold at a time. The
// slot is given back once the CONNECT packet is read; authentication and the session follow
// without one. WebSocket connections (no raw socket under them) take no slot.
type connSlots chan struct{}

func newConnSlots(n int) connSlots {
	if n <= 0 {
		n = 4 * runtime.GOMAXPROCS(0)
	}
	return make(connSlots, n)
}

// holdSlots makes the connecting client take a slot once it has input and keep it while it waits
// for more (its handshake's next flight) for up to slotHold in all; past that, a wait gives it up
// and the next input queues for one again. A client that shakes hands at a normal pace keeps its
// slot to the end and does not queue behind every newcomer after each round trip; a slow or
// trickling one holds one for slotHold at a time. deadline is its CONNECT deadline: a client still
// waiting for a slot then is closed (and counted as a CONNECT timeout). releaseSlot ends it.
func (c *client) holdSlots(deadline time.Time) {
	raw := c.rd.raw
	if raw == nil {
		return
	}
	h := &slotHolder{slots: c.srv.connSlots}
	c.slot = h
	raw.SetReadHook(func(waiting bool) {
		if waiting {
			h.waiting()
		} else if !h.input(deadline) {
			c.setReason(discConnectTimeout)
			c.closeConn()
		}
	})
}

// slotHolder is a connecting client's hold on a slot.
type slotHolder struct {
	slots connSlots
	held  atomic.Bool
	since time.Time   // when the slot held was taken
	timer *time.Timer // gives the slot up once a wait has used up slotHold
}

// slotHold is how long a connecting client may keep a slot while it waits for its own input.
const slotHold = 500 * time.Millisecond

func (h *slotHolder) waiting() {
	if !h.held.Load() {
		return
	}
	left := slotHold - time.Since(h.since)
	if left <= 0 {
		h.release()
		return
	}
	h.timer = time.AfterFunc(left, h.release)
}

// input takes a slot for input that has arrived, unless one is held; false: none came in time.
func (h *slotHolder) input(deadline time.Time) bool {
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	if h.held.Load() {
		return true
	}
	if !h.slots.take(deadline) {
		return false
	}
	h.since = time.Now()
	h.held.Store(true)
	return true
}

// release gives the slot back, once (the timer and the reader may both try).
func (h *slotHolder) release() {
	if h.held.CompareAndSwap(true, false) {
		<-h.slots
	}
}

// releaseSlot ends holdSlots: the CONNECT packet is read (or the connection failed first).
func (c *client) releaseSlot() {
	h := c.slot
	if h == nil {
		return
	}
	c.rd.raw.SetReadHook(nil)
	if h.timer != nil {
		h.timer.Stop()
	}
	h.release()
	c.slot = nil
}

// take waits for a slot until deadline.
func (s connSlots) take(deadline time.Time) bool {
	select {
	case s <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case s <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}
