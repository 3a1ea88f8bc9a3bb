package adapter

import (
	"context"
	"errors"
	"time"

	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// The insertAll path (ADAPTER_BIGQUERY_API=insertall): rows go in one tabledata.insertAll per
// table and attempt, insertId = row id; after an attempt whose outcome is unknown the adapter asks
// the table which of the rows it already holds (Existing) and sends only the others.

// writeInsertAll puts b into BigQuery and acknowledges its entries once every row of them is in the
// table or in the dead-letter stream. It returns when that is done, or when ctx ends: then
// nothing is acknowledged and the entries stay pending (their rows already written are found
// by Existing when they are taken up again).
func (a *Adapter) writeInsertAll(ctx context.Context, b *batch) {
	defer a.forget(b)
	notOurs := map[string]bool{} // entries another replica claimed meanwhile: not ours to ack
	if !a.deadLetter(ctx, b.dead, b.deadWhy) {
		return
	}
	// Rows this replica wrote recently (the broker exported the message twice).
	rows, entries, dups := flatten(b.ents, a.seen.skip(b.ents, a.m))
	if dups > 0 {
		a.m.Duplicates.WithLabelValues("batch").Add(float64(dups))
	}
	// One insertAll per table; split on a request BigQuery refuses as a whole, until the bad rows
	// stand alone.
	var stack []part
	for t := range rows {
		if len(rows[t]) > 0 {
			stack = append(stack, part{rows[t], entries[t], b.recovered})
		}
	}
	for len(stack) > 0 {
		if ctx.Err() != nil {
			return
		}
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		halves, ok := a.writePart(ctx, p, b.recovered, notOurs)
		if !ok {
			return
		}
		stack = append(stack, halves...)
	}
	ack := make([]string, 0, len(b.entries))
	for _, id := range b.entries {
		if !notOurs[id] {
			ack = append(ack, id)
		}
	}
	a.retryRedis(ctx, "acknowledging entries", func() error { return a.f.Ack(ctx, ack) })
}

// writePart sends p until its rows are in the table or in the dead-letter stream, or no longer
// this replica's (their entries go into notOurs). When BigQuery refuses the request as a whole it
// returns p's two halves to send instead. It returns false when ctx ended first.
func (a *Adapter) writePart(ctx context.Context, p part, recovered bool, notOurs map[string]bool) ([]part, bool) {
	var halves []part
	for attempt := 1; len(p.rows) > 0; attempt++ {
		if attempt > 1 && !sleep(ctx, a.backoff(attempt-1)) {
			return nil, false
		}
		var ok bool
		if p, ok = a.checkPart(ctx, p, attempt > 1 || recovered, notOurs); !ok {
			continue
		}
		if len(p.rows) == 0 {
			break
		}
		err := a.insertPart(ctx, p.rows)
		if err == nil {
			break
		}
		var now bool
		p, halves, now, ok = a.insertFailed(ctx, p, err, attempt)
		if !ok {
			return nil, false
		}
		if now {
			attempt = 0 // the rest was refused only because of the dead rows: send it at once
		}
	}
	return halves, true
}

// checkPart returns p without the rows that need not be sent: when owned is set (a retry, or
// entries delivered before) those of entries another replica claimed meanwhile (recorded in
// notOurs), and when p is uncertain those the table already holds. It returns false when a check
// failed: the attempt is retried.
func (a *Adapter) checkPart(ctx context.Context, p part, owned bool, notOurs map[string]bool) (part, bool) {
	if owned {
		kept, err := a.f.Keep(ctx, uniq(p.entries))
		if err != nil {
			a.m.Retries.WithLabelValues("redis").Inc()
			a.log.Warn().Err(err).Msg("checking entry ownership failed; retrying")
			return p, false
		}
		p = p.filter(func(i int) bool {
			if !kept[p.entries[i]] {
				notOurs[p.entries[i]] = true
				return false
			}
			return true
		})
	}
	if p.uncertain && len(p.rows) > 0 {
		found, err := a.existing(ctx, p.rows)
		if err != nil {
			a.m.Retries.WithLabelValues("uncertain").Inc()
			a.log.Warn().Err(err).Msg("asking the table which rows it holds failed; retrying")
			return p, false
		}
		before := len(p.rows)
		p = p.filter(func(i int) bool { return !found[p.rows[i].ID] })
		if n := before - len(p.rows); n > 0 {
			a.m.Duplicates.WithLabelValues("table").Add(float64(n))
		}
		p.uncertain = false
	}
	return p, true
}

// insertPart sends rows in one insertAll and, when it worked, counts and remembers them.
func (a *Adapter) insertPart(ctx context.Context, rows []*bq.Row) error {
	rctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
	start := time.Now()
	err := a.bq.Insert(rctx, rows)
	cancel()
	if err == nil {
		a.m.BatchTime.Observe(time.Since(start).Seconds())
		a.m.BatchRows.Observe(float64(len(rows)))
		a.m.Batches.Inc()
		a.m.Rows.Add(float64(len(rows)))
		a.seen.add([2][]*bq.Row{rows})
	}
	return err
}

// insertFailed handles err, the failure of attempt number attempt to send p. It returns what of
// p is still to be sent (no rows when nothing is), the halves to send instead when p was split,
// whether to send the rest at once (the refused rows went to the dead letters), and false when
// ctx ended first.
func (a *Adapter) insertFailed(ctx context.Context, p part, err error, attempt int) (rest part, halves []part, now, ok bool) {
	var ie *bq.InsertError
	if errors.As(err, &ie) {
		// Nothing was written; the refused rows go to the dead letters, the rest again.
		bad := map[int]string{}
		for _, re := range ie.Invalid {
			bad[re.Index] = re.Reason
		}
		var dead []feed.Dead
		p = p.filter(func(i int) bool {
			if why, ok := bad[i]; ok {
				dead = append(dead, rowDead(p.entries[i], p.rows[i], "bigquery: "+why))
				return false
			}
			return true
		})
		if !a.deadLetter(ctx, dead, nil) {
			return p, nil, false, false
		}
		return p, nil, true, true
	}
	switch bq.Classify(err) {
	case bq.Invalid:
		if len(p.rows) == 1 {
			if !a.deadLetter(ctx, []feed.Dead{rowDead(p.entries[0], p.rows[0], "bigquery: "+err.Error())}, nil) {
				return p, nil, false, false
			}
			p.rows = nil
			return p, nil, false, true
		}
		a.m.Retries.WithLabelValues("invalid").Inc()
		h := len(p.rows) / 2
		halves = []part{{p.rows[h:], p.entries[h:], p.uncertain}, {p.rows[:h], p.entries[:h], p.uncertain}}
		p.rows = nil
		a.log.Warn().Err(err).Int("rows", h*2).Msg("BigQuery refused the request; splitting it to find the bad rows")
	case bq.Retry:
		a.m.Retries.WithLabelValues("retry").Inc()
		a.log.Warn().Err(err).Int("rows", len(p.rows)).Int("attempt", attempt).Msg("insertAll refused; retrying")
	default:
		a.m.Retries.WithLabelValues("uncertain").Inc()
		p.uncertain = true
		a.log.Warn().Err(err).Int("rows", len(p.rows)).Int("attempt", attempt).Msg("insertAll failed, outcome unknown; checking and retrying")
	}
	return p, halves, false, true
}

// rowDead is the dead letter of one row BigQuery refused: the entry, the row id, the error.
func rowDead(entry string, r *bq.Row, why string) feed.Dead {
	key := "message_id"
	if r.Table == bq.Events {
		key = "event_id"
	}
	return feed.Dead{Entry: feed.Entry{ID: entry, Fields: map[string]any{key: r.ID}}, Err: why}
}

func uniq(ids []string) []string {
	out := make([]string, 0, len(ids))
	for i, id := range ids {
		if i == 0 || id != ids[i-1] {
			out = append(out, id)
		}
	}
	return out
}

// part is a run of rows sent in one insertAll.
type part struct {
	rows      []*bq.Row // all of one table
	entries   []string  // entry id of each row
	uncertain bool      // the rows may already be in the table
}

// filter returns p with the rows for which keep(i) holds.
func (p part) filter(keep func(i int) bool) part {
	var rows []*bq.Row
	var entries []string
	for i := range p.rows {
		if keep(i) {
			rows = append(rows, p.rows[i])
			entries = append(entries, p.entries[i])
		}
	}
	p.rows, p.entries = rows, entries
	return p
}

func (a *Adapter) existing(ctx context.Context, rows []*bq.Row) (map[string]bool, error) {
	ids := make([]string, len(rows))
	from, to := rows[0].At, rows[0].At
	for i, r := range rows {
		ids[i] = r.ID
		if r.At.Before(from) {
			from = r.At
		}
		if r.At.After(to) {
			to = r.At
		}
	}
	qctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
	defer cancel()
	return a.bq.Existing(qctx, rows[0].Table, ids, from, to)
}
