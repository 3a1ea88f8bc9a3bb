package broker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// clusterStore writes the cluster's shared state (retained messages, offline sessions) to Redis
// from one goroutine, many writes per pipeline, so the publish path never waits for Redis.
type clusterStore struct {
	c    *Cluster
	ops  chan storeOp
	kick chan struct{}
	// flushed is signalled after each pipeline, for flush.
	mu      sync.Mutex
	flushed *sync.Cond
	queued  int
}

// storeOp adds its commands to a pipeline.
type storeOp func(p redis.Pipeliner)

func newClusterStore(c *Cluster) *clusterStore {
	st := &clusterStore{c: c, ops: make(chan storeOp, 1<<16), kick: make(chan struct{}, 1)}
	st.flushed = sync.NewCond(&st.mu)
	return st
}

// do queues op; it never blocks. A full queue (Redis far behind) drops op and says so.
func (st *clusterStore) do(op storeOp) bool {
	st.mu.Lock()
	st.queued++
	st.mu.Unlock()
	select {
	case st.ops <- op:
		return true
	default:
		st.done(1)
		st.c.srv.log.Warn().Msg("cluster store queue full: a retained or session write to Redis was dropped")
		return false
	}
}

func (st *clusterStore) done(n int) {
	st.mu.Lock()
	st.queued -= n
	st.flushed.Broadcast()
	st.mu.Unlock()
}

// flush waits (5 s at most) until the queue is empty: everything queued so far, and whatever was
// queued meanwhile, was written or failed.
func (st *clusterStore) flush() {
	expired := false
	t := time.AfterFunc(5*time.Second, func() {
		st.mu.Lock()
		expired = true
		st.flushed.Broadcast()
		st.mu.Unlock()
	})
	defer t.Stop()
	st.mu.Lock()
	defer st.mu.Unlock()
	for st.queued > 0 && !expired {
		st.flushed.Wait()
	}
}

func (st *clusterStore) loop() {
	ops := make([]storeOp, 0, 256)
	for {
		select {
		case <-st.c.stop:
			return
		case op := <-st.ops:
			ops = append(ops[:0], op)
		}
	drain:
		for len(ops) < cap(ops) {
			select {
			case op := <-st.ops:
				ops = append(ops, op)
			default:
				break drain
			}
		}
		st.write(ops)
		st.done(len(ops))
		clear(ops)
	}
}

// write runs ops in one pipeline, retrying while Redis is away (bounded: a resync after the
// reconnect writes the state again anyway).
func (st *clusterStore) write(ops []storeOp) {
	b := st.c.bus
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.Client().Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, op := range ops {
				op(p)
			}
			return nil
		})
		cancel()
		var rerr redis.Error
		if errors.As(err, &rerr) {
			// Redis answered (a command was refused): the others ran; running them again
			// would append queued messages twice.
			st.c.srv.log.Warn().Err(err).Int("writes", len(ops)).Msg("cluster state write refused by Redis")
			return
		}
		if err == nil || attempt >= 3 {
			if err != nil {
				st.c.srv.log.Warn().Err(err).Int("writes", len(ops)).Msg("cluster state write to Redis failed")
			}
			return
		}
		select {
		case <-st.c.stop:
			return
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
}

// resync merges what this replica holds with Redis after a (re)connect.
func (st *clusterStore) resync() {
	st.c.srv.retained.(*clusterRetained).resync()
	st.c.resyncSessions()
}

// encodeOne encodes m as a one-message envelope batch (the value of a retained or queued entry).
func encodeOne(m *Message, origin string, flags uint32) []byte {
	var bm bus.Message
	toBus(&bm, m, origin)
	bm.Flags = flags
	b := bus.AppendBatchHeader(make([]byte, 0, bm.Size()+1))
	b, _ = bus.AppendMessage(b, &bm)
	return b
}

// decodeOne decodes a one-message batch written by encodeOne.
func decodeOne(b []byte) (*Message, *bus.Message, bool) {
	ms, err := bus.DecodeBatch(b)
	if err != nil || len(ms) != 1 {
		return nil, nil, false
	}
	return fromBus(&ms[0]), &ms[0], true
}

// clusterRetained is the retained store of a cluster replica: a full copy in memory (so a
// wildcard SUBSCRIBE is answered locally), the truth in the Redis hash Names.Retained, and every
// change forwarded to the live replicas (router.plan), which store it in their copy.
type clusterRetained struct {
	c   *Cluster
	mem *memoryRetained
}

var _ RetainedStore = (*clusterRetained)(nil)

func newClusterRetained(c *Cluster) *clusterRetained {
	return &clusterRetained{c: c, mem: newMemoryRetained()}
}

func (r *clusterRetained) Set(m *Message) {
	r.mem.Set(m)
	if !r.c.forwardable(m.Topic) {
		return // $SYS: this replica's own
	}
	key := r.c.srv.clusterNames().Retained()
	if len(m.Payload) == 0 {
		r.c.store.do(func(p redis.Pipeliner) { p.HDel(context.Background(), key, m.Topic) })
		return
	}
	v := encodeOne(m, r.c.self, 0)
	r.c.store.do(func(p redis.Pipeliner) { p.HSet(context.Background(), key, m.Topic, v) })
}

// setLocal stores a retained message forwarded by another replica (it wrote Redis already).
func (r *clusterRetained) setLocal(m *Message) {
	r.mem.mu.Lock()
	defer r.mem.mu.Unlock()
	old := r.mem.msgs[m.Topic]
	if old != nil && old.Created.After(m.Created) {
		return // a newer one arrived first
	}
	if len(m.Payload) == 0 {
		delete(r.mem.msgs, m.Topic)
		return
	}
	r.mem.msgs[m.Topic] = m
}

func (r *clusterRetained) Match(filter string, fn func(*Message)) { r.mem.Match(filter, fn) }
func (r *clusterRetained) Len() int                               { return r.mem.Len() }

// resync loads Redis' retained messages into memory (the newer of the two wins); when Redis has
// none at all (it restarted empty) the replica writes its copy back.
func (r *clusterRetained) resync() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := r.c.srv.clusterNames().Retained()
	began := time.Now()
	inRedis := make(map[string]time.Time)
	var cursor uint64
	for {
		kv, next, err := r.c.bus.Client().HScan(ctx, key, cursor, "*", 1000).Result()
		if err != nil {
			r.c.srv.log.Warn().Err(err).Msg("resync: reading retained messages")
			return
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m, _, ok := decodeOne([]byte(kv[i+1]))
			if !ok || m.Topic != kv[i] {
				continue
			}
			inRedis[m.Topic] = m.Created
			r.setLocal(m)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(inRedis) > 0 {
		// Redis kept its data: it is the truth (a message cleared while this replica was
		// away must not come back), except for what arrived since the scan began. An empty
		// hash is a Redis that restarted without its data: the replicas seed it again.
		r.mem.mu.Lock()
		for name, m := range r.mem.msgs {
			if _, ok := inRedis[name]; !ok && r.c.forwardable(name) && m.Created.Before(began) {
				delete(r.mem.msgs, name)
			}
		}
		r.mem.mu.Unlock()
		return
	}
	r.mem.mu.RLock()
	var missing []*Message
	for name, m := range r.mem.msgs {
		if !r.c.forwardable(name) {
			continue
		}
		if t, ok := inRedis[name]; !ok || t.Before(m.Created) {
			missing = append(missing, m)
		}
	}
	r.mem.mu.RUnlock()
	for _, m := range missing {
		v := encodeOne(m, r.c.self, 0)
		r.c.store.do(func(p redis.Pipeliner) { p.HSet(context.Background(), key, m.Topic, v) })
	}
}
