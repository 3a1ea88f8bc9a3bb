package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The publish path. Lock order: b.mu only; done callbacks and Redis calls run without it.
//
// Publish appends to dest.cur under b.mu. The flusher takes every pending batch of every
// destination at once (the buffers move to it; new messages start fresh ones from the free
// list), sends them as one pipeline, calls the dones, and returns the batches to the free list.
//
// Memory is bounded by MaxPendingBytes of encoded messages (queued plus in flight), plus per
// pending message one func value in the batch's done slice; the free list keeps at most
// maxFreeBatches buffers of at most 2×BatchMaxBytes.

const (
	maxFreeBatches = 64
	destIdle       = time.Minute      // a destination unused this long is forgotten
	sweepEvery     = 10 * time.Second // how often the flusher looks for idle destinations
)

// batch is one future PUBLISH: a batch header, messages, and their callbacks.
type batch struct {
	channel string
	buf     []byte
	dones   []func(error)
	size    int // bytes counted in b.pending
}

// dest is a destination replica's queue.
type dest struct {
	channel string
	cur     *batch   // open batch
	sealed  []*batch // full batches waiting for the flusher
	queued  bool     // in b.ready
	used    time.Time
}

func notify(done func(error), err error) {
	if done != nil {
		done(err)
	}
}

// Publish queues m for the replica to and returns. m is encoded before Publish returns, so the
// caller may reuse it at once.
//
// done, if not nil, is called exactly once: with nil after Redis accepted the PUBLISH that
// carried m and reported at least one receiver; with an error wrapping ErrNoReceiver,
// ErrUnavailable, ErrOverloaded or ErrClosed otherwise (or ErrBadMessage: QoS 3, a bad id). It is
// called from the flusher goroutine, in publish order per destination, or — when the bus knows
// at once that m cannot go (Redis down, too much pending, closed) — before Publish returns, in
// the caller's goroutine. It must not block: the flusher waits for it. It may call Publish.
func (b *Bus) Publish(to string, m *Message, done func(error)) {
	if err := b.publishable(m); err != nil {
		b.stats.failed.Add(1)
		notify(done, err)
		return
	}
	size := m.Size()
	b.mu.Lock()
	d, err := b.destLocked(to, size)
	if err != nil {
		b.mu.Unlock()
		b.stats.failed.Add(1)
		notify(done, err)
		return
	}
	wake := b.appendLocked(d, m, size, done)
	b.mu.Unlock()
	if wake {
		b.wake()
	}
}

// publishable checks, before taking b.mu, that m can be queued: Redis is up and m encodes.
func (b *Bus) publishable(m *Message) error {
	if !b.up.Load() {
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if closed {
			return ErrClosed
		}
		return ErrUnavailable
	}
	if m.QoS > 2 {
		return fmt.Errorf("%w: QoS %d", ErrBadMessage, m.QoS)
	}
	return nil
}

// destLocked returns the queue of replica to for a message of size bytes, made on first use,
// or why the message cannot be queued (closed, too much pending, a bad replica id). b.mu is
// held.
func (b *Bus) destLocked(to string, size int) (*dest, error) {
	if b.closed {
		return nil, ErrClosed
	}
	if b.pending+size > b.opts.MaxPendingBytes {
		return nil, ErrOverloaded
	}
	d := b.dests[to]
	if d == nil {
		if err := ValidateReplicaID(to); err != nil {
			return nil, fmt.Errorf("%w: destination: %w", ErrBadMessage, err)
		}
		d = &dest{channel: b.names.Inbound(to)}
		b.dests[to] = d
	}
	return d, nil
}

// appendLocked encodes m (size bytes, QoS checked) into d's open batch, sealing the batch first
// when m would overflow it, and queues d for the flusher. It reports whether the flusher must
// be woken: a batch is full, or the first message of a round is in, or the round's deadline
// passed. b.mu is held.
func (b *Bus) appendLocked(d *dest, m *Message, size int, done func(error)) (wake bool) {
	// The flusher is woken once per reason per round, not per message.
	bt := d.cur
	if bt != nil && len(bt.buf) > 1 && len(bt.buf)+size > b.opts.BatchMaxBytes {
		d.sealed = append(d.sealed, bt)
		bt = nil
		wake = wake || !b.urgent
		b.urgent = true
	}
	if bt == nil {
		bt = b.newBatchLocked(d.channel)
		d.cur = bt
	}
	bt.buf, _ = AppendMessage(bt.buf, m) // QoS checked by publishable: cannot fail
	bt.dones = append(bt.dones, done)
	bt.size += size
	b.pending += size
	if len(bt.buf) >= b.opts.BatchMaxBytes {
		wake = wake || !b.urgent
		b.urgent = true
	}
	if !d.queued {
		d.queued = true
		b.ready = append(b.ready, d)
	}
	if b.first.IsZero() {
		b.first = time.Now()
		wake = true
	} else if !b.dueSignaled && time.Since(b.first) >= b.opts.BatchMaxDelay {
		// Under load the publishers see the deadline pass before the flusher's timer fires:
		// Go's timers sleep in whole milliseconds when the process is idle (epoll_wait).
		b.dueSignaled = true
		wake = true
	}
	return wake
}

// wake nudges the flusher without blocking.
func (b *Bus) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *Bus) newBatchLocked(channel string) *batch {
	var bt *batch
	if n := len(b.free); n > 0 {
		bt = b.free[n-1]
		b.free[n-1] = nil
		b.free = b.free[:n-1]
	} else {
		bt = &batch{buf: make([]byte, 0, min(b.opts.BatchMaxBytes+1024, 64<<10))}
	}
	bt.channel = channel
	bt.buf = AppendBatchHeader(bt.buf[:0])
	return bt
}

// takeLocked moves every pending batch to work.
func (b *Bus) takeLocked(work []*batch, now time.Time) []*batch {
	for _, d := range b.ready {
		work = append(work, d.sealed...)
		clear(d.sealed)
		d.sealed = d.sealed[:0]
		if d.cur != nil {
			work = append(work, d.cur)
			d.cur = nil
		}
		d.queued = false
		d.used = now
	}
	clear(b.ready)
	b.ready = b.ready[:0]
	b.first = time.Time{}
	b.urgent = false
	b.dueSignaled = false
	return work
}

// releaseLocked returns flushed batches to the free list and their bytes to the budget.
func (b *Bus) releaseLocked(work []*batch) {
	for _, bt := range work {
		b.pending -= bt.size
		bt.size = 0
		clear(bt.dones)
		bt.dones = bt.dones[:0]
		if len(b.free) < maxFreeBatches && cap(bt.buf) <= 2*b.opts.BatchMaxBytes {
			b.free = append(b.free, bt)
		}
	}
}

// sweepLocked forgets destinations idle for destIdle (replicas come and go with every rollout).
func (b *Bus) sweepLocked(now time.Time) {
	if now.Sub(b.lastSweep) < sweepEvery {
		return
	}
	b.lastSweep = now
	for id, d := range b.dests {
		if !d.queued && now.Sub(d.used) > destIdle {
			delete(b.dests, id)
		}
	}
}

// flushLoop is the flusher goroutine: it waits until something is due, sends it, and repeats.
func (b *Bus) flushLoop() {
	defer b.wg.Done()
	defer close(b.flusherDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var work []*batch
	var cmds []*redis.IntCmd
	for {
		b.mu.Lock()
		closed := b.closed
		if len(b.ready) == 0 {
			b.mu.Unlock()
			if closed {
				return
			}
			<-b.kick
			continue
		}
		up := b.up.Load()
		if up && !closed && !b.urgent {
			if wait := b.opts.BatchMaxDelay - time.Since(b.first); wait > 0 {
				b.mu.Unlock()
				timer.Reset(wait)
				select {
				case <-b.kick:
				case <-timer.C:
				}
				timer.Stop()
				continue
			}
		}
		now := time.Now()
		work = b.takeLocked(work[:0], now)
		b.sweepLocked(now)
		b.mu.Unlock()

		if up {
			cmds = b.send(work, cmds[:0])
		} else {
			for _, bt := range work {
				b.stats.failed.Add(uint64(len(bt.dones)))
				for _, done := range bt.dones {
					notify(done, ErrUnavailable)
				}
			}
		}
		b.mu.Lock()
		b.releaseLocked(work)
		b.mu.Unlock()
		clear(work)
	}
}

// send publishes work as one pipeline and calls every done.
func (b *Bus) send(work []*batch, cmds []*redis.IntCmd) []*redis.IntCmd {
	pipe := b.pubc().Pipeline()
	for _, bt := range work {
		if b.opts.Cluster {
			cmds = append(cmds, pipe.SPublish(b.ctx, bt.channel, bt.buf))
		} else {
			cmds = append(cmds, pipe.Publish(b.ctx, bt.channel, bt.buf))
		}
	}
	_, _ = pipe.Exec(b.ctx) // errors are per command
	b.stats.flushes.Add(1)
	b.stats.commands.Add(uint64(len(cmds)))
	for i, bt := range work {
		var err error
		n, cerr := cmds[i].Result()
		switch {
		case cerr != nil:
			err = fmt.Errorf("%w: %w", ErrUnavailable, cerr)
		case n == 0:
			err = ErrNoReceiver
		}
		if err != nil {
			b.stats.failed.Add(uint64(len(bt.dones)))
		} else {
			b.stats.published.Add(uint64(len(bt.dones)))
			b.stats.sentBytes.Add(uint64(len(bt.buf)))
		}
		for _, done := range bt.dones {
			notify(done, err)
		}
	}
	clear(cmds)
	return cmds
}

// PublishControl sends payload to replica's control channel at once, outside the batches (a
// takeover or kick notice), and waits for Redis: ErrNoReceiver when nobody is subscribed.
func (b *Bus) PublishControl(ctx context.Context, replica string, payload []byte) error {
	if err := ValidateReplicaID(replica); err != nil {
		return err
	}
	var cmd *redis.IntCmd
	if b.opts.Cluster {
		cmd = b.pubc().SPublish(ctx, b.names.Control(replica), payload)
	} else {
		cmd = b.pubc().Publish(ctx, b.names.Control(replica), payload)
	}
	n, err := cmd.Result()
	if err != nil {
		return fmt.Errorf("%w: control: %w", ErrUnavailable, err)
	}
	if n == 0 {
		return ErrNoReceiver
	}
	return nil
}
