package adapter

import (
	"context"
	"errors"
	"time"

	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// The Storage Write API path: exactly-once through plans and stream offsets.
//
// Each writer goroutine (a slot) owns one committed write stream per table and writes one batch
// at a time, so each of its streams has at most one plan in flight, and that plan's offset is the
// stream's end (its row count), which the slot tracks.
//
//  1. Before sending anything the slot records a plan in Redis (feed.CreatePlan): the batch's
//     entries, the row ids it leaves out (written before by this replica), and for each table
//     the stream, the offset (the slot's next one) and the row count. The plan is recorded only
//     if none of the entries has one yet (atomically), so two replicas never plan the same entry
//     twice: the second completes the first one's plan instead.
//  2. It appends each table's rows at the recorded offset. OK or ALREADY_EXISTS: the rows are in
//     the table. Anything that leaves the outcome unknown (a timeout, a lost connection, a 5xx):
//     the same append again, at the same offset, which lands at most once.
//  3. It acknowledges the entries (XACK) and then forgets the plan.
//
// Whoever finds an entry pending later (the replica restarted under the same id, or another one
// that claimed it) looks up its plan and completes it: it rebuilds the plan's rows from the
// plan's entries (reading the ones it does not hold from the stream), leaves out the plan's
// skipped ids, and appends them at the plan's offsets. A row is a pure function of its entry,
// so the rows are the ones the planner meant; ALREADY_EXISTS says they were there.
//
// When the rows cannot be rebuilt exactly (entries trimmed from the stream before anyone wrote
// them) or the stream answers OUT_OF_RANGE or "finalized", appending there is no longer safe.
// The stream is then finalized (it takes no more rows, from anyone) and its final row count
// decides: above the plan's offset, the plan's rows are there; at or below it, they are not and
// never will be, and the plan moves to the completing slot's own stream (a compare-and-set on the
// plan, so two replicas cannot both move it). Only when the stream itself no longer exists
// (BigQuery garbage-collects streams long after their last append) does the adapter ask the
// table which rows it holds.
//
// Rows BigQuery refuses (row errors: nothing of the append was written) are retried once
// without payload_json when they had one, then dead-lettered; the plan records either, so a
// replica completing it rebuilds the same rows.

// slot is one writer's streams, one per table, and each one's next offset.
type slot struct {
	streams [2]*bq.Stream
	next    [2]int64
}

func (sl *slot) close() {
	for t := range sl.streams {
		sl.rotate(bq.Table(t))
	}
}

// rotate drops the slot's stream of t: the next plan gets a new stream.
func (sl *slot) rotate(t bq.Table) {
	if sl.streams[t] != nil {
		sl.streams[t].Close()
		sl.streams[t], sl.next[t] = nil, 0
	}
}

// owns reports whether name is the slot's stream of t.
func (sl *slot) owns(t bq.Table, name string) bool {
	return sl.streams[t] != nil && sl.streams[t].Name() == name
}

// stream returns the slot's stream of t, creating one (retrying) when it has none; nil when ctx
// ended first.
func (a *Adapter) stream(ctx context.Context, sl *slot, t bq.Table) *bq.Stream {
	for attempt := 1; sl.streams[t] == nil; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
		s, err := a.bq.NewStream(rctx, t)
		cancel()
		if err == nil {
			sl.streams[t], sl.next[t] = s, 0
			a.m.Streams.Inc()
			a.log.Debug().Str("stream", s.Name()).Stringer("table", t).Msg("write stream created")
			break
		}
		a.m.Retries.WithLabelValues("retry").Inc()
		a.log.Warn().Err(err).Stringer("table", t).Int("attempt", attempt).Msg("creating a write stream failed; retrying")
		if !sleep(ctx, a.backoff(attempt)) {
			return nil
		}
	}
	return sl.streams[t]
}

func tableOf(name string) bq.Table {
	if name == bq.Events.String() {
		return bq.Events
	}
	return bq.Messages
}

// writeStorage writes b through the Storage Write API and acknowledges its entries.
func (a *Adapter) writeStorage(ctx context.Context, sl *slot, b *batch) {
	defer a.forget(b)
	if !a.deadLetter(ctx, b.dead, b.deadWhy) {
		return
	}
	ents := b.ents
	if b.recovered {
		// Entries delivered before may have a plan: complete those first.
		var plans map[string]*feed.Plan
		if !a.retryRedis(ctx, "reading plans", func() (err error) { plans, err = a.f.Plans(ctx, b.entries); return }) {
			return
		}
		var ok bool
		if ents, ok = a.completePlans(ctx, sl, ents, plans); !ok {
			return
		}
	}
	for len(ents) > 0 && ctx.Err() == nil {
		skip := a.seen.skip(ents, a.m)
		rows, _, dups := flatten(ents, skip)
		if dups > 0 {
			a.m.Duplicates.WithLabelValues("batch").Add(float64(dups))
		}
		p := &feed.Plan{Entries: make([]string, len(ents))}
		for i, e := range ents {
			p.Entries[i] = e.id
		}
		for id := range skip {
			p.Skip = append(p.Skip, id)
		}
		if len(rows[bq.Messages])+len(rows[bq.Events]) == 0 {
			// Nothing to write (dead letters or rows written before): acknowledge.
			a.retryRedis(ctx, "acknowledging entries", func() error { return a.f.Ack(ctx, p.Entries) })
			return
		}
		for t := range rows {
			if len(rows[t]) == 0 {
				continue
			}
			s := a.stream(ctx, sl, bq.Table(t))
			if s == nil {
				return
			}
			p.Parts = append(p.Parts, feed.Part{Table: bq.Table(t).String(), Stream: s.Name(), Offset: sl.next[t], Rows: len(rows[t])})
		}
		var taken map[string]string
		if !a.retryRedis(ctx, "recording a plan", func() (err error) { taken, err = a.f.CreatePlan(ctx, p); return }) {
			return
		}
		if len(taken) == 0 {
			have := make(map[string]entryRows, len(ents))
			for _, e := range ents {
				have[e.id] = e
			}
			a.complete(ctx, sl, p, have, &rows)
			return
		}
		// Some entries have a plan already: another replica claimed and planned them first, or
		// this replica's own plan was recorded by an attempt whose answer was lost. Complete
		// those plans and plan the rest again.
		var plans map[string]*feed.Plan
		ids := make([]string, 0, len(taken))
		for e := range taken {
			ids = append(ids, e)
		}
		if !a.retryRedis(ctx, "reading plans", func() (err error) { plans, err = a.f.Plans(ctx, ids); return }) {
			return
		}
		var ok bool
		if ents, ok = a.completePlans(ctx, sl, ents, plans); !ok {
			return
		}
	}
}

// completePlans completes the plans that entries of ents belong to and returns the entries that
// have none; false when ctx ended first.
func (a *Adapter) completePlans(ctx context.Context, sl *slot, ents []entryRows, plans map[string]*feed.Plan) ([]entryRows, bool) {
	var fresh []entryRows
	have := map[string]entryRows{}
	for _, e := range ents {
		if plans[e.id] == nil {
			fresh = append(fresh, e)
		} else {
			have[e.id] = e
		}
	}
	done := map[string]bool{}
	for _, e := range ents {
		p := plans[e.id]
		if p == nil || done[p.ID] {
			continue
		}
		done[p.ID] = true
		if !a.complete(ctx, sl, p, have, nil) {
			return nil, false
		}
	}
	return fresh, true
}

// rebuild returns the rows of plan p: its entries' rows (from have, or read from the stream), in
// order, without the skipped ids, payload_json dropped where the plan says so.
func (a *Adapter) rebuild(ctx context.Context, p *feed.Plan, have map[string]entryRows) ([2][]*bq.Row, bool) {
	var missing []string
	for _, id := range p.Entries {
		if _, ok := have[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		var es []feed.Entry
		if !a.retryRedis(ctx, "reading the entries of a plan", func() (err error) { es, err = a.f.Fetch(ctx, missing); return }) {
			return [2][]*bq.Row{}, false
		}
		have = maps(have)
		for _, e := range es {
			rows, _, _, _ := decodeEntry(e, time.Now()) // dead letters: written by whoever held the entry
			have[e.ID] = entryRows{id: e.ID, rows: rows}
		}
		if n := len(missing) - len(es); n > 0 {
			a.log.Error().Int("entries", n).Str("plan", p.ID).Msg("entries of a plan were trimmed from the stream before they were written (raise the brokers' export MAXLEN)")
		}
	}
	ents := make([]entryRows, 0, len(p.Entries))
	for _, id := range p.Entries {
		if e, ok := have[id]; ok {
			ents = append(ents, e)
		}
	}
	skip := make(map[string]bool, len(p.Skip))
	for _, id := range p.Skip {
		skip[id] = true
	}
	rows, _, _ := flatten(ents, skip)
	if len(p.NoJSON) > 0 {
		nojson := make(map[string]bool, len(p.NoJSON))
		for _, id := range p.NoJSON {
			nojson[id] = true
		}
		for _, r := range rows[bq.Messages] {
			r.NoJSON = r.NoJSON || nojson[r.ID]
		}
	}
	return rows, true
}

func maps(m map[string]entryRows) map[string]entryRows {
	out := make(map[string]entryRows, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// outcome of one part of a plan.
type outcome int

const (
	partDone  outcome = iota // the part's rows are in the table
	partAgain                // try the part again (after a backoff)
	partNow                  // try the part again at once (it changed)
	planMoved                // the plan changed (in Redis): start over with it
	planGone                 // someone finished the plan
	ctxDone                  // ctx ended
)

// complete writes the rows of plan p at its offsets and finishes it (acknowledges its entries).
// rows, when given, are p's rows already built. It returns false when ctx ended first.
func (a *Adapter) complete(ctx context.Context, sl *slot, p *feed.Plan, have map[string]entryRows, rows *[2][]*bq.Row) bool {
	recovered := rows == nil
	foreign := map[string]*bq.Stream{} // other replicas' streams opened for this plan
	defer func() {
		for _, s := range foreign {
			s.Close()
		}
	}()
	for {
		if rows == nil {
			r, ok := a.rebuild(ctx, p, have)
			if !ok {
				return false
			}
			rows = &r
		}
		moved := false
		for i := 0; i < len(p.Parts) && !moved; i++ {
			for attempt := 1; ; attempt++ {
				o, next := a.part(ctx, sl, p, i, rows, foreign, recovered)
				switch o {
				case partDone:
				case partNow:
					attempt = 0
					continue
				case partAgain:
					if !sleep(ctx, a.backoff(attempt)) {
						return false
					}
					// Keep the entries' idle time low, so no replica claims them meanwhile.
					_, _ = a.f.Keep(ctx, p.Entries)
					continue
				case planMoved:
					p, rows, moved = next, nil, true
				case planGone:
					// Someone else finished the plan: what landed in this slot's streams is
					// theirs to know, so their ends are no longer known here.
					for _, pt := range p.Parts {
						if t := tableOf(pt.Table); sl.owns(t, pt.Stream) {
							sl.rotate(t)
						}
					}
					return true
				case ctxDone:
					return false
				}
				break
			}
		}
		if moved {
			continue
		}
		break
	}
	if !a.retryRedis(ctx, "acknowledging entries", func() error { return a.f.FinishPlan(ctx, p) }) {
		return false
	}
	a.seen.add(*rows)
	return true
}

// part writes part i of plan p once and says what came of it. On planMoved it returns the plan
// as it is now.
func (a *Adapter) part(ctx context.Context, sl *slot, p *feed.Plan, i int, rows *[2][]*bq.Row, foreign map[string]*bq.Stream, recovered bool) (outcome, *feed.Plan) {
	if ctx.Err() != nil {
		return ctxDone, nil
	}
	pt := &p.Parts[i]
	t := tableOf(pt.Table)
	r := rows[t]
	if pt.Rows == 0 && len(r) == 0 {
		return partDone, nil // every row of the part was refused or found in the table
	}
	if len(r) != pt.Rows {
		// Not the rows the plan was made of: appending them at its offset is not safe.
		return a.decide(ctx, sl, p, i, rows)
	}
	own := sl.owns(t, pt.Stream)
	var s *bq.Stream
	if own {
		s = sl.streams[t]
	} else if s = foreign[pt.Stream]; s == nil {
		rctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
		var err error
		s, err = a.bq.OpenStream(rctx, t, pt.Stream)
		cancel()
		switch {
		case errors.Is(err, bq.ErrStreamNotFound):
			return a.lost(ctx, sl, p, i, rows)
		case err != nil:
			a.m.Retries.WithLabelValues("retry").Inc()
			a.log.Warn().Err(err).Str("stream", pt.Stream).Msg("opening another replica's write stream failed; retrying")
			return partAgain, nil
		}
		foreign[pt.Stream] = s
	}
	rctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
	start := time.Now()
	err := s.Append(rctx, r, pt.Offset)
	cancel()
	var re *bq.RowErrors
	switch {
	case err == nil:
		a.m.BatchTime.Observe(time.Since(start).Seconds())
		a.m.BatchRows.Observe(float64(len(r)))
		a.m.Batches.Inc()
		a.m.Rows.Add(float64(len(r)))
		if recovered {
			a.m.Recovered.WithLabelValues("append").Inc()
		}
	case errors.Is(err, bq.ErrAlreadyExists):
		a.m.Duplicates.WithLabelValues("offset").Add(float64(len(r)))
		if recovered {
			a.m.Recovered.WithLabelValues("append").Inc()
		}
	case errors.As(err, &re):
		return a.refused(ctx, p, i, rows, re)
	case errors.Is(err, bq.ErrOutOfRange), errors.Is(err, bq.ErrFinalized):
		a.log.Warn().Err(err).Str("stream", pt.Stream).Int64("offset", pt.Offset).Msg("write stream does not take the plan's offset; deciding by its final row count")
		return a.decide(ctx, sl, p, i, rows)
	case errors.Is(err, bq.ErrStreamNotFound):
		return a.lost(ctx, sl, p, i, rows)
	case errors.Is(err, bq.ErrRefused):
		a.m.Retries.WithLabelValues("retry").Inc()
		a.log.Warn().Err(err).Int("rows", len(r)).Msg("append refused; retrying")
		return partAgain, nil
	default:
		if ctx.Err() != nil {
			return ctxDone, nil
		}
		a.m.Retries.WithLabelValues("uncertain").Inc()
		a.log.Warn().Err(err).Int("rows", len(r)).Str("stream", pt.Stream).Int64("offset", pt.Offset).
			Msg("append failed, outcome unknown; sending it again at the same offset")
		return partAgain, nil
	}
	if own {
		sl.next[t] = pt.Offset + int64(pt.Rows)
	}
	return partDone, nil
}
