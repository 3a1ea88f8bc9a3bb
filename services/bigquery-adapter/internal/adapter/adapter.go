// Package adapter moves the export stream into BigQuery: it reads entries through the consumer
// group, turns them into rows, writes them in batches, and acknowledges entries only once
// BigQuery holds their rows.
//
// No row is lost: an entry is acknowledged after BigQuery confirmed its row (or after it went to
// the dead-letter stream), so a replica that dies leaves its entries pending, and they are written
// by the replica itself when it comes back under the same id (ReadOwn) or by another one after
// ClaimIdle (XAUTOCLAIM).
//
// No row is doubled, even when the replica dies between BigQuery's confirmation and the XACK, or
// an insertAll times out after BigQuery applied it: every row carries its message id as insertId
// (BigQuery's best-effort deduplication, about a minute), and whenever an attempt's outcome is
// unknown — entries delivered before (taken back or claimed), or an attempt that ended in a 5xx,
// a timeout or a lost connection — the adapter first asks the table which of the batch's message
// ids it already holds and sends only the others. That question costs one query, so it is asked
// only then, never on the normal path. Before every attempt after the first, the adapter also
// makes sure the entries are still its own and resets their idle time, so no other replica
// claims and writes them at the same time. Entries the broker wrote twice (a retried XADD) are
// skipped by message id within a batch and against the replica's recently written ids.
package adapter

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// Options configure an Adapter; see the config package for their meaning and defaults.
type Options struct {
	BatchRows, BatchBytes int
	BatchDelay            time.Duration
	Writers               int
	RequestTimeout        time.Duration
	RetryMin, RetryMax    time.Duration
	ClaimIdle             time.Duration
	DedupCache            int
	// ShutdownTimeout bounds writing the open batches after Run's context ends.
	ShutdownTimeout time.Duration
}

// Adapter is one replica's pipeline from the stream to the table.
type Adapter struct {
	o   Options
	f   *feed.Feed
	bq  *bq.Client
	log zerolog.Logger
	m   *Metrics

	seen *idCache

	mu       sync.Mutex
	perEntry float64         // messages per entry, a moving average: how many entries to read
	inflight map[string]bool // entry ids read and not yet acknowledged or abandoned
	setup    bool            // the group and the table are ready
	lastErr  error
}

// New returns an adapter; Run starts it.
func New(o Options, f *feed.Feed, c *bq.Client, m *Metrics, log zerolog.Logger) *Adapter {
	return &Adapter{o: o, f: f, bq: c, m: m, log: log, seen: newIDCache(o.DedupCache), inflight: map[string]bool{}}
}

// Ready reports whether the group and the table have been set up, and if not, the last error.
func (a *Adapter) Ready() (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.setup, a.lastErr
}

// maxBlock bounds one blocking read, which is how long a SIGTERM may wait to be noticed.
const maxBlock = 500 * time.Millisecond

// batch is one insertAll's worth of entries. An entry holds one or more messages (an envelope
// batch) and is never split between batches; it is acknowledged once all of its rows are in the
// table or in the dead-letter stream.
type batch struct {
	entries   []string // entry ids, each once, in stream order
	rows      []bq.Row
	rowEntry  []string // entry id of each row
	dead      []feed.Dead
	deadWhy   []string // metric reason of each dead letter
	bytes     int
	recovered bool // delivered before: the rows may already be in the table
	started   time.Time
	ids       map[string]bool // message ids in rows
}

func (b *batch) full(o Options) bool { return len(b.rows) >= o.BatchRows || b.bytes >= o.BatchBytes }

// Run sets up the group and the table (retrying until both work), then moves entries until
// ctx ends; then it writes the open batches within ShutdownTimeout and acknowledges them.
func (a *Adapter) Run(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := a.f.EnsureGroup(ctx)
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
			err = a.bq.Setup(sctx)
			cancel()
		}
		if err == nil {
			break
		}
		a.mu.Lock()
		a.lastErr = err
		a.mu.Unlock()
		a.log.Warn().Err(err).Int("attempt", attempt).Msg("setting up the consumer group and the table failed; retrying")
		if !sleep(ctx, a.backoff(attempt)) {
			return nil
		}
	}
	a.mu.Lock()
	a.setup = true
	a.mu.Unlock()
	a.log.Info().Str("stream", a.f.Stream()).Msg("consumer group and table ready")

	// Writers outlive ctx by ShutdownTimeout, to finish the batches handed to them.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	work := make(chan *batch, a.o.Writers)
	var wg sync.WaitGroup
	for i := 0; i < a.o.Writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				a.write(wctx, b)
			}
		}()
	}
	var endedAt atomic.Int64 // when ctx ended: the whole stop fits in ShutdownTimeout from then
	defer context.AfterFunc(ctx, func() { endedAt.Store(time.Now().UnixNano()) })()
	a.read(ctx, work)
	close(work)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	left := a.o.ShutdownTimeout
	if t := endedAt.Load(); t != 0 {
		left -= time.Since(time.Unix(0, t))
	}
	select {
	case <-done:
	case <-time.After(max(left, 0)):
		a.log.Warn().Msg("shutdown timeout: unfinished batches stay pending for the next replica")
		wcancel()
		<-done
	}
	return nil
}

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
				return
			}
		}
	}
	// 2. New entries, and every ClaimIdle/4 what dead replicas left pending.
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
			want -= len(cur.rows)
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
			if cur == nil {
				cur = a.newBatch(false)
			}
			a.add(cur, e)
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

func (a *Adapter) newBatch(recovered bool) *batch {
	return &batch{recovered: recovered, started: time.Now(), ids: map[string]bool{}}
}

// makeBatches puts entries into as many batches as the limits need.
func (a *Adapter) makeBatches(es []feed.Entry, recovered bool) []*batch {
	var out []*batch
	var b *batch
	for _, e := range es {
		if b == nil {
			b = a.newBatch(recovered)
			out = append(out, b)
		}
		a.add(b, e)
		if b.full(a.o) {
			b = nil
		}
	}
	return out
}

// add decodes e into b: rows, duplicates, dead letters.
func (a *Adapter) add(b *batch, e feed.Entry) {
	a.mu.Lock()
	a.inflight[e.ID] = true
	a.mu.Unlock()
	b.entries = append(b.entries, e.ID)
	if e.Data == nil {
		b.dead = append(b.dead, feed.Dead{Entry: e, Err: "entry has no field " + bus.ExportField})
		b.deadWhy = append(b.deadWhy, "malformed")
		return
	}
	ms, err := bus.DecodeBatch(e.Data)
	if err == nil && len(ms) == 0 {
		err = errors.New("entry holds no message")
	}
	if err != nil {
		b.dead = append(b.dead, feed.Dead{Entry: e, Err: err.Error()})
		b.deadWhy = append(b.deadWhy, "malformed")
		return
	}
	a.mu.Lock()
	a.perEntry += (float64(len(ms)) - a.perEntry) / 16
	a.mu.Unlock()
	now := time.Now()
	for i := range ms {
		row, err := bq.NewRow(&ms[i], now)
		if err != nil {
			// The dead letter keeps this one message, as a one-message envelope batch.
			one, _ := bus.AppendMessage(bus.AppendBatchHeader(nil), &ms[i])
			b.dead = append(b.dead, feed.Dead{Entry: feed.Entry{ID: e.ID, Data: one}, Err: err.Error()})
			b.deadWhy = append(b.deadWhy, "invalid_row")
			continue
		}
		if b.ids[row.ID] {
			a.m.Duplicates.WithLabelValues("batch").Inc()
			continue
		}
		b.ids[row.ID] = true
		b.rows = append(b.rows, row)
		b.rowEntry = append(b.rowEntry, e.ID)
		b.bytes += row.Size
	}
}

func (a *Adapter) forget(b *batch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range b.entries {
		delete(a.inflight, id)
	}
}

// write puts b into BigQuery and acknowledges its entries once every row of them is in the
// table or in the dead-letter stream. It returns when that is done, or when ctx ends: then
// nothing is acknowledged and the entries stay pending (their rows already written are found
// by Existing when they are taken up again).
func (a *Adapter) write(ctx context.Context, b *batch) {
	defer a.forget(b)
	notOurs := map[string]bool{} // entries another replica claimed meanwhile: not ours to ack
	if !a.deadLetter(ctx, b.dead, b.deadWhy) {
		return
	}
	// Rows this replica wrote recently (the broker exported the message twice).
	var rows []bq.Row
	var rowEntry []string
	for i, r := range b.rows {
		if a.seen.has(r.ID) {
			a.m.Duplicates.WithLabelValues("cache").Inc()
			continue
		}
		rows = append(rows, r)
		rowEntry = append(rowEntry, b.rowEntry[i])
	}
	// Split on a request BigQuery refuses as a whole, until the bad rows stand alone.
	stack := []part{{rows, rowEntry, b.recovered}}
	for len(stack) > 0 {
		if ctx.Err() != nil {
			return
		}
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for attempt := 1; len(p.rows) > 0; attempt++ {
			if attempt > 1 && !sleep(ctx, a.backoff(attempt-1)) {
				return
			}
			if attempt > 1 || b.recovered {
				kept, err := a.f.Keep(ctx, uniq(p.entries))
				if err != nil {
					a.m.Retries.WithLabelValues("redis").Inc()
					a.log.Warn().Err(err).Msg("checking entry ownership failed; retrying")
					continue
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
					continue
				}
				before := len(p.rows)
				p = p.filter(func(i int) bool { return !found[p.rows[i].ID] })
				if n := before - len(p.rows); n > 0 {
					a.m.Duplicates.WithLabelValues("table").Add(float64(n))
				}
				p.uncertain = false
			}
			if len(p.rows) == 0 {
				break
			}
			rctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
			start := time.Now()
			err := a.bq.Insert(rctx, p.rows)
			cancel()
			if err == nil {
				a.m.BatchTime.Observe(time.Since(start).Seconds())
				a.m.BatchRows.Observe(float64(len(p.rows)))
				a.m.Batches.Inc()
				a.m.Rows.Add(float64(len(p.rows)))
				for _, r := range p.rows {
					a.seen.add(r.ID)
				}
				break
			}
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
					return
				}
				attempt = 0 // the rest was refused only because of them: send it at once
				continue
			}
			switch bq.Classify(err) {
			case bq.Invalid:
				if len(p.rows) == 1 {
					if !a.deadLetter(ctx, []feed.Dead{rowDead(p.entries[0], p.rows[0], "bigquery: "+err.Error())}, nil) {
						return
					}
					p.rows = nil
					continue
				}
				a.m.Retries.WithLabelValues("invalid").Inc()
				h := len(p.rows) / 2
				stack = append(stack, part{p.rows[h:], p.entries[h:], p.uncertain}, part{p.rows[:h], p.entries[:h], p.uncertain})
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
		}
	}
	ack := make([]string, 0, len(b.entries))
	for _, id := range b.entries {
		if !notOurs[id] {
			ack = append(ack, id)
		}
	}
	a.retryRedis(ctx, "acknowledging entries", func() error { return a.f.Ack(ctx, ack) })
}

// rowDead is the dead letter of one row BigQuery refused: the entry, the message id, the error.
func rowDead(entry string, r bq.Row, why string) feed.Dead {
	return feed.Dead{Entry: feed.Entry{ID: entry, Fields: map[string]any{"message_id": r.ID}}, Err: why}
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
	rows      []bq.Row
	entries   []string // entry id of each row
	uncertain bool     // the rows may already be in the table
}

// filter returns p with the rows for which keep(i) holds.
func (p part) filter(keep func(i int) bool) part {
	var rows []bq.Row
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

func (a *Adapter) existing(ctx context.Context, rows []bq.Row) (map[string]bool, error) {
	ids := make([]string, len(rows))
	from, to := rows[0].Published, rows[0].Published
	for i, r := range rows {
		ids[i] = r.ID
		if r.Published.Before(from) {
			from = r.Published
		}
		if r.Published.After(to) {
			to = r.Published
		}
	}
	qctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
	defer cancel()
	return a.bq.Existing(qctx, ids, from, to)
}

// deadLetter appends dead to the dead-letter stream (retrying until it works or ctx ends) and
// counts them, by why[i] or as "refused" when why is nil.
func (a *Adapter) deadLetter(ctx context.Context, dead []feed.Dead, why []string) bool {
	if len(dead) == 0 {
		return true
	}
	if !a.retryRedis(ctx, "dead-lettering entries", func() error { return a.f.DeadLetter(ctx, dead) }) {
		return false
	}
	for i, d := range dead {
		reason := "refused"
		if why != nil {
			reason = why[i]
		}
		a.m.DeadLetters.WithLabelValues(reason).Inc()
		a.log.Warn().Str("entry", d.Entry.ID).Str("error", d.Err).Msg("moved to the dead-letter stream")
	}
	return true
}

// retryRedis runs fn until it succeeds or ctx ends.
func (a *Adapter) retryRedis(ctx context.Context, what string, fn func() error) bool {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return true
		}
		a.m.Retries.WithLabelValues("redis").Inc()
		a.log.Warn().Err(err).Int("attempt", attempt).Msg(what + " failed; retrying")
		if !sleep(ctx, a.backoff(attempt)) {
			return false
		}
	}
}

func (a *Adapter) redisError(ctx context.Context, err error, what string) {
	a.m.Retries.WithLabelValues("redis").Inc()
	a.log.Warn().Err(err).Msg(what + " failed; retrying")
	sleep(ctx, a.backoff(1))
}

// backoff returns the delay before attempt n+1: RetryMin doubled per attempt, capped at
// RetryMax, drawn at random from its upper half (jitter).
func (a *Adapter) backoff(n int) time.Duration { return bus.Backoff(n, a.o.RetryMin, a.o.RetryMax) }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// idCache remembers recently written message ids in two generations of at most n/2 each.
type idCache struct {
	mu       sync.Mutex
	n        int
	cur, old map[string]struct{}
}

func newIDCache(n int) *idCache {
	return &idCache{n: n, cur: map[string]struct{}{}}
}

func (c *idCache) add(id string) {
	if c.n == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.n/2+1 {
		c.old, c.cur = c.cur, make(map[string]struct{}, len(c.cur))
	}
	c.cur[id] = struct{}{}
}

func (c *idCache) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[id]; ok {
		return true
	}
	_, ok := c.old[id]
	return ok
}
