package broker

import (
	"errors"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/cluster"
)

// Persistent sessions (3.x clean session 0, v5 session expiry > 0).
//
// Their QoS 1/2 messages do not go from the publisher to the session's memory: the publisher's
// replica appends each one to the session's log in the SessionStore (Redis in a cluster) before
// it acknowledges the PUBLISH, whichever replica holds the session and whether that replica is
// alive. The owner reads the log when woken and delivers from it; every message has a sequence
// number in the log, and its packet id is derived from it (seqPacketID), so whoever resumes the
// session after a crash sends it again with the same packet id. The owner commits which messages
// are done (a cursor: the first message not done, plus the done ones above it), and which QoS 2
// messages got their PUBREC: that mark is written before the PUBREL goes out, so a resumed
// session sends PUBREL again instead of the PUBLISH and the client never delivers it twice.
// Every commit is fenced by the claim's epoch: a replica that lost the session cannot write.
//
// QoS 0 deliveries and shared subscriptions keep the direct path (router.go) and the memory
// queue (session.go): a shared subscription's message goes to one member, chosen when it is
// routed.

// seqPacketID is the packet id of the message with sequence number seq: 1..65535 in turn.
func seqPacketID(seq uint64) uint16 { return uint16((seq-1)%65535 + 1) }

// logState is a persistent session's position in its log. Guarded by session.mu.
type logState struct {
	from    string // entry id to read next
	after   bool   // read after from (it was read already)
	nextSeq uint64 // sequence number of the next message not yet read; 0 before the first read
	cursor  bus.LogPos
	// entries are the entries read whose messages are not all done, oldest first.
	entries  []entryRef
	lastRead string
	done     map[uint64]struct{} // above the cursor
	released map[uint64]struct{} // above the cursor: PUBREC received and written
	dupUpTo  uint64              // messages up to this one may have been sent before: DUP
	reading  bool
	again    bool // woken while a read ran
	// caughtUp: the last read reached the end of the log; the next read waits for a wake-up.
	caughtUp bool
	retry    *time.Timer

	// What the next commit writes.
	dirtyCursor, dirtyMarks bool
	trim                    string
	q2del                   []uint16
	state                   []byte
	setExpiry               bool
	offline                 bool
	offlineTTL              time.Duration
	end                     bool
	then                    []func() // run once these changes are written
	committing              bool
	inCommit                *bus.Commit
	inThen                  []func()
}

type entryRef struct {
	id   string
	seq0 uint64
	n    int
}

// readLow: the owner reads more of the log when fewer messages than this wait in memory.
// readEntries: entries asked for per read (an entry holds 1 to 256 messages).
const (
	readLow     = 256
	readEntries = 64
)

// wakeLog reads the log when new messages were appended.
func (s *session) wakeLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stored.Load() || s.ended {
		return
	}
	s.lg().caughtUp = false
	if s.lg().reading {
		s.lg().again = true
		return
	}
	s.readLogLocked()
}

// readLogLocked asks the store for more of the log while the client is connected and few
// messages wait in memory.
func (s *session) readLogLocked() {
	lg := s.lg()
	if lg.reading || lg.caughtUp || s.ended || s.client.Load() == nil || len(s.queue) >= readLow {
		return
	}
	lg.reading, lg.again = true, false
	epoch := s.epoch
	s.srv.store.Read(s.ID, lg.from, lg.after, readEntries, func(es []bus.LogEntry, err error) {
		s.onLog(epoch, es, err)
	})
}

// onLog takes the entries read from the log into the queue.
func (s *session) onLog(epoch uint64, es []bus.LogEntry, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lg := s.lg()
	lg.reading = false
	if s.ended || s.epoch != epoch || !s.stored.Load() {
		return
	}
	if err != nil {
		s.srv.log.Warn().Err(err).Str("client_id", s.ID).Msg("reading the session's log failed; retrying")
		if lg.retry == nil {
			lg.retry = time.AfterFunc(500*time.Millisecond, func() {
				s.mu.Lock()
				s.lg().retry = nil
				s.readLogLocked()
				s.mu.Unlock()
			})
		}
		return
	}
	now := time.Now()
	for _, e := range es {
		lg.from, lg.after, lg.lastRead = e.ID, true, e.ID
		taken := 0
		for i, raw := range e.Msgs {
			seq := e.Seq + uint64(i)
			if seq < lg.cursor.Seq || (lg.nextSeq != 0 && seq < lg.nextSeq) {
				continue // done before, or already read
			}
			taken++
			lg.nextSeq = seq + 1
			if _, ok := lg.done[seq]; ok {
				continue
			}
			m, bm, ok := decodeLog(raw)
			if !ok {
				s.markDoneLocked(seq)
				continue
			}
			d := delivery{msg: m, qos: byte(bm.Flags>>cluster.LogQoSShift) & 3, retain: bm.Flags&cluster.LogRetain != 0,
				seq: seq, dup: seq <= lg.dupUpTo}
			if d.qos == 0 {
				d.qos = 1
			}
			d.subIDs = s.subIDsLocked(m.Topic)
			if _, ok := lg.released[seq]; ok && d.qos == mqtt.QoS2 {
				// PUBREC came before: PUBREL again in its turn, never the PUBLISH [MQTT-4.3.3].
				d.rel = true
			}
			s.queue = append(s.queue, d)
			s.qBytes += m.size()
			s.srv.stats.queued.Add(1)
		}
		if taken > 0 {
			lg.entries = append(lg.entries, entryRef{id: e.ID, seq0: e.Seq, n: len(e.Msgs)})
		}
	}
	lg.caughtUp = len(es) < readEntries && !lg.again
	s.advanceCursorLocked()
	s.fillWindowLocked(now, nil) // reads on unless caught up
}

// decodeLog decodes one message of a log entry; the message aliases raw.
func decodeLog(raw []byte) (*message, *bus.Message, bool) {
	ms, err := bus.DecodeBatch(raw)
	if err != nil || len(ms) != 1 {
		return nil, nil, false
	}
	return fromBus(&ms[0]), &ms[0], true
}

// subIDsLocked are the subscription identifiers of the session's subscriptions matching name.
func (s *session) subIDsLocked(name string) []uint32 {
	var ids []uint32
	for f, o := range s.subs {
		if o.SubID != 0 && topic.Match(f, name) {
			ids = append(ids, o.SubID)
		}
	}
	return ids
}

// markDoneLocked records that message seq needs nothing more (acknowledged, dropped, expired).
func (s *session) markDoneLocked(seq uint64) {
	lg := s.lg()
	if seq < lg.cursor.Seq {
		return
	}
	if lg.done == nil {
		lg.done = make(map[uint64]struct{})
	}
	lg.done[seq] = struct{}{}
	delete(lg.released, seq)
	lg.dirtyMarks = true
	s.advanceCursorLocked()
	s.commitLocked(nil)
}

// advanceCursorLocked moves the cursor past the messages done, and the trim point past the
// entries done.
func (s *session) advanceCursorLocked() {
	lg := s.lg()
	moved := false
	for {
		if _, ok := lg.done[lg.cursor.Seq]; !ok {
			break
		}
		delete(lg.done, lg.cursor.Seq)
		lg.cursor.Seq++
		moved = true
	}
	if !moved {
		return
	}
	for len(lg.entries) > 0 && lg.entries[0].seq0+uint64(lg.entries[0].n) <= lg.cursor.Seq {
		lg.entries = lg.entries[1:]
	}
	old := lg.cursor.ID
	if len(lg.entries) > 0 {
		lg.cursor.ID = lg.entries[0].id
	} else if lg.lastRead != "" {
		lg.cursor.ID = lg.lastRead // read again from there, its messages skipped
	}
	if lg.cursor.ID != old {
		lg.trim = lg.cursor.ID
	}
	lg.dirtyCursor, lg.dirtyMarks = true, true
}

// releaseLocked records the PUBREC of QoS 2 message seq; the PUBREL goes once that is written.
func (s *session) releaseLocked(seq uint64, id uint16, c *client) {
	lg := s.lg()
	if lg.released == nil {
		lg.released = make(map[uint64]struct{})
	}
	lg.released[seq] = struct{}{}
	lg.dirtyMarks = true
	s.commitLocked(func() { c.sendAck(mqtt.PUBREL, id, mqtt.Success) })
}

// saveStateLocked writes the session's subscriptions and expiry with the next commit.
func (s *session) saveStateLocked() {
	if !s.stored.Load() {
		return
	}
	s.lg().state = s.stateLocked()
	s.lg().setExpiry = true
	s.commitLocked(nil)
}

// index publishes the session's QoS 1/2 subscriptions to the store; it returns once every
// replica appends for them (bounded), so the SUBACK can go.
func (s *session) index() {
	s.mu.Lock()
	if !s.stored.Load() || s.ended {
		s.mu.Unlock()
		return
	}
	ds, epoch := s.indexedLocked(), s.epoch
	s.mu.Unlock()
	if err := s.srv.store.Index(s.ID, epoch, ds); err != nil {
		if errors.Is(err, bus.ErrFenced) {
			go s.srv.releaseSession(s.ID, s, false)
			return
		}
		s.srv.log.Warn().Err(err).Str("client_id", s.ID).Msg("persistent subscriptions not indexed")
	}
}

// goOfflineLocked: the client disconnected. The log's messages leave memory (they stay in the
// log); the store marks the session offline, expiring after its expiry interval.
func (s *session) goOfflineLocked() {
	s.dropLogDeliveriesLocked()
	if s.expiry == neverExpire {
		s.lg().offlineTTL = 0
	} else {
		s.lg().offlineTTL = s.expiry + bus.OfflineMargin
	}
	s.lg().offline = true
	s.lg().setExpiry = true
	// This replica's record of the session goes once Redis has it offline and expiring: if the
	// replica dies before, the record lets the others do it (ReleaseOrphans).
	s.commitLocked(s.srv.store.Released(s.ID))
}

// dropLogDeliveriesLocked forgets the messages read from the log (they are read again at the next
// attach); deliveries of the memory path stay.
func (s *session) dropLogDeliveriesLocked() {
	lg := s.lg()
	kept := s.queue[:0]
	for _, d := range s.queue {
		if d.seq == 0 {
			kept = append(kept, d)
			continue
		}
		s.qBytes -= d.msg.size()
		s.srv.stats.queued.Add(-1)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	in := s.inflight[:0]
	for _, f := range s.inflight {
		if f.d.seq == 0 {
			in = append(in, f)
			continue
		}
		s.srv.stats.inflight.Add(-1)
	}
	clear(s.inflight[len(in):])
	s.inflight = in
	lg.from, lg.after, lg.nextSeq, lg.entries, lg.lastRead, lg.caughtUp = lg.cursor.ID, false, 0, nil, "", false
	if lg.retry != nil {
		lg.retry.Stop()
		lg.retry = nil
	}
}

// endStoredLocked deletes the session from the store (a persistent one's subscriptions from the
// index too). A session this replica no longer holds (epoch 0) is left alone.
func (s *session) endStoredLocked() {
	if s.epoch == 0 {
		return
	}
	id, epoch, inc, st := s.ID, s.epoch, s.inc, s.srv.store
	forget := st.Released(id) // once the end is written (see goOfflineLocked)
	if !s.stored.Load() {
		st.Commit(id, func() *bus.Commit { return &bus.Commit{Session: id, Epoch: epoch, End: true} }, func(error) { forget() })
		return
	}
	s.lg().end = true
	s.commitLocked(forget)
	go func() { _ = st.Index(id, epoch, bus.DurableSubs{Inc: inc}) }()
}

// deliverableLocked checks a log delivery before it is sent: expired or no longer readable
// (ACL) messages are done at once. It returns false for those.
func (s *session) deliverableLocked(d delivery, now time.Time) bool {
	if d.msg.expired(now) {
		s.srv.stats.drop(dropExpired)
		return false
	}
	if !s.srv.allowed(s.ID, s.username, d.msg.Topic, auth.Read) {
		s.srv.stats.drop(dropNotAuthorized)
		return false
	}
	return true
}

// subscriptionsChanged writes a persistent session's subscriptions to the store and its index,
// and returns once they are written and every replica appends for them (nothing for a clean
// session). An error means the store did not take them (Redis away): the caller refuses the
// subscriptions rather than acknowledge ones a move to another replica would lose.
func (s *session) subscriptionsChanged() error {
	written := make(chan struct{}, 1)
	s.mu.Lock()
	if !s.stored.Load() || s.ended {
		s.mu.Unlock()
		return nil
	}
	s.lg().state = s.stateLocked()
	s.lg().setExpiry = true
	s.commitLocked(func() { written <- struct{}{} })
	s.mu.Unlock()
	t := time.NewTimer(stateWriteTimeout)
	defer t.Stop()
	select {
	case <-written:
	case <-t.C:
		return errStateNotWritten
	}
	s.index()
	return nil
}

// stateWriteTimeout bounds how long a SUBSCRIBE or UNSUBSCRIBE waits for the store.
const stateWriteTimeout = 5 * time.Second

var errStateNotWritten = errors.New("session state not written in time (Redis away?)")

// appendRetained puts a retained message for a new subscription of a persistent session into
// its log, at qos.
func (s *Server) appendRetained(sess *session, m *message, qos byte) {
	bm := new(bus.Message)
	toBus(bm, m, s.cfg.ID)
	sess.mu.Lock()
	inc := sess.inc
	sess.mu.Unlock()
	s.store.AppendTo(sess.ID, inc, bm, qos, true, func(err error) {
		if err != nil {
			s.stats.drop(dropClusterUnavailable)
		}
	})
}
