package broker

import (
	"net"
	"sync"
	"time"
)

// outbound is a connection's write side. Producers append encoded packets to buf; whoever takes
// the writer role hands everything pending to the kernel at once. Idle connections hold no writer
// goroutine and no buffer.
//
// A producer on a reader goroutine does not write itself: it records the connection in its kick
// list, and once it has handled all the input of one read it kicks every connection on the list
// (see client.kicks). kick first tries one non-blocking write on the reader's goroutine — the
// common case, where the socket has room, then costs no goroutine switch and adds no latency —
// and only when the socket is full starts a writer goroutine that waits for it.
type outbound struct {
	c     *client // the connection this is the output of
	conn  net.Conn
	limit int // pending bytes at which QoS 0 producers wait, then drop
	// deadline is set while a write deadline is on the connection; only the writer role uses it.
	deadline bool

	// mu guards everything that follows.
	mu        sync.Mutex
	buf       []byte
	spare     []byte
	writing   bool          // the writer role is taken (a kick's attempt or a writer goroutine)
	queued    bool          // recorded in some reader's kick list
	closed    bool          // no more writes: the connection is closing
	pending   int           // bytes in buf plus bytes being written
	progress  chan struct{} // closed and replaced when a write completes, for waiting producers
	congested bool          // a producer gave up waiting; QoS 0 drops until pending halves
	failed    bool          // a write failed and the client was told (failLocked)
	// drained is closed when the writer stops with nothing pending after close.
	drained chan struct{}
}

const (
	maxSpareBuffer = 256 << 10 // larger buffers are dropped after use, not kept per connection
	maxWriteChunk  = 256 << 10
)

// tryWriter writes as much as a connection takes now, never waiting (sockio.Conn).
type tryWriter interface {
	TryWrite(p []byte) (int, error)
}

func (o *outbound) init(c *client, conn net.Conn, limit int) {
	o.c, o.conn, o.limit = c, conn, limit
}

// startLocked starts a writer goroutine unless the writer role is taken or there is nothing to write.
func (o *outbound) startLocked() {
	if o.writing || o.closed || len(o.buf) == 0 {
		return
	}
	o.writing = true
	go o.writeLoop(nil, nil)
}

// takeLocked swaps the pending buffer out for writing.
func (o *outbound) takeLocked() []byte {
	b := o.buf
	o.buf = o.spare[:0]
	o.spare = nil
	return b
}

// wroteLocked accounts for n bytes handed to the kernel.
func (o *outbound) wroteLocked(n int) {
	o.pending -= n
	if o.progress != nil {
		close(o.progress)
		o.progress = nil
	}
	if o.congested && o.pending < o.limit/2 {
		o.congested = false
	}
}

// kick writes what is pending: one non-blocking attempt here, the rest by a writer goroutine.
func (o *outbound) kick() {
	o.mu.Lock()
	o.queued = false
	if o.writing || o.closed || len(o.buf) == 0 {
		o.mu.Unlock()
		return
	}
	o.writing = true
	b := o.takeLocked()
	o.mu.Unlock()
	try, ok := o.conn.(tryWriter)
	if !ok {
		go o.writeLoop(b, b)
		return
	}
	if o.deadline {
		// A writer goroutine left its write deadline behind; the attempt would obey it.
		_ = o.conn.SetWriteDeadline(time.Time{})
		o.deadline = false
	}
	n, err := try.TryWrite(b)
	if n > 0 {
		o.written(n)
	}
	o.mu.Lock()
	o.wroteLocked(n)
	if err != nil {
		o.failLocked(err) // unlocks
		return
	}
	if n < len(b) {
		o.mu.Unlock()
		go o.writeLoop(b[n:], b)
		return
	}
	o.recycleLocked(b)
	if len(o.buf) > 0 {
		// More arrived meanwhile (another producer): let a goroutine take it.
		o.mu.Unlock()
		go o.writeLoop(nil, nil)
		return
	}
	o.stopLocked()
	o.mu.Unlock()
}

// writeLoop is the writer goroutine. rest is what remains of whole from an earlier attempt.
func (o *outbound) writeLoop(rest, whole []byte) {
	for {
		if whole == nil {
			o.mu.Lock()
			if len(o.buf) == 0 {
				o.stopLocked()
				o.mu.Unlock()
				return
			}
			whole = o.takeLocked()
			rest = whole
			o.mu.Unlock()
		}
		// Write in chunks so that producers waiting for room see progress often, not only after a
		// burst of megabytes has gone out.
		var err error
		for len(rest) > 0 && err == nil {
			var n int
			_ = o.conn.SetWriteDeadline(time.Now().Add(o.c.srv.cfg.WriteTimeout))
			o.deadline = true
			n, err = o.conn.Write(rest[:min(len(rest), maxWriteChunk)])
			rest = rest[n:]
			if n > 0 {
				o.written(n)
			}
			o.mu.Lock()
			o.wroteLocked(n)
			o.mu.Unlock()
		}
		o.mu.Lock()
		if err != nil {
			o.failLocked(err) // unlocks
			return
		}
		o.recycleLocked(whole)
		o.mu.Unlock()
		whole, rest = nil, nil
	}
}

func (o *outbound) recycleLocked(b []byte) {
	if cap(b) <= maxSpareBuffer && o.spare == nil {
		o.spare = b[:0]
	}
}

// stopLocked gives up the writer role.
func (o *outbound) stopLocked() {
	o.writing = false
	if o.closed && o.drained != nil {
		close(o.drained)
		o.drained = nil
	}
}

// failLocked ends the connection's output after a failed write. It unlocks mu.
func (o *outbound) failLocked(err error) {
	o.closed = true
	o.buf = nil
	o.pending = 0
	o.stopLocked()
	first := !o.failed
	o.failed = true
	o.mu.Unlock()
	if first {
		o.c.closeConn()
	}
}

// written counts n bytes written to the client.
func (o *outbound) written(n int) { o.c.srv.stats.bytesSent.Add(int64(n)) }

// waitProgressLocked is called with mu held when pending is over the limit. It releases mu while
// it waits for the writer to finish a write, for at most d, and reports whether the writer made
// progress. The caller must have started the writer.
func (o *outbound) waitProgressLocked(d time.Duration) bool {
	if o.progress == nil {
		o.progress = make(chan struct{})
	}
	ch := o.progress
	o.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		o.mu.Lock()
		return true
	case <-t.C:
		o.mu.Lock()
		return false
	}
}

// closeAndDrain stops accepting writes and waits up to d for what is pending to be written.
func (o *outbound) closeAndDrain(d time.Duration) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	if !o.writing {
		if len(o.buf) == 0 {
			o.mu.Unlock()
			return
		}
		o.writing = true
		go o.writeLoop(nil, nil)
	}
	ch := make(chan struct{})
	o.drained = ch
	o.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(d):
	}
}

// isClosed reports whether the connection takes no more output.
func (o *outbound) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}
