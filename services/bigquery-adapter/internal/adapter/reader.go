package adapter

import (
	"context"
	"slices"
	"time"

	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// The reader: it reads entries through the consumer group (own pending ones first, then new and
// claimed ones), makes them into batches and hands those to the writers.

// maxBlock bounds one blocking read, which is how long a SIGTERM may wait to be noticed.
const maxBlock = 500 * time.Millisecond

// read is the reader loop: own pending entries first, then claimed and new ones.
func (a *Adapter) read(ctx context.Context, work chan<- *batch) {
	// After ctx ends, batches already read are still handed to the writers (which outlive ctx),
	// but only for ShutdownTimeout: writers stuck on a BigQuery outage must not hold the stop.
	var stopBy <-chan time.Time
	send := func(b *batch) bool {
		if b == nil || len(b.entries) == 0 {
			return true
		}
		select {
		case work <- b:
			return true
		case <-ctx.Done():
		}
		if stopBy == nil {
			stopBy = time.After(a.o.ShutdownTimeout)
		}
		select {
		case work <- b:
		case <-stopBy:
			a.forget(b) // its entries stay pending for the next start or another replica
		}
		return false
	}
	// 1. What this consumer read before and did not acknowledge (a restart under the same id).
	if !a.readOwn(ctx, send) {
		return
	}
	// 2. New entries, and every ClaimIdle/4 what dead replicas left pending.
	a.readNew(ctx, send)
}

// readOwn hands to the writers what this consumer read before and did not acknowledge (a
// restart under the same id). It returns false when send did (ctx ended).
func (a *Adapter) readOwn(ctx context.Context, send func(*batch) bool) bool {
	after := "0"
	for ctx.Err() == nil {
		es, err := a.f.ReadOwn(ctx, after, a.entriesFor(a.o.BatchRows))
		if err != nil {
			a.redisError(ctx, err, "reading own pending entries")
			continue
		}
		if len(es) == 0 {
			break
		}
		after = es[len(es)-1].ID
		for _, b := range a.makeBatches(es, true) {
			if !send(b) {
				return false
			}
		}
	}
	return true
}

// readNew hands to the writers new entries, and every ClaimIdle/4 what dead replicas left
// pending, until send returns false or ctx ends (then it sends the open batch).
func (a *Adapter) readNew(ctx context.Context, send func(*batch) bool) {
	var cur *batch
	lastClaim := time.Time{}
	claimEvery := max(a.o.ClaimIdle/4, time.Second)
	for ctx.Err() == nil {
		if time.Since(lastClaim) >= claimEvery {
			lastClaim = time.Now()
			if !a.claim(ctx, send) {
				break
			}
		}
		block := a.o.BatchDelay
		if cur != nil {
			block = a.o.BatchDelay - time.Since(cur.started)
		}
		want := a.o.BatchRows
		if cur != nil {
			want -= cur.rows
		}
		// A blocking XREADGROUP does not end with ctx: keep it short so SIGTERM is seen soon.
		es, err := a.f.ReadNew(ctx, a.entriesFor(want), min(block, maxBlock))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			a.redisError(ctx, err, "reading new entries")
			continue
		}
		for _, e := range es {
			d := a.decode(e)
			if cur != nil && cur.overflows(d) {
				if !send(cur) {
					return
				}
				cur = nil
			}
			if cur == nil {
				cur = a.newBatch(false)
			}
			a.put(cur, d)
			if cur.full(a.o) {
				if !send(cur) {
					return
				}
				cur = nil
			}
		}
		if cur != nil && time.Since(cur.started) >= a.o.BatchDelay {
			if !send(cur) {
				return
			}
			cur = nil
		}
	}
	// SIGTERM: the open batch is written (the writers outlive ctx) and acknowledged.
	send(cur)
}

// claim takes over entries pending for longer than ClaimIdle, in batches.
func (a *Adapter) claim(ctx context.Context, send func(*batch) bool) bool {
	start := "0-0"
	for i := 0; i < 100 && ctx.Err() == nil; i++ {
		es, next, deleted, err := a.f.Claim(ctx, a.o.ClaimIdle, start, a.entriesFor(a.o.BatchRows))
		if err != nil {
			a.redisError(ctx, err, "claiming pending entries")
			return ctx.Err() == nil
		}
		if len(deleted) > 0 {
			a.m.Trimmed.Add(float64(len(deleted)))
			a.log.Error().Int("entries", len(deleted)).Msg("pending entries were trimmed from the stream before being written (raise the brokers' export MAXLEN)")
			_ = a.f.Ack(ctx, deleted)
		}
		// Entries this replica is still working on (a long retry) are its own: skip them.
		a.mu.Lock()
		es = slices.DeleteFunc(es, func(e feed.Entry) bool { return a.inflight[e.ID] })
		a.mu.Unlock()
		if len(es) > 0 {
			a.m.Claimed.Add(float64(len(es)))
			a.log.Info().Int("entries", len(es)).Msg("claimed entries another replica left pending")
			for _, b := range a.makeBatches(es, true) {
				if !send(b) {
					return false
				}
			}
		}
		if next == "0-0" || next == "" {
			break
		}
		start = next
	}
	if a.bq.API() == bq.StorageWrite {
		// Plans whose entries were acknowledged by a replica that stopped before forgetting them.
		next, n, err := a.f.CleanPlans(ctx, a.planScan, 200)
		if err != nil {
			a.log.Debug().Err(err).Msg("cleaning finished plans failed")
		} else {
			a.planScan = next
			if n > 0 {
				a.log.Info().Int("plans", n).Msg("forgot plans whose entries were acknowledged")
			}
		}
	}
	return true
}

// entriesFor returns how many entries to read for about rows more rows. Reading is in entries
// and an entry holds 1 to 512 messages; an entry read is pending for this replica, so reading
// far more than a batch's worth would pile up what a crash leaves to be checked again.
func (a *Adapter) entriesFor(rows int) int {
	a.mu.Lock()
	per := max(a.perEntry, 1)
	a.mu.Unlock()
	return max(1, int(float64(rows)/per))
}
