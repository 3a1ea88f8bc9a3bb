package broker

import (
	"net"
	"sync"
	"time"
)

// outbound is a connection's write side: producers append encoded packets to buf, and a writer
// goroutine, started only while there is something to write, hands the whole buffer to the kernel
// in one write. Idle connections therefore hold no writer goroutine and no buffer.
//
// A producer on a reader goroutine does not start the writer itself: it records the connection in
// its kick list and starts every writer once, after it has processed all the input it read in one
// go, so many messages leave in one write (see client.kicks).
type outbound struct {
	conn    net.Conn
	timeout time.Duration
	limit   int // pending bytes at which QoS 0 producers wait, then drop

	// mu guards everything that follows.
	mu        sync.Mutex
	buf       []byte
	spare     []byte
	writing   bool          // a writer goroutine is running
	queued    bool          // recorded in some reader's kick list
	closed    bool          // no more writes: the connection is closing
	pending   int           // bytes in buf plus bytes being written
	progress  chan struct{} // closed and replaced when a write completes, for waiting producers
	congested bool          // a producer gave up waiting; QoS 0 drops until pending halves
	onError   func(error)   // called once from the writer when a write fails
	onWritten func(n int)   // bytes written, for statistics
	// drained is closed when the writer stops with nothing pending after close.
	drained chan struct{}
}

const (
	maxSpareBuffer = 256 << 10 // larger buffers are dropped after use, not kept per connection
	maxWriteChunk  = 256 << 10
)

// startLocked starts the writer goroutine unless it runs already or there is nothing to write.
func (o *outbound) startLocked() {
	if o.writing || o.closed || len(o.buf) == 0 {
		return
	}
	o.writing = true
	go o.writeLoop()
}

// kick starts the writer if there is something to write.
func (o *outbound) kick() {
	o.mu.Lock()
	o.queued = false
	o.startLocked()
	o.mu.Unlock()
}

func (o *outbound) writeLoop() {
	for {
		o.mu.Lock()
		if len(o.buf) == 0 {
			o.writing = false
			if o.closed && o.drained != nil {
				close(o.drained)
				o.drained = nil
			}
			o.mu.Unlock()
			return
		}
		b := o.buf
		o.buf = o.spare[:0]
		o.spare = nil
		o.mu.Unlock()

		// Write in chunks so that producers waiting for room see progress often, not only after a
		// burst of megabytes has gone out.
		var n int
		var err error
		for off := 0; off < len(b) && err == nil; off += n {
			chunk := b[off:min(len(b), off+maxWriteChunk)]
			_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
			n, err = o.conn.Write(chunk)
			o.mu.Lock()
			o.pending -= n
			if o.progress != nil {
				close(o.progress)
				o.progress = nil
			}
			if o.congested && o.pending < o.limit/2 {
				o.congested = false
			}
			o.mu.Unlock()
			if o.onWritten != nil && n > 0 {
				o.onWritten(n)
			}
		}

		o.mu.Lock()
		if cap(b) <= maxSpareBuffer {
			o.spare = b[:0]
		}
		if err != nil {
			o.closed = true
			o.buf = nil
			o.pending = 0
			o.writing = false
			if o.drained != nil {
				close(o.drained)
				o.drained = nil
			}
			onError := o.onError
			o.onError = nil
			o.mu.Unlock()
			if onError != nil {
				onError(err)
			}
			return
		}
		o.mu.Unlock()
	}
}

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
		go o.writeLoop()
	}
	ch := make(chan struct{})
	o.drained = ch
	o.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(d):
	}
}
