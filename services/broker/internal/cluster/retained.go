package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// Retained messages live in the Redis hash Names.Retained (topic -> one-message envelope batch),
// mirrored in every replica's memory (the core's store) so that a wildcard SUBSCRIBE is answered
// locally. A change is forwarded to every live replica with FlagStoreRetained (the core's router
// does that) and written here to Redis, off the publish path, many writes per pipeline.

// storeOp is one queued write.
type storeOp = bus.RetainedWrite

// ops is the queue of retained-message writes.
type ops struct {
	ch      chan storeOp
	mu      sync.Mutex
	flushed *sync.Cond
	queued  int
}

func newOps() *ops {
	q := &ops{ch: make(chan storeOp, 1<<16)}
	q.flushed = sync.NewCond(&q.mu)
	return q
}

func (c *Cluster) opsQueue() *ops { return c.retOps }

// do queues op; it never blocks. A full queue (Redis far behind) drops op and says so.
func (c *Cluster) do(op storeOp) {
	q := c.opsQueue()
	q.mu.Lock()
	q.queued++
	q.mu.Unlock()
	select {
	case q.ch <- op:
	default:
		q.done(1)
		c.log.Warn().Msg("cluster store queue full: a retained-message write to Redis was dropped")
	}
}

func (q *ops) done(n int) {
	q.mu.Lock()
	q.queued -= n
	q.flushed.Broadcast()
	q.mu.Unlock()
}

// flushStoreOps waits (5 s at most) until every queued retained write was written or failed.
func (c *Cluster) flushStoreOps() {
	q := c.opsQueue()
	expired := false
	t := time.AfterFunc(5*time.Second, func() {
		q.mu.Lock()
		expired = true
		q.flushed.Broadcast()
		q.mu.Unlock()
	})
	defer t.Stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.queued > 0 && !expired {
		q.flushed.Wait()
	}
}

func (c *Cluster) storeLoop() {
	q := c.opsQueue()
	batch := make([]storeOp, 0, 256)
	for {
		select {
		case <-c.stop:
			return
		case op := <-q.ch:
			batch = append(batch[:0], op)
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case op := <-q.ch:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		c.writeOps(batch)
		q.done(len(batch))
		clear(batch)
	}
}

// writeOps writes a batch in one pipeline, retrying while Redis is away (bounded: a resync after
// the reconnect writes the retained messages again anyway).
func (c *Cluster) writeOps(batch []storeOp) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.bus.WriteRetained(ctx, batch)
		cancel()
		if err != nil && !errors.Is(err, bus.ErrUnavailable) {
			c.log.Warn().Err(err).Int("writes", len(batch)).Msg("retained message write refused by Redis")
			return
		}
		if err == nil || attempt >= 3 {
			if err != nil {
				c.log.Warn().Err(err).Int("writes", len(batch)).Msg("retained message write to Redis failed")
			}
			return
		}
		select {
		case <-c.stop:
			return
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
}

// encodeOne encodes bm as a one-message envelope batch (the value of a retained entry or a log
// message).
func encodeOne(bm *bus.Message) []byte {
	b := bus.AppendBatchHeader(make([]byte, 0, bm.Size()+1))
	b, _ = bus.AppendMessage(b, bm)
	return b
}

// decodeOne decodes a one-message batch written by encodeOne.
func decodeOne(b []byte) (*bus.Message, bool) {
	ms, err := bus.DecodeBatch(b)
	if err != nil || len(ms) != 1 {
		return nil, false
	}
	return &ms[0], true
}

// SetRetained writes bm as its topic's retained message in Redis (an empty payload clears it).
func (c *Cluster) SetRetained(bm *bus.Message) {
	if len(bm.Payload) == 0 {
		c.do(storeOp{Topic: bm.Topic})
		return
	}
	c.do(storeOp{Topic: bm.Topic, Value: encodeOne(bm)})
}

// resyncRetained loads Redis' retained messages into the core (the newer of two wins); when
// Redis has none at all (it restarted empty) the replica writes its copy back.
func (c *Cluster) resyncRetained() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	inRedis := make(map[string]bool)
	err := c.bus.ScanRetained(ctx, func(name string, value []byte) {
		bm, ok := decodeOne(value)
		if !ok || bm.Topic != name {
			return
		}
		inRedis[bm.Topic] = true
		c.host.SetRetained(bm)
	})
	if err != nil {
		c.log.Warn().Err(err).Msg("resync: reading retained messages")
		return
	}
	if len(inRedis) > 0 {
		// Redis kept its data: it is the truth (a message cleared while this replica was
		// away must not come back), except for what arrived since the scan began. An empty
		// hash is a Redis that restarted without its data: the replicas seed it again.
		c.host.PruneRetained(inRedis, began)
		return
	}
	for _, bm := range c.host.Retained() {
		c.SetRetained(&bm)
	}
}
