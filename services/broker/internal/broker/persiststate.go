package broker

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// A persistent session's state in the store (its subscriptions and expiry), what the store
// indexes of it, and a session restored from its claim (see persist.go).

// storedState is the session's blob in the store: its subscriptions and expiry.
type storedState struct {
	Subs       []storedSub `json:"subs"`
	ExpirySecs int64       `json:"expiry_s"` // -1: never
}

type storedSub struct {
	Filter string `json:"f"`
	QoS    byte   `json:"q"`
	NL     bool   `json:"nl,omitempty"`
	RAP    bool   `json:"rap,omitempty"`
	RH     byte   `json:"rh,omitempty"`
	SubID  uint32 `json:"id,omitempty"`
}

// stateLocked encodes the session's subscriptions and expiry.
func (s *session) stateLocked() []byte {
	st := storedState{ExpirySecs: int64(s.expiry / time.Second)}
	if s.expiry == neverExpire {
		st.ExpirySecs = -1
	}
	for f, o := range s.subs {
		st.Subs = append(st.Subs, storedSub{Filter: f, QoS: o.QoS, NL: o.NoLocal, RAP: o.RetainAsPublished, RH: o.RetainHandling, SubID: o.SubID})
	}
	slices.SortFunc(st.Subs, func(a, b storedSub) int {
		if a.Filter < b.Filter {
			return -1
		}
		if a.Filter > b.Filter {
			return 1
		}
		return 0
	})
	b, _ := json.Marshal(st)
	return b
}

// indexedLocked are the subscriptions the store appends messages for: QoS 1 and 2, not shared.
func (s *session) indexedLocked() bus.DurableSubs {
	ds := bus.DurableSubs{Inc: s.inc}
	for f, o := range s.subs {
		if o.QoS == 0 {
			continue
		}
		if _, shared, _ := topic.ParseShare(f); shared {
			continue
		}
		ds.Subs = append(ds.Subs, bus.DurableSub{Filter: f, QoS: o.QoS, NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished})
	}
	slices.SortFunc(ds.Subs, func(a, b bus.DurableSub) int {
		if a.Filter < b.Filter {
			return -1
		}
		if a.Filter > b.Filter {
			return 1
		}
		return 0
	})
	return ds
}

// restore fills a new session from its claim: subscriptions (into the index and route table),
// inbound QoS 2 ids, and the log position; the messages not done are read from the log when the
// client is attached. Called with Server.mu held, before anyone uses sess.
func (s *Server) restore(sess *session, sc bus.SessionClaim) {
	sess.stored.Store(true)
	sess.epoch, sess.inc = sc.Epoch, sc.Inc
	lg := sess.lg()
	lg.cursor = sc.Cursor
	lg.from, lg.after = sc.Cursor.ID, false
	lg.done = make(map[uint64]struct{}, len(sc.Done))
	for _, q := range sc.Done {
		lg.done[q] = struct{}{}
	}
	lg.released = make(map[uint64]struct{}, len(sc.Released))
	for _, q := range sc.Released {
		lg.released[q] = struct{}{}
	}
	if sc.Present {
		lg.dupUpTo = sc.Appended
	}
	if len(sc.InQoS2) > 0 {
		sess.inQoS2 = make(map[uint16]bus.MessageID, len(sc.InQoS2))
		for id, mid := range sc.InQoS2 {
			sess.inQoS2[id] = mid
		}
	}
	if !sc.Present || len(sc.State) == 0 {
		return
	}
	var st storedState
	if err := json.Unmarshal(sc.State, &st); err != nil {
		s.log.Warn().Err(err).Str("client_id", sess.ID).Msg("stored session state undecodable; its subscriptions are lost")
		return
	}
	for _, sub := range st.Subs {
		_, _, _ = s.subscribe(sess, sub.Filter, subOpts{QoS: sub.QoS, NoLocal: sub.NL, RetainAsPublished: sub.RAP,
			RetainHandling: sub.RH, SubID: sub.SubID})
	}
}
