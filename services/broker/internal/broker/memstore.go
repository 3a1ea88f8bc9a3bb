package broker

import (
	"strconv"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/cluster"
)

// memStore is the SessionStore of a replica alone: the same model as the cluster's Redis store
// (a log per persistent session, a cursor, done and released marks), kept in this process. It
// lives as long as the process: a restart of a stand-alone broker loses its sessions, as
// mosquitto without persistence does.
//
// Reads and wake-ups run on one goroutine of its own, as they do in the cluster, so that a
// publisher never runs a subscriber's delivery while holding its own locks.
type memStore struct {
	maxQueued int // messages not done per session: the queue bound plus the inflight window
	wake      func(id string)
	full      func() // a message not appended: the session's queue is full

	mu       sync.Mutex
	sessions map[string]*memSession
	index    *topic.Index[string, bus.DurableSub]
	subs     map[string]bus.DurableSubs
	epoch    uint64
	entryN   uint64

	wmu     sync.Mutex
	pending []func()
	signal  chan struct{}
}

type memSession struct {
	bus.SessionClaim // what a claim returns; Epoch is the current claim
	log              []bus.LogEntry
	persistent       bool
}

func newMemStore(maxQueued int, wake func(id string), full func()) *memStore {
	m := &memStore{maxQueued: maxQueued, wake: wake, full: full, sessions: make(map[string]*memSession),
		index: topic.NewIndex[string, bus.DurableSub](), subs: make(map[string]bus.DurableSubs),
		signal: make(chan struct{}, 1)}
	go m.worker()
	return m
}

var _ SessionStore = (*memStore)(nil)

// later runs f on the store's goroutine, in order; the queue is unbounded so that f may call
// later itself.
func (m *memStore) later(f func()) {
	m.wmu.Lock()
	m.pending = append(m.pending, f)
	m.wmu.Unlock()
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

func (m *memStore) worker() {
	for range m.signal {
		for {
			m.wmu.Lock()
			fs := m.pending
			m.pending = nil
			m.wmu.Unlock()
			if len(fs) == 0 {
				break
			}
			for _, f := range fs {
				f()
			}
		}
	}
}

func (m *memStore) Claim(id string, clean bool, expiry time.Duration) (bus.SessionClaim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
	ms := m.sessions[id]
	if clean && expiry == 0 {
		// A session that ends with its connection is never written: nothing is kept for it (a
		// persistent one of the id before it is gone, as a claim of a new session makes it).
		if ms != nil {
			delete(m.sessions, id)
			m.setSubsLocked(id, bus.DurableSubs{})
		}
		return bus.SessionClaim{Epoch: m.epoch, Inc: m.epoch, Cursor: bus.LogPos{ID: "0-0", Seq: 1}}, nil
	}
	present := ms != nil && !clean && ms.persistent
	if !present {
		ms = &memSession{SessionClaim: bus.SessionClaim{Inc: m.epoch, Cursor: bus.LogPos{ID: "0-0", Seq: 1}}}
		m.sessions[id] = ms
		m.setSubsLocked(id, bus.DurableSubs{Inc: m.epoch})
	}
	ms.Epoch = m.epoch
	ms.persistent = expiry != 0
	sc := ms.SessionClaim
	sc.Present = present
	sc.Done = append([]uint64(nil), ms.Done...)
	sc.Released = append([]uint64(nil), ms.Released...)
	sc.InQoS2 = nil
	return sc, nil
}

func (m *memStore) Released(string) func() { return func() {} }

func (m *memStore) Index(id string, epoch uint64, ds bus.DurableSubs) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ms := m.sessions[id]; ms == nil || ms.Epoch != epoch {
		return bus.ErrFenced
	}
	m.setSubsLocked(id, ds)
	return nil
}

// setSubsLocked replaces session id's indexed subscriptions (Append matches without m.mu: see
// cluster.ReplaceIndexed).
func (m *memStore) setSubsLocked(id string, ds bus.DurableSubs) {
	old := m.subs[id]
	if len(ds.Subs) == 0 {
		delete(m.subs, id)
	} else {
		m.subs[id] = ds
	}
	cluster.ReplaceIndexed(m.index, id, old.Subs, ds.Subs)
}

func (m *memStore) Has(name string) bool { return m.index.HasMatch(name) }

func (m *memStore) Append(bm *bus.Message, _ *cluster.Q2, _ func() bool, done func(error)) {
	for _, t := range cluster.MatchDurable(m.index, bm) {
		m.appendOne(t.Client, 0, bm, t.QoS, t.Retain)
	}
	done(nil)
}

func (m *memStore) AppendTo(id string, inc uint64, bm *bus.Message, qos byte, retain bool, done func(error)) {
	m.appendOne(id, inc, bm, qos, retain)
	done(nil)
}

// appendOne adds bm to a session's log (inc 0: any incarnation) unless its queue is full.
func (m *memStore) appendOne(id string, inc uint64, bm *bus.Message, qos byte, retain bool) {
	c := *bm
	c.Flags = uint32(qos) << cluster.LogQoSShift
	if retain {
		c.Flags |= cluster.LogRetain
	}
	c.Plain, c.Groups = false, nil
	enc, err := bus.AppendMessage(bus.AppendBatchHeader(nil), &c)
	if err != nil {
		return
	}
	m.mu.Lock()
	ms := m.sessions[id]
	if ms == nil || (inc != 0 && ms.Inc != inc) {
		m.mu.Unlock()
		return
	}
	if m.maxQueued > 0 && int(ms.Appended-ms.Cursor.Seq+1) >= m.maxQueued {
		m.mu.Unlock()
		m.full()
		return
	}
	m.entryN++
	e := bus.LogEntry{ID: "1-" + strconv.FormatUint(m.entryN, 10), Seq: ms.Appended + 1, Msgs: [][]byte{enc}}
	ms.log = append(ms.log, e)
	ms.Appended++
	m.mu.Unlock()
	m.later(func() { m.wake(id) })
}

func (m *memStore) Read(id, from string, after bool, n int, fn func([]bus.LogEntry, error)) {
	m.mu.Lock()
	var out []bus.LogEntry
	if ms := m.sessions[id]; ms != nil {
		fromN := entryNum(from)
		for _, e := range ms.log {
			en := entryNum(e.ID)
			if en < fromN || after && en == fromN {
				continue
			}
			out = append(out, e)
			if len(out) >= n {
				break
			}
		}
	}
	m.mu.Unlock()
	m.later(func() { fn(out, nil) })
}

// entryNum is the sequence part of an entry id ("1-<n>"; "0-0" is 0).
func entryNum(id string) uint64 {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			n, _ := strconv.ParseUint(id[i+1:], 10, 64)
			if id[:i] == "0" {
				return 0
			}
			return n
		}
	}
	return 0
}

// Commit runs on the store's goroutine, like the cluster's flusher: build takes the session's
// lock, which its caller may hold.
func (m *memStore) Commit(_ string, build func() *bus.Commit, done func(error)) {
	m.later(func() { m.commit(build, done) })
}

func (m *memStore) commit(build func() *bus.Commit, done func(error)) {
	c := build()
	if c == nil {
		done(nil)
		return
	}
	m.mu.Lock()
	ms := m.sessions[c.Session]
	if ms == nil || ms.Epoch != c.Epoch {
		m.mu.Unlock()
		done(bus.ErrFenced)
		return
	}
	if c.End {
		delete(m.sessions, c.Session)
		m.setSubsLocked(c.Session, bus.DurableSubs{})
		m.mu.Unlock()
		done(nil)
		return
	}
	if c.Cursor != nil {
		ms.Cursor = *c.Cursor
	}
	if c.Marks {
		ms.Done = append(ms.Done[:0], c.Done...)
		ms.Released = append(ms.Released[:0], c.Released...)
	}
	if c.TrimBefore != "" {
		cut := entryNum(c.TrimBefore)
		k := 0
		for k < len(ms.log) && entryNum(ms.log[k].ID) < cut {
			k++
		}
		ms.log = append(ms.log[:0], ms.log[k:]...)
	}
	if c.State != nil {
		ms.State = c.State
	}
	m.mu.Unlock()
	done(nil)
}

// Flush waits until the commits, reads and wake-ups queued so far ran.
func (m *memStore) Flush() {
	done := make(chan struct{})
	m.later(func() { close(done) })
	<-done
}
