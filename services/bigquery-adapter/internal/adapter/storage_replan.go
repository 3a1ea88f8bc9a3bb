package adapter

import (
	"context"
	"errors"

	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// Changing a part of a plan when its rows cannot go at its offset as planned (storage.go): its
// stream was finalized or no longer exists (decide, lost, replan), or BigQuery refused rows of it
// (refused). Each records the changed plan with move, a compare-and-set.

// move records p (changed by the caller) with a compare-and-set; the outcome for the part loop.
func (a *Adapter) move(ctx context.Context, p *feed.Plan) (outcome, *feed.Plan) {
	var res feed.UpdateResult
	var cur *feed.Plan
	if !a.retryRedis(ctx, "updating a plan", func() (err error) { res, cur, err = a.f.UpdatePlan(ctx, p); return }) {
		return ctxDone, nil
	}
	switch res {
	case feed.Gone:
		return planGone, nil
	case feed.Changed:
		return planMoved, cur
	}
	return planMoved, p
}

// decide settles part i of p by its stream's final row count: rows beyond the part's offset are
// the part's (nothing else ever goes there); none, and the part moves to this slot's stream.
func (a *Adapter) decide(ctx context.Context, sl *slot, p *feed.Plan, i int, rows *[2][]*bq.Row) (outcome, *feed.Plan) {
	pt := &p.Parts[i]
	t := tableOf(pt.Table)
	n, ok, err := a.f.FinalCount(ctx, pt.Stream)
	if err != nil {
		a.m.Retries.WithLabelValues("redis").Inc()
		return partAgain, nil
	}
	if !ok {
		rctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
		n, err = a.bq.Finalize(rctx, pt.Stream)
		cancel()
		switch {
		case errors.Is(err, bq.ErrStreamNotFound):
			return a.lost(ctx, sl, p, i, rows)
		case err != nil:
			a.m.Retries.WithLabelValues("retry").Inc()
			a.log.Warn().Err(err).Str("stream", pt.Stream).Msg("finalizing a write stream failed; retrying")
			return partAgain, nil
		}
		if err := a.f.SetFinalCount(ctx, pt.Stream, n); err != nil {
			a.m.Retries.WithLabelValues("redis").Inc()
			return partAgain, nil // finalizing again returns the same count
		}
		a.log.Info().Str("stream", pt.Stream).Int64("rows", n).Msg("write stream finalized")
	}
	if sl.owns(t, pt.Stream) {
		sl.rotate(t)
	}
	a.m.Recovered.WithLabelValues("finalized").Inc()
	if n > pt.Offset {
		return partDone, nil
	}
	return a.replan(ctx, sl, p, i, rows)
}

// replan moves part i of p to this slot's stream of its table, with the rows as rebuilt now.
func (a *Adapter) replan(ctx context.Context, sl *slot, p *feed.Plan, i int, rows *[2][]*bq.Row) (outcome, *feed.Plan) {
	pt := &p.Parts[i]
	t := tableOf(pt.Table)
	s := a.stream(ctx, sl, t)
	if s == nil {
		return ctxDone, nil
	}
	pt.Stream, pt.Offset, pt.Rows = s.Name(), sl.next[t], len(rows[t])
	o, cur := a.move(ctx, p)
	if o == planMoved && cur == p {
		return partNow, nil // moved: write it there now (the rows stay as they are)
	}
	return o, cur
}

// lost handles a part whose stream no longer exists: its rows may or may not be in the table,
// which is asked (the one case that queries it); the others move to this slot's stream.
func (a *Adapter) lost(ctx context.Context, sl *slot, p *feed.Plan, i int, rows *[2][]*bq.Row) (outcome, *feed.Plan) {
	pt := &p.Parts[i]
	t := tableOf(pt.Table)
	if sl.owns(t, pt.Stream) {
		sl.rotate(t)
	}
	a.m.Recovered.WithLabelValues("query").Inc()
	a.log.Warn().Str("stream", pt.Stream).Msg("a plan's write stream no longer exists; asking the table which of its rows it holds")
	r := rows[t]
	if len(r) > 0 {
		found, err := a.existing(ctx, r)
		if err != nil {
			a.m.Retries.WithLabelValues("uncertain").Inc()
			return partAgain, nil
		}
		var keep []*bq.Row
		for _, x := range r {
			if found[x.ID] {
				p.Skip = append(p.Skip, x.ID)
				a.m.Duplicates.WithLabelValues("table").Inc()
			} else {
				keep = append(keep, x)
			}
		}
		rows[t] = keep
	}
	if len(rows[t]) == 0 {
		pt.Rows = 0
		o, cur := a.move(ctx, p)
		if o == planMoved && cur == p {
			return partDone, nil
		}
		return o, cur
	}
	return a.replan(ctx, sl, p, i, rows)
}

// refused handles rows BigQuery refused (nothing of the append was written): a row with
// payload_json is tried once more without it; other rows go to the dead letters. The plan
// records both, and the part's rows shrink accordingly, at the same offset.
func (a *Adapter) refused(ctx context.Context, p *feed.Plan, i int, rows *[2][]*bq.Row, re *bq.RowErrors) (outcome, *feed.Plan) {
	pt := &p.Parts[i]
	t := tableOf(pt.Table)
	var keep []*bq.Row
	var dead []feed.Dead
	changed := false
	for j, r := range rows[t] {
		why, bad := re.Rows[j]
		switch {
		case !bad:
			keep = append(keep, r)
		case r.HasJSON():
			r.NoJSON, changed = true, true
			p.NoJSON = append(p.NoJSON, r.ID)
			keep = append(keep, r)
			a.log.Warn().Str("row", r.ID).Str("error", why).Msg("BigQuery refused a row's payload_json; writing it without")
		default:
			p.Skip, changed = append(p.Skip, r.ID), true
			dead = append(dead, rowDead(p.ID, r, "bigquery: "+why))
		}
	}
	if !changed {
		// The errors name no row of the append: a refusal of the whole; try again later.
		a.m.Retries.WithLabelValues("invalid").Inc()
		a.log.Warn().Err(re).Msg("append refused with row errors naming no row of it; retrying")
		return partAgain, nil
	}
	if !a.deadLetter(ctx, dead, nil) {
		return ctxDone, nil
	}
	rows[t] = keep
	pt.Rows = len(keep)
	o, cur := a.move(ctx, p)
	if o == planMoved && cur == p {
		return partNow, nil
	}
	return o, cur
}
