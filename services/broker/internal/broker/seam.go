package broker

import (
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/cluster"
)

// The seam between this replica and the others (docs/ARCHITECTURE.md, "The cluster seam"). The
// core calls a Cluster at the few moments the other replicas care about and a SessionStore for
// the persistent sessions; a replica alone uses standalone and memStore, a cluster replica the
// implementations in internal/cluster, which talk to Redis. What crosses the seam is pkg/bus
// values.

// Cluster is the other replicas, as the core sees them.
type Cluster interface {
	// Ready reports whether the replica takes part in the cluster (standalone: always).
	Ready() bool
	// AddFilter counts a local subscription to filter; wait, when not nil, returns once the
	// other replicas route matching messages here (bounded). durable: a persistent session's
	// non-shared subscription at QoS 1 or 2 (its QoS 1/2 messages come through its log, so
	// the others forward only QoS 0 messages for it; see cluster.Route).
	AddFilter(filter string, durable bool) (wait func())
	// RemoveFilter drops one local subscription to filter, of the kind it was added as.
	RemoveFilter(filter string, durable bool)
	// Remote is the other replicas' filters (read only; empty when alone).
	Remote() *topic.Index[string, cluster.Route]
	// Peers appends the other live replicas to dst.
	Peers(dst []string) []string
	// Forward sends bm to other replicas; done, when not nil, is called once per destination.
	Forward(bm *bus.Message, fws []cluster.Forward, done func(error))
	// Exports reports whether messages on name go to the export stream; Export sends one,
	// ExportBatch the n messages of an export batch (bus.AppendExportBatchHeader) (copied before it returns).
	Exports(name string) bool
	Export(bm *bus.Message)
	ExportBatch(batch []byte, n int)
	// ExportsPresence reports whether presence events can be exported (standalone: no);
	// ExportPresence sends one, naming this replica in it.
	ExportsPresence() bool
	ExportPresence(p *bus.Presence)
	// SetRetained records a retained message (an empty payload clears it) beyond this replica.
	SetRetained(bm *bus.Message)
	// Stats returns the cluster's counters; ok is false when alone.
	Stats() (st cluster.Stats, ok bool)
}

// SessionStore keeps what a persistent session needs to outlive its connection and this
// replica: its state, the log of QoS 1/2 messages waiting for it, which of them are done, and its
// inbound QoS 2 packet ids (see pkg/bus sessions.go for the model).
type SessionStore interface {
	// Claim makes this replica the owner of session id (any other owner is fenced) and returns
	// what is stored of it; clean discards it. expiry is the session expiry interval (0: a
	// clean session, never resumed from the store).
	Claim(id string, clean bool, expiry time.Duration) (bus.SessionClaim, error)
	// Released forgets a session this replica no longer holds; forget removes it from this
	// replica's record in the store: call it once the session's last writes are in.
	Released(id string) (forget func())
	// Index sets the session's subscriptions that messages are appended for, and returns once
	// every replica uses them (bounded).
	Index(id string, epoch uint64, ds bus.DurableSubs) error
	// Has reports whether a message on name may go to a persistent session.
	Has(name string) bool
	// Append stores bm for every persistent session it matches, then calls done (nil: stored
	// for all, or a session's queue was full; an error: Redis did not take it). q2 marks a QoS 2
	// message from a persistent publisher; skip, when it says true by the time bm would be
	// written, fails bm unwritten (its publisher's earlier message failed).
	Append(bm *bus.Message, q2 *cluster.Q2, skip func() bool, done func(error))
	// AppendTo stores bm for one session, at qos and with the retain flag given.
	AppendTo(id string, inc uint64, bm *bus.Message, qos byte, retain bool, done func(error))
	// Read reads up to n entries of session id's log from entry from (after it, with after).
	Read(id, from string, after bool, n int, fn func([]bus.LogEntry, error))
	// Commit queues an owner's write to session id, built when it is sent; done gets
	// bus.ErrFenced when the session was claimed elsewhere.
	Commit(id string, build func() *bus.Commit, done func(error))
	// Flush waits until everything queued was written.
	Flush()
}

// standalone is the Cluster of a replica alone.
type standalone struct {
	remote *topic.Index[string, cluster.Route]
}

func newStandalone() *standalone {
	return &standalone{remote: topic.NewIndex[string, cluster.Route]()}
}

func (standalone) Ready() bool                                          { return true }
func (standalone) AddFilter(string, bool) func()                        { return nil }
func (standalone) RemoveFilter(string, bool)                            {}
func (s standalone) Remote() *topic.Index[string, cluster.Route]        { return s.remote }
func (standalone) Peers(dst []string) []string                          { return dst }
func (standalone) Forward(*bus.Message, []cluster.Forward, func(error)) {}
func (standalone) Exports(string) bool                                  { return false }
func (standalone) Export(*bus.Message)                                  {}
func (standalone) ExportBatch([]byte, int)                              {}
func (standalone) ExportsPresence() bool                                { return false }
func (standalone) ExportPresence(*bus.Presence)                         {}
func (standalone) SetRetained(*bus.Message)                             {}
func (standalone) Stats() (cluster.Stats, bool)                         { return cluster.Stats{}, false }

// host is the core as internal/cluster calls it back.
type host struct{ s *Server }

var _ cluster.Host = host{}

// ClusterHost returns the core's side of the seam, for cluster.New.
func (s *Server) ClusterHost() cluster.Host { return host{s} }

// SetCluster joins the server to a cluster: c for routes and forwarding, st for the persistent
// sessions. Call it before Serve.
func (s *Server) SetCluster(c Cluster, st SessionStore) {
	s.cluster = c
	s.store = st
	s.clustered = true
}

func (h host) Deliver(msgs []bus.Message) {
	s := h.s
	now := time.Now()
	for i := range msgs {
		bm := &msgs[i]
		m := fromBus(bm)
		if bm.Flags&cluster.FlagStoreRetained != 0 {
			s.retained.setNewer(m)
		}
		if m.expired(now) {
			continue
		}
		s.router.route(m, now, nil, &remoteHints{plain: bm.Plain, groups: bm.Groups}, nil)
	}
}

func (h host) Wake(id string) {
	s := h.s
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess != nil {
		sess.wakeLog()
	}
}

func (h host) Release(id string, cleanStart bool) { h.s.release(id, cleanStart) }

func (h host) Retained() []bus.Message {
	var out []bus.Message
	h.s.retained.each(func(m *message) {
		if forwardable(m.Topic) {
			var bm bus.Message
			toBus(&bm, m, h.s.cfg.ID)
			out = append(out, bm)
		}
	})
	return out
}

func (h host) SetRetained(bm *bus.Message) { h.s.retained.setNewer(fromBus(bm)) }

func (h host) PruneRetained(keep map[string]bool, began time.Time) {
	h.s.retained.prune(func(m *message) bool {
		return !keep[m.Topic] && forwardable(m.Topic) && m.Created.Before(began)
	})
}
