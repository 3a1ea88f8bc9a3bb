package cluster

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

type pendingAppend struct {
	bm   *bus.Message
	q2   *Q2
	skip func() bool // when true at send time, fail instead of sending
	done func(error)
	ts   []Target
}

type pendingCommit struct {
	build func() *bus.Commit
	done  func(error)
}

// lane is one queue of appends and commits with its flusher goroutine (see Store).
type lane struct {
	mu       sync.Mutex
	appends  []*pendingAppend
	commits  []*pendingCommit
	flushing bool
	idle     *sync.Cond // signalled when a flush ends
	kick     chan struct{}
}

// writeLanes is the number of lanes: enough pipelines in flight to share Redis' fsyncs and
// overlap one lane's round trip with another's work, few enough that a lane's pipeline still
// carries many messages.
const writeLanes = 4

// laneOf is the lane of a publisher's appends and of a session's commits.
func (s *Store) laneOf(clientID string) *lane {
	return s.lanes[maphash.String(laneSeed, clientID)%uint64(len(s.lanes))]
}

var laneSeed = maphash.MakeSeed()

// Append stores bm in the log of every persistent session whose indexed subscriptions match it
// (no-local ones of its publisher excepted), at the QoS and with the retain flag each gets, and
// calls done once all of them have it (nil) or one failed. done may be called before Append
// returns (nothing matched). q2 marks a QoS 2 message from a persistent publisher. skip, when
// not nil and true when the flusher comes to bm, fails it unsent: a publisher whose earlier
// message failed has the ones after it failed too, so that a resend keeps their order.
func (s *Store) Append(bm *bus.Message, q2 *Q2, skip func() bool, done func(error)) {
	ts := s.match(bm)
	s.enqueue(bm, ts, q2, skip, done)
}

// AppendTo stores bm in the log of one persistent session (incarnation inc) at qos, retained or
// not: retained messages for a new subscription.
func (s *Store) AppendTo(client string, inc uint64, bm *bus.Message, qos byte, retain bool, done func(error)) {
	s.enqueue(bm, []Target{{Client: client, Inc: inc, QoS: qos, Retain: retain}}, nil, nil, done)
}

func (s *Store) enqueue(bm *bus.Message, ts []Target, q2 *Q2, skip func() bool, done func(error)) {
	if len(ts) == 0 && q2 == nil {
		done(nil)
		return
	}
	if !s.c.connected() {
		s.appendFailed.Add(1)
		done(bus.ErrUnavailable)
		return
	}
	l := s.laneOf(bm.ClientID)
	l.mu.Lock()
	l.appends = append(l.appends, &pendingAppend{bm: bm, q2: q2, skip: skip, done: done, ts: ts})
	l.mu.Unlock()
	l.poke()
}

// Commit queues an owner's write to session id: build is called when the flusher sends it, so
// that later changes ride along; done gets the result (bus.ErrFenced: the session was claimed
// elsewhere).
func (s *Store) Commit(id string, build func() *bus.Commit, done func(error)) {
	l := s.laneOf(id)
	l.mu.Lock()
	l.commits = append(l.commits, &pendingCommit{build: build, done: done})
	l.mu.Unlock()
	l.poke()
}

func (l *lane) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Flush waits until every append and commit queued so far was written (or failed), 5 s at most.
func (s *Store) Flush() {
	deadline := time.Now().Add(5 * time.Second)
	for _, l := range s.lanes {
		l.flush(deadline)
	}
}

func (l *lane) flush(deadline time.Time) {
	t := time.AfterFunc(time.Until(deadline), func() {
		l.mu.Lock()
		l.idle.Broadcast()
		l.mu.Unlock()
	})
	defer t.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for (len(l.appends) > 0 || len(l.commits) > 0 || l.flushing) && time.Now().Before(deadline) {
		l.poke()
		l.idle.Wait()
	}
}

func (s *Store) flushLoop(l *lane) {
	for {
		select {
		case <-s.stopped:
			l.failPending(errors.New("cluster: stopped"))
			return
		case <-l.kick:
		}
		for {
			l.mu.Lock()
			aps, cms := l.appends, l.commits
			l.appends, l.commits = nil, nil
			l.flushing = len(aps)+len(cms) > 0
			l.mu.Unlock()
			if len(aps)+len(cms) == 0 {
				l.mu.Lock()
				l.idle.Broadcast()
				l.mu.Unlock()
				break
			}
			s.send(aps, cms)
			l.mu.Lock()
			l.flushing = false
			l.idle.Broadcast()
			l.mu.Unlock()
		}
	}
}

func (l *lane) failPending(err error) {
	l.mu.Lock()
	aps, cms := l.appends, l.commits
	l.appends, l.commits = nil, nil
	l.idle.Broadcast()
	l.mu.Unlock()
	for _, a := range aps {
		a.done(err)
	}
	for _, c := range cms {
		c.done(err)
	}
}

// maxAppendMsgs bounds the messages of one append command (the script's arguments).
const maxAppendMsgs = 256

// send writes one round of appends and commits in one pipeline. Each session gets one append
// command per run of messages (in order); a QoS 2 message from a persistent publisher gets its
// own script, which ends the runs of its targets so that order per session holds.
func (s *Store) send(aps []*pendingAppend, cms []*pendingCommit) {
	aps = s.dropSkipped(aps)
	ws, q2s, parts := s.buildAppends(aps)
	ws, commits := buildCommits(ws, cms)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = s.c.bus.WriteSessions(ctx, ws)
	cancel()
	s.sendWakes(s.ackAppends(aps, q2s, parts))
	s.ackCommits(cms, commits)
}

// dropSkipped fails the appends whose skip says so, unsent, and returns the others (in aps'
// array).
func (s *Store) dropSkipped(aps []*pendingAppend) []*pendingAppend {
	kept := aps[:0]
	for _, pa := range aps {
		if pa.skip != nil && pa.skip() {
			s.appendFailed.Add(1)
			pa.done(bus.ErrUnavailable)
			continue
		}
		kept = append(kept, pa)
	}
	return kept
}

// appendPart is where one target's copy of a pending append went: message n of append command a.
type appendPart struct {
	a *bus.Append
	n int
}

// buildAppends turns the appends into session writes: per session one append command per run of
// messages, and a QoS 2 script of its own for a message from a persistent publisher. q2s[i] is
// append i's script (nil: none), parts[i] where its targets' copies went. Each copy is encoded
// once per delivery flags (QoS, retain).
func (s *Store) buildAppends(aps []*pendingAppend) (ws []bus.SessionWrite, q2s []*bus.Q2Append, parts [][]appendPart) {
	q2s = make([]*bus.Q2Append, len(aps))
	open := make(map[string]*bus.Append) // session -> its open append command
	parts = make([][]appendPart, len(aps))
	encs := make(map[uint32][]byte, 2)
	for i, pa := range aps {
		clear(encs)
		enc := func(t Target) []byte {
			fl := uint32(t.QoS) << LogQoSShift
			if t.Retain {
				fl |= LogRetain
			}
			if e, ok := encs[fl]; ok {
				return e
			}
			m := *pa.bm
			m.Flags, m.Plain, m.Groups = fl, false, nil
			e := encodeOne(&m)
			encs[fl] = e
			return e
		}
		if pa.q2 != nil {
			q := &bus.Q2Append{Publisher: pa.q2.Publisher, Epoch: pa.q2.Epoch, PacketID: pa.q2.PacketID, MsgID: pa.bm.ID}
			for _, t := range pa.ts {
				delete(open, t.Client)
				a := &bus.Append{Session: t.Client, Inc: t.Inc, Max: s.c.cfg.MaxQueued, Msgs: [][]byte{enc(t)}}
				q.Targets = append(q.Targets, a)
				parts[i] = append(parts[i], appendPart{a, 0})
			}
			ws = append(ws, q)
			q2s[i] = q
			continue
		}
		for _, t := range pa.ts {
			a := open[t.Client]
			if a == nil || a.Inc != t.Inc || len(a.Msgs) >= maxAppendMsgs {
				a = &bus.Append{Session: t.Client, Inc: t.Inc, Max: s.c.cfg.MaxQueued}
				open[t.Client] = a
				ws = append(ws, a)
			}
			a.Msgs = append(a.Msgs, enc(t))
			parts[i] = append(parts[i], appendPart{a, len(a.Msgs) - 1})
		}
	}
	return ws, q2s, parts
}

// buildCommits builds the queued commits, after the appends in ws; commits[i] is commit i's
// write (nil: nothing to write).
func buildCommits(ws []bus.SessionWrite, cms []*pendingCommit) ([]bus.SessionWrite, []*bus.Commit) {
	commits := make([]*bus.Commit, len(cms))
	for i, pc := range cms {
		commits[i] = pc.build()
		if commits[i] != nil {
			ws = append(ws, commits[i])
		}
	}
	return ws, commits
}

// ackAppends tells the publishers: a message is stored once every target has it (or the target
// is gone or full: a counted drop, not a failure). It returns the sessions to wake, per owner.
func (s *Store) ackAppends(aps []*pendingAppend, q2s []*bus.Q2Append, parts [][]appendPart) map[string]map[string]bool {
	wakes := make(map[string]map[string]bool) // owner -> sessions
	for i, pa := range aps {
		var err error
		if q := q2s[i]; q != nil && q.Err != nil {
			err = q.Err
		}
		for _, p := range parts[i] {
			a := p.a
			switch {
			case a.Err != nil:
				err = a.Err
			case a.Gone:
				// The session ended or was made again: nothing owed.
			case p.n >= a.Accepted:
				s.queueFull.Add(1) // its queue is full: a counted drop, not a failure
			default:
				if a.Online && a.Owner != "" {
					if wakes[a.Owner] == nil {
						wakes[a.Owner] = make(map[string]bool)
					}
					wakes[a.Owner][a.Session] = true
				}
			}
		}
		if err != nil {
			s.appendFailed.Add(1)
		} else {
			s.appended.Add(int64(len(parts[i])))
		}
		pa.done(err)
	}
	return wakes
}

// sendWakes wakes the sessions whose logs got messages: here directly, on other replicas through
// a wake-up message.
func (s *Store) sendWakes(wakes map[string]map[string]bool) {
	for owner, ids := range wakes {
		for id := range ids {
			if owner == s.c.self {
				s.c.host.Wake(id)
				continue
			}
			s.c.bus.Publish(owner, &bus.Message{ID: bus.NewMessageID(), ClientID: id, Flags: flagWake}, nil)
		}
	}
}

// ackCommits tells the commits' owners the result, counting the fenced ones.
func (s *Store) ackCommits(cms []*pendingCommit, commits []*bus.Commit) {
	for i, pc := range cms {
		c := commits[i]
		if c == nil {
			pc.done(nil)
			continue
		}
		if errors.Is(c.Err, bus.ErrFenced) {
			s.fenced.Add(1)
		} else if c.Err == nil {
			s.commitsDone.Add(1)
		}
		pc.done(c.Err)
	}
}
