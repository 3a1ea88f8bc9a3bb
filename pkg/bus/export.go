package bus

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// The export writer: how a broker feeds the BigQuery adapter.
//
// Export encodes a message at once into the open chunk of a bounded queue and returns. A chunk
// is one envelope batch (AppendBatchHeader, then up to ExportBatch messages or about 256 KiB)
// and becomes one stream entry. One goroutine takes every chunk queued (the open one included,
// which seals it) and sends them to Redis in one pipeline of
//
//	XADD <Names.Export()> MAXLEN ~ <ExportMaxLen> * m <envelope batch>
//
// A lone open chunk that is not full waits up to ExportDelay for more messages first (Export
// wakes the writer as soon as a second chunk opens), so under load every entry is full and
// Redis does one XADD per ExportBatch messages, and under light load a message waits a few
// milliseconds. An XADD costs Redis several microseconds whatever its size: S1 at 400k
// messages a second made entries of a handful of messages without the delay, and Redis' XADDs
// then took a third as much CPU as the broker itself, on the same two cores. (Before entries
// held several messages, S1's million messages a second cost one XADD each and dropped half.)
//
// A message entry is stored compressed (ExportCompressed, then the S2 block of the envelope
// batch) when that saves at least an eighth: MQTT payloads and the fields around them repeat a
// lot (device ids, topics, JSON keys), and the bytes Redis stores are what its XADDs cost (the
// copies and the fresh pages of a growing stream) and what its memory holds. S2 compresses at
// about a gigabyte a second on one core; S1's messages shrink 5x, JSON-like ones about 3.5x,
// random bytes 1.7x. The adapter reads both forms (DecodeExportEntry).
//
// A failed pipeline is sent again, only the entries whose XADD failed, after a backoff, and
// again, until Redis takes it or the bus closes; meanwhile new messages queue up to ExportQueue
// (and ExportQueueBytes) and are dropped and counted beyond it. The export is at-least-once: an
// XADD whose reply was lost and that is sent again is in the stream twice with the same message
// ids, so the reader deduplicates by message id, never by stream entry id.
//
// Unlike the pub/sub path, the export does not fail fast while the subscription connections
// are down: the stream is durable, and a short Redis outage should cost queue space, not data.

// ExportField is the stream entry field that holds the envelope batch (DecodeExportEntry).
const ExportField = "m"

// ExportCompressed is the first byte of a compressed export entry: an S2 block follows, whose
// content is an envelope batch. (An envelope batch starts with EnvelopeVersion.)
const ExportCompressed = 0xC1

// exportChunkBytes seals a chunk that reached this many bytes before ExportBatch messages.
const exportChunkBytes = 256 << 10

// maxPipelineChunks bounds the entries of one pipeline.
const maxPipelineChunks = 64

// maxFreeChunks bounds the chunks kept for reuse.
const maxFreeChunks = maxPipelineChunks

// exportChunk is one future stream entry: an envelope batch of n messages, or with presence set
// a presence batch of n events (ExportPresence).
type exportChunk struct {
	buf      []byte
	n        int
	presence bool
	opened   time.Time // when its first item came: the writer lets it fill for ExportDelay
	packed   []byte    // the entry as sent: buf, or zbuf holding ExportCompressed and an S2 block
	zbuf     []byte
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

	kick  chan struct{} // wakes the writer
	abort chan struct{} // closed when Close stops waiting for Redis
	done  chan struct{} // closed when the writer has returned

	exported, entries, dropped, retries, pipelines atomic.Uint64
	presence, presenceDropped                      atomic.Uint64
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
// Export does not wait for Redis: the writer goroutine sends queued messages in entries of up to
// ExportBatch messages, all entries ready in one pipeline, and retries until Redis accepts them.
func (b *Bus) Export(m *Message) bool {
	var base ExportBase
	base.SetFrom(m)
	one := make([]byte, 0, 64+len(m.Origin)+len(m.ClientID)+len(m.Username)+len(m.Topic)+len(m.Payload))
	one, err := AppendExportMessage(AppendExportBase(AppendExportBatchHeader(one), &base), &base, m)
	if err != nil {
		b.export.dropped.Add(1)
		return false
	}
	return b.ExportBatch(one, 1) == 1
}

// ExportBatch queues the n messages of batch (an export batch: AppendExportBatchHeader, then for
// each publisher AppendExportBase and AppendExportMessage for each of its messages) for the
// export stream, like Export, under one lock for all of them: a publisher's connection encodes
// what it exports into a batch of its own while it handles a burst of input and hands it over
// once. batch is copied before ExportBatch returns. Messages beyond the queue's room (or after a
// malformed frame) are dropped and counted; it returns how many were queued.
//
// The frames go into the open chunk, and the next ones when it fills: each run of messages in a
// chunk is preceded by its publisher frame, repeated (with the id and time of the message before,
// wire.AdvanceExportBase) when a publisher's messages span chunks.
func (b *Bus) ExportBatch(batch []byte, n int) int {
	e := b.export
	if n <= 0 {
		return 0
	}
	queued, wake := 0, false
	if len(batch) > 1 && batch[0] == ExportVersion {
		e.mu.Lock()
		queued, wake = b.queueFramesLocked(batch[1:], e.queued == 0)
		e.mu.Unlock()
	}
	if queued > 0 && wake {
		e.wake()
	}
	if queued < n {
		e.dropped.Add(uint64(n - queued))
	}
	return queued
}

// queueFramesLocked appends the frames of an export batch to the queue, as ExportBatch
// describes, until the queue is full; it returns how many messages it queued and whether the
// writer needs waking (wake, or a second chunk opened).
func (b *Bus) queueFramesLocked(frames []byte, wake bool) (int, bool) {
	e := b.export
	var (
		base   []byte       // the publisher frame of the messages that follow
		after  []byte       // the frames from the one after base
		baseIn *exportChunk // the chunk base was last copied into
		queued int
	)
	for len(frames) > 0 && !e.closed {
		size, publisher, ok := wire.ExportFrame(frames)
		if !ok {
			break
		}
		if publisher {
			base, baseIn, frames = frames[:size], nil, frames[size:]
			after = frames
			continue
		}
		if base == nil || e.queued >= b.opts.ExportQueue || e.bytes+len(base)+size > b.opts.ExportQueueBytes {
			break
		}
		// The run of message frames that fits in the open chunk (or a new one) and in the queue.
		c, opened := e.openChunkLocked(false, len(base)+size, b.opts.ExportBatch)
		wake = wake || opened && len(e.chunks) == 2
		if c != baseIn {
			// A message's id and time are differences from the one before: a chunk that takes
			// the batch from the middle of a publisher's run starts with a publisher frame
			// carrying the id and time of the message before.
			if done := len(after) - len(frames); done > 0 {
				next, err := wire.AdvanceExportBase(nil, base, after[:done])
				if err != nil {
					break
				}
				base, after = next, frames
			}
			c.buf = append(c.buf, base...)
			e.bytes += len(base)
			baseIn = c
		}
		run, k := size, 1
		for run < len(frames) && c.n+k < b.opts.ExportBatch && e.queued+k < b.opts.ExportQueue {
			next, publisher, ok := wire.ExportFrame(frames[run:])
			if !ok || publisher || len(c.buf)+run+next > exportChunkBytes || e.bytes+run+next > b.opts.ExportQueueBytes {
				break
			}
			run += next
			k++
		}
		c.buf = append(c.buf, frames[:run]...)
		c.n += k
		e.queued += k
		e.bytes += run
		queued += k
		frames = frames[run:]
	}
	return queued, wake
}

// ExportPresence queues a presence event for the export stream, like Export: encoded at once,
// never waiting for Redis, false (counted in Stats.ExportPresenceDropped) when the queue is full
// or the bus closed. Events travel in entries of their own (field PresenceField), in order with
// the messages around them.
func (b *Bus) ExportPresence(p *Presence) bool {
	if !b.enqueueExport(true, p.Size(), func(dst []byte) []byte { return AppendPresence(dst, p) }) {
		b.export.presenceDropped.Add(1)
		return false
	}
	return true
}

// enqueueExport appends one item of size bytes (encode writes it) to the export queue, in a
// chunk of its kind, and wakes the writer when it was idle or when it lets a lone chunk fill and
// that one is sealed. It reports false when the queue is full or the bus closed.
func (b *Bus) enqueueExport(presence bool, size int, encode func([]byte) []byte) bool {
	e := b.export
	e.mu.Lock()
	if e.closed || e.queued >= b.opts.ExportQueue || e.bytes+size > b.opts.ExportQueueBytes {
		e.mu.Unlock()
		return false
	}
	c, opened := e.openChunkLocked(presence, size, b.opts.ExportBatch)
	c.buf = encode(c.buf)
	c.n++
	e.queued++
	e.bytes += size
	wake := e.queued == 1 || opened && len(e.chunks) == 2
	e.mu.Unlock()
	if wake {
		e.wake()
	}
	return true
}

// openChunkLocked returns the chunk to append an item of size bytes to: the open (last) chunk
// when it is of the same kind and has room, else a new one (opened true).
func (e *exporter) openChunkLocked(presence bool, size, maxItems int) (c *exportChunk, opened bool) {
	if n := len(e.chunks); n > 0 {
		c := e.chunks[n-1]
		if c.presence == presence && c.n < maxItems && len(c.buf)+size <= exportChunkBytes {
			return c, false
		}
	}
	c = e.newChunkLocked()
	c.presence = presence
	if presence {
		c.buf = AppendBatchHeader(c.buf)
	} else {
		c.buf = AppendExportBatchHeader(c.buf)
	}
	c.opened = time.Now()
	e.chunks = append(e.chunks, c)
	return c, true
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

// pack sets c.packed: c.buf, or for a message chunk when compress is set and that saves an
// eighth, ExportCompressed and the S2 block of c.buf.
func (c *exportChunk) pack(compress bool) {
	c.packed = c.buf
	if !compress || c.presence || len(c.buf) < 256 {
		return
	}
	need := 1 + s2.MaxEncodedLen(len(c.buf))
	if cap(c.zbuf) < need {
		c.zbuf = make([]byte, need)
	}
	z := c.zbuf[:need]
	z[0] = ExportCompressed
	n := len(s2.Encode(z[1:], c.buf))
	if 1+n > len(c.buf)-len(c.buf)/8 {
		return
	}
	c.packed = z[:1+n]
}

// releaseLocked takes a written (or abandoned) chunk off the queue's counts.
func (e *exporter) releaseLocked(c *exportChunk) {
	e.queued -= c.n
	e.bytes -= len(c.buf) - 1
	c.buf, c.n, c.packed = c.buf[:0], 0, nil
	if len(e.free) < maxFreeChunks && cap(c.buf) <= 2*exportChunkBytes {
		e.free = append(e.free, c)
	}
}

// exportLoop is the writer goroutine.
func (b *Bus) exportLoop() {
	e := b.export
	defer close(e.done)
	var (
		work []*exportChunk
		cmds []*redis.StringCmd
	)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
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
		// A lone chunk with room left fills for ExportDelay from its first message.
		if c := e.chunks[0]; len(e.chunks) == 1 && !e.closed && c.n < b.opts.ExportBatch && len(c.buf) < exportChunkBytes/2 {
			if wait := b.opts.ExportDelay - time.Since(c.opened); wait > 0 {
				e.mu.Unlock()
				linger.Reset(wait)
				select {
				case <-e.kick:
					linger.Stop()
				case <-linger.C:
				case <-e.abort:
				}
				continue
			}
		}
		// Taking a chunk seals it: Export appends only to the last chunk of the list.
		n := min(len(e.chunks), maxPipelineChunks)
		work = append(work[:0], e.chunks[:n]...)
		rest := copy(e.chunks, e.chunks[n:])
		clear(e.chunks[rest:])
		e.chunks = e.chunks[:rest]
		e.mu.Unlock()

		for _, c := range work {
			c.pack(!b.opts.ExportUncompressed)
		}
		cmds = b.writeChunks(work, cmds)

		e.mu.Lock()
		for _, c := range work {
			e.releaseLocked(c)
		}
		e.mu.Unlock()
		clear(work)
	}
}

// writeChunks sends each chunk as one XADD, all in one pipeline, until Redis accepted every one
// or Close gives up (the rest are then counted as dropped).
func (b *Bus) writeChunks(work []*exportChunk, cmds []*redis.StringCmd) []*redis.StringCmd {
	e := b.export
	stream := b.names.Export()
	maxLen := strconv.FormatInt(b.opts.ExportMaxLen, 10)
	todo := work
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.WriteTimeout+b.opts.ReadTimeout)
		pipe := b.pubc().Pipeline()
		cmds = cmds[:0]
		for _, c := range todo {
			field := ExportField
			if c.presence {
				field = PresenceField
			}
			cmds = append(cmds, pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, MaxLen: b.opts.ExportMaxLen,
				Approx: true, ID: "*", Values: []any{field, c.packed}}))
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		cancel()
		e.pipelines.Add(1)
		failed := todo[:0:0]
		var firstErr error
		for k, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				failed = append(failed, todo[k])
				if firstErr == nil {
					firstErr = err
				}
			} else {
				e.counted(todo[k]).Add(uint64(todo[k].n))
				e.entries.Add(1)
			}
		}
		clear(cmds)
		if len(failed) == 0 {
			return cmds
		}
		todo = failed
		e.retries.Add(1)
		b.log.Warn().Err(firstErr).Int("entries", len(todo)).Int("attempt", attempt).
			Str("stream", stream).Str("maxlen", maxLen).Msg("bus: export to the stream failed; retrying")
		t := time.NewTimer(b.backoff(attempt))
		select {
		case <-t.C:
		case <-e.abort:
			t.Stop()
			for _, c := range todo {
				e.droppedOf(c).Add(uint64(c.n))
			}
			b.log.Error().Int("entries", len(todo)).Msg("bus: closing: export entries Redis did not take are dropped")
			return cmds
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
		e.droppedOf(c).Add(uint64(c.n))
		e.releaseLocked(c)
	}
	e.chunks = nil
	e.mu.Unlock()
}

// counted returns the counter of c's items once written: messages or presence events.
func (e *exporter) counted(c *exportChunk) *atomic.Uint64 {
	if c.presence {
		return &e.presence
	}
	return &e.exported
}

// droppedOf returns the counter of c's items when dropped.
func (e *exporter) droppedOf(c *exportChunk) *atomic.Uint64 {
	if c.presence {
		return &e.presenceDropped
	}
	return &e.dropped
}

// exportStats fills the export fields of s.
func (e *exporter) stats(s *Stats) {
	s.Exported = e.exported.Load()
	s.ExportEntries = e.entries.Load()
	s.ExportDropped = e.dropped.Load()
	s.ExportRetries = e.retries.Load()
	s.ExportPipelines = e.pipelines.Load()
	s.ExportPresence = e.presence.Load()
	s.ExportPresenceDropped = e.presenceDropped.Load()
	e.mu.Lock()
	s.ExportQueued = uint64(e.queued)
	e.mu.Unlock()
}
