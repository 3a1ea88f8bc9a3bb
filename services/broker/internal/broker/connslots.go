package broker

import (
	"runtime"
	"time"
)

// Connect slots bound how many connecting clients are handled at once: their TLS handshakes and
// CONNECT packets. When a replica dies, its devices reconnect to the others all at once; handled
// all together, every handshake would progress at the pace of all of them, each would take as long
// as the whole storm, and most would hit the CONNECT timeout and start again. With slots they are
// handled a few at a time, each in a millisecond or so, and the rest wait their turn (accepted,
// their CONNECT timeout running).
//
// A connection holds a slot only while it has input to handle: it takes one once its first bytes
// have arrived and gives it back whenever it waits for more (sockio.Conn.SetReadHook), so a
// client that connects and stays silent, or sends its handshake a byte at a time, holds none. The
// slot is given back once the CONNECT packet is read; authentication and the session follow
// without one. WebSocket connections (no raw socket under them) take no slot.
type connSlots chan struct{}

func newConnSlots(n int) connSlots {
	if n <= 0 {
		n = 4 * runtime.GOMAXPROCS(0)
	}
	return make(connSlots, n)
}

// holdSlots makes the connecting client take a slot whenever it has input and give it back while it
// waits, until releaseSlot. deadline is its CONNECT deadline: a client still waiting for a slot
// then is closed (and counted as a CONNECT timeout).
func (c *client) holdSlots(deadline time.Time) {
	raw := c.rd.raw
	if raw == nil {
		return
	}
	raw.SetReadHook(func(waiting bool) {
		switch {
		case waiting && c.slotHeld:
			<-c.srv.connSlots
			c.slotHeld = false
		case !waiting && !c.slotHeld:
			c.slotHeld = c.srv.connSlots.take(deadline)
			if !c.slotHeld {
				c.setReason(discConnectTimeout)
				c.closeConn()
			}
		}
	})
}

// releaseSlot ends holdSlots.
func (c *client) releaseSlot() {
	if c.rd.raw != nil {
		c.rd.raw.SetReadHook(nil)
	}
	if c.slotHeld {
		<-c.srv.connSlots
		c.slotHeld = false
	}
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
