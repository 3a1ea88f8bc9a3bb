package bus

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The export writer: how a broker feeds the BigQuery adapter.
//
// Export encodes a message at once into the open chunk of a bounded queue and returns; one
// goroutine takes the oldest chunk and sends it to Redis as one pipeline of
//
//	XADD <Names.Export()> MAXLEN ~ <ExportMaxLen> * m <one-message envelope batch>
//
// A failed pipeline is sent again, only the entries whose XADD failed, after a backoff, and
// again, until Redis takes it or the bus closes; meanwhile new messages queue up to ExportQueue
// (and ExportQueueBytes) and are dropped and counted beyond it. The export is at-least-once: an
// XADD whose reply was lost and that is sent again is in the stream twice with the same message
// id, so the reader deduplicates by message id, never by stream entry id.
//
// Unlike the pub/sub path, the export does not fail fast while the subscription connections
// are down: the stream is durable, and a short Redis outage should cost queue space, not data.

// ExportField is the stream entry field that holds the envelope batch (one message).
const ExportField = "m"

// exportChunkBytes seals a chunk that reached this many bytes before ExportBatch messages, so a
// pipeline stays a reasonable size when payloads are large.
const exportChunkBytes = 1 << 20

// maxFreeChunks bounds the chunks kept for reuse.
const maxFreeChunks = 4

// exportChunk is one future pipeline: envelopes back to back in buf, ends[i] closing the i-th.
type exportChunk struct {
	buf  []byte
	ends []int
}

// exporter is the state of the export queue; it lives in Bus.export.
type exporter struct {
	// mu guards everything up to the counters.
	mu     sync.Mutex
	closed bool
	chunks []*exportChunk // oldest first; the last one is open while Export may append to it
	queued int            // messages queued or being written
	bytes  int            // their encoded bytes
	free   []*exportChunk

	args []any // the writer's argument array for XADDs (writer goroutine only)

	kick  chan struct{} // wakes the writer
	abort chan struct{} // closed when Close stops waiting for Redis
	done  chan struct{} // closed when the writer has returned

	exported, dropped, retries, pipelines atomic.Uint64
}

func newExporter() *exporter {
	return &exporter{
		kick:  make(chan struct{}, 1),
		abort: make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// Export queues m for the export stream (Names.Export) and returns at once: m is encoded before
// Export returns, so the caller may reuse it and its buffers. It returns false, and counts the
// message in Stats.ExportDropped, when the queue is full (ExportQueue messages or
// ExportQueueBytes bytes waiting), when the bus is closed, or for a QoS above 2.
//
// Export does not wait for Redis: the writer goroutine sends queued messages in pipelines of up
// to ExportBatch XADDs and retries until Redis accepts them.
func (b *Bus) Export(m *Message) bool {
	e := b.export
	if m.QoS > 2 {
		e.dropped.Add(1)
		return false
	}
	size := 1 + m.Size()
	e.mu.Lock()
	if e.closed || e.queued >= b.opts.ExportQueue || e.bytes+size > b.opts.ExportQueueBytes {
		e.mu.Unlock()
		e.dropped.Add(1)
		return false
	}
	var c *exportChunk
	if n := len(e.chunks); n > 0 {
		c = e.chunks[n-1]
		if len(c.ends) >= b.opts.ExportBatch || len(c.buf) >= exportChunkBytes {
			c = nil
		}
	}
	if c == nil {
		c = e.newChunkLocked()
		e.chunks = append(e.chunks, c)
	}
	c.buf = AppendBatchHeader(c.buf)
	c.buf, _ = AppendMessage(c.buf, m) // QoS checked above: cannot fail
	c.ends = append(c.ends, len(c.buf))
	e.queued++
	e.bytes += size
	wake := e.queued == 1 // the writer was idle (or is about to look again anyway)
	e.mu.Unlock()
	if wake {
		e.wake()
	}
	return true
}

func (e *exporter) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *exporter) newChunkLocked() *exportChunk {
	if n := len(e.free); n > 0 {
		c := e.free[n-1]
		e.free[n-1] = nil
		e.free = e.free[:n-1]
		return c
	}
	return &exportChunk{}
}

// releaseLocked takes a written (or abandoned) chunk off the queue's counts.
func (e *exporter) releaseLocked(c *exportChunk) {
	e.queued -= len(c.ends)
	e.bytes -= len(c.buf)
	c.buf, c.ends = c.buf[:0], c.ends[:0]
	if len(e.free) < maxFreeChunks && cap(c.buf) <= 2*exportChunkBytes {
		e.free = append(e.free, c)
	}
}

// exportLoop is the writer goroutine.
func (b *Bus) exportLoop() {
	e := b.export
	defer close(e.done)
	var (
		cmds []*redis.StringCmd
		idx  []int
	)
	for {
		select {
		case <-e.abort:
			return // closeExport counts what is left
		default:
		}
		e.mu.Lock()
		if len(e.chunks) == 0 {
			closed := e.closed
			e.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-e.kick:
			case <-e.abort:
			}
			continue
		}
		c := e.chunks[0] // taking it seals it: Export appends only to the last chunk of the list
		copy(e.chunks, e.chunks[1:])
		e.chunks[len(e.chunks)-1] = nil
		e.chunks = e.chunks[:len(e.chunks)-1]
		e.mu.Unlock()

		cmds, idx = b.writeChunk(c, cmds, idx)

		e.mu.Lock()
		e.releaseLocked(c)
		e.mu.Unlock()
	}
}

// writeChunk sends c's entries until Redis accepted every one, or until Close gives up (the
// rest are counted as dropped).
func (b *Bus) writeChunk(c *exportChunk, cmds []*redis.StringCmd, idx []int) ([]*redis.StringCmd, []int) {
	e := b.export
	idx = idx[:0]
	for i := range c.ends {
		idx = append(idx, i)
	}
	stream := b.names.Export()
	var streamArg, maxLenArg any = stream, strconv.FormatInt(b.opts.ExportMaxLen, 10)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.WriteTimeout+b.opts.ReadTimeout)
		pipe := b.pubc().Pipeline()
		cmds = cmds[:0]
		// One argument array for the whole pipeline, sliced per command: go-redis keeps a
		// command's arguments until Exec returns, and the array is reused after that.
		args := e.args[:0]
		for _, i := range idx {
			start := 0
			if i > 0 {
				start = c.ends[i-1]
			}
			k := len(args)
			args = append(args, "xadd", streamArg, "maxlen", "~", maxLenArg, "*", ExportField, c.buf[start:c.ends[i]])
			cmd := redis.NewStringCmd(ctx, args[k:len(args):len(args)]...)
			_ = pipe.Process(ctx, cmd)
			cmds = append(cmds, cmd)
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		cancel()
		e.pipelines.Add(1)
		failed := idx[:0]
		var firstErr error
		for k, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				failed = append(failed, idx[k])
				if firstErr == nil {
					firstErr = err
				}
			} else {
				e.exported.Add(1)
			}
		}
		clear(cmds)
		clear(args)
		e.args = args[:0]
		idx = failed
		if len(idx) == 0 {
			return cmds, idx
		}
		e.retries.Add(1)
		b.log.Warn().Err(firstErr).Int("entries", len(idx)).Int("attempt", attempt).
			Str("stream", stream).Msg("bus: export to the stream failed; retrying")
		t := time.NewTimer(b.backoff(attempt))
		select {
		case <-t.C:
		case <-e.abort:
			t.Stop()
			e.dropped.Add(uint64(len(idx)))
			b.log.Error().Int("entries", len(idx)).Msg("bus: closing: export entries Redis did not take are dropped")
			return cmds, idx[:0]
		}
	}
}

// closeExport stops Export, lets the writer send what is queued, waits at most
// WriteTimeout+ReadTimeout for Redis when it fails, and drops (counting) what is left then.
func (b *Bus) closeExport() {
	e := b.export
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.wake()
	t := time.AfterFunc(b.opts.WriteTimeout+b.opts.ReadTimeout, func() { close(e.abort) })
	<-e.done
	if t.Stop() {
		close(e.abort)
	}
	e.mu.Lock()
	for _, c := range e.chunks { // only when aborted: the writer returns with an empty queue otherwise
		e.dropped.Add(uint64(len(c.ends)))
		e.releaseLocked(c)
	}
	e.chunks = nil
	e.mu.Unlock()
}

// exportStats fills the export fields of s.
func (e *exporter) stats(s *Stats) {
	s.Exported = e.exported.Load()
	s.ExportDropped = e.dropped.Load()
	s.ExportRetries = e.retries.Load()
	s.ExportPipelines = e.pipelines.Load()
	e.mu.Lock()
	s.ExportQueued = uint64(e.queued)
	e.mu.Unlock()
}
