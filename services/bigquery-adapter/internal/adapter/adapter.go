// Package adapter moves the export stream into BigQuery: it reads entries through the consumer
// group, turns them into rows (messages and presence events, two tables), writes them in batches,
// and acknowledges entries only once BigQuery holds their rows.
//
// No row is lost: an entry is acknowledged after BigQuery confirmed its rows (or after they went
// to the dead-letter stream), so a replica that dies leaves its entries pending, and they are
// written by the replica itself when it comes back under the same id (ReadOwn) or by another one
// after ClaimIdle (XAUTOCLAIM).
//
// No row is doubled. With the Storage Write API (storage.go) every group of entries gets a plan
// in Redis before its rows are sent: for each table a committed write stream of this replica and
// the offset of the first row. Whoever finds those entries pending later completes the same plan
// (the same rows at the same offsets), and BigQuery applies an append at most once (a second one
// is ALREADY_EXISTS), so no query of the table is needed on any retry. With insertAll
// (insertall.go) every row carries its id as insertId, and whenever an attempt's outcome is
// unknown the adapter first asks the table which of the batch's ids it already holds.
//
// Entries the broker wrote twice (a retried XADD) are skipped by row id within a batch and
// against the replica's recently written ids.
package adapter

import (
	"context"
	"errors"
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
	planScan uint64          // where the next CleanPlans continues
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

// batch is one write's worth of entries. An entry holds one or more messages or presence events
// (an envelope or presence batch) and is never split between batches; it is acknowledged once
// all of its rows are in the table or in the dead-letter stream.
type batch struct {
	entries   []string    // entry ids, each once, in stream order
	ents      []entryRows // the rows of each entry, parallel to entries
	dead      []feed.Dead
	deadWhy   []string // metric reason of each dead letter
	rows      int
	bytes     int
	recovered bool // delivered before: the rows may already be in the table
	started   time.Time
}

// entryRows are the rows of one entry, in the order of its messages.
type entryRows struct {
	id   string
	rows []*bq.Row
}

func (b *batch) full(o Options) bool { return b.rows >= o.BatchRows || b.bytes >= o.BatchBytes }

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
			sl := &slot{}
			defer sl.close()
			for b := range work {
				if a.bq.API() == bq.InsertAll {
					a.writeInsertAll(wctx, b)
				} else {
					a.writeStorage(wctx, sl, b)
				}
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

func (a *Adapter) newBatch(recovered bool) *batch {
	return &batch{recovered: recovered, started: time.Now()}
}

// makeBatches puts entries into as many batches as the limits need.
func (a *Adapter) makeBatches(es []feed.Entry, recovered bool) []*batch {
	var out []*batch
	var b *batch
	for _, e := range es {
		d := a.decode(e)
		if b != nil && b.overflows(d) {
			b = nil
		}
		if b == nil {
			b = a.newBatch(recovered)
			out = append(out, b)
		}
		a.put(b, d)
		if b.full(a.o) {
			b = nil
		}
	}
	return out
}

// decoded is one entry made into rows and dead letters.
type decoded struct {
	id    string
	rows  []*bq.Row
	dead  []feed.Dead
	why   []string
	n     int // messages or events in the entry
	bytes int // about the bytes of its rows
}

// decode makes entry e into rows (and dead letters), marking it in flight.
func (a *Adapter) decode(e feed.Entry) decoded {
	a.mu.Lock()
	a.inflight[e.ID] = true
	a.mu.Unlock()
	d := decoded{id: e.ID}
	d.rows, d.dead, d.why, d.n = decodeEntry(e, time.Now())
	for _, r := range d.rows {
		d.bytes += r.Size
	}
	if d.n > 0 {
		a.mu.Lock()
		a.perEntry += (float64(d.n) - a.perEntry) / 16
		a.mu.Unlock()
	}
	return d
}

// put adds a decoded entry to b.
func (a *Adapter) put(b *batch, d decoded) {
	b.entries = append(b.entries, d.id)
	b.ents = append(b.ents, entryRows{id: d.id, rows: d.rows})
	b.dead = append(b.dead, d.dead...)
	b.deadWhy = append(b.deadWhy, d.why...)
	b.rows += len(d.rows)
	b.bytes += d.bytes
}

// maxBatchBytes bounds a batch's rows whatever ADAPTER_BATCH_BYTES says: one append (or insertAll
// request) per table takes at most 10 MB.
const maxBatchBytes = 9 << 20

// overflows reports whether adding d would take b's requests past what BigQuery takes.
func (b *batch) overflows(d decoded) bool {
	return len(b.entries) > 0 && b.bytes+d.bytes > maxBatchBytes
}

// decodeEntry returns the rows of entry e in order, a dead letter (with its metric reason) for
// each part that cannot be a row, and how many messages or events e holds. The same entry always
// gives the same rows: a plan is rebuilt from its entries.
func decodeEntry(e feed.Entry, now time.Time) (rows []*bq.Row, dead []feed.Dead, why []string, n int) {
	if e.Data == nil {
		return nil, []feed.Dead{{Entry: e, Err: "entry has no field " + bus.ExportField + " or " + bus.PresenceField}}, []string{"malformed"}, 0
	}
	fail := func(err error) ([]*bq.Row, []feed.Dead, []string, int) {
		return nil, []feed.Dead{{Entry: e, Err: err.Error()}}, []string{"malformed"}, 0
	}
	if e.Presence {
		ps, err := bus.DecodePresenceBatch(e.Data)
		if err == nil && len(ps) == 0 {
			err = errors.New("entry holds no event")
		}
		if err != nil {
			return fail(err)
		}
		all := make([]bq.Row, 0, len(ps))
		for i := range ps {
			r, err := bq.NewEventRow(&ps[i], now)
			if err != nil {
				one := bus.AppendPresence(bus.AppendBatchHeader(nil), &ps[i])
				dead = append(dead, feed.Dead{Entry: feed.Entry{ID: e.ID, Data: one, Presence: true}, Err: err.Error()})
				why = append(why, "invalid_row")
				continue
			}
			all = append(all, r)
		}
		return pointers(all), dead, why, len(ps)
	}
	ms, err := bus.DecodeExportEntry(e.Data)
	if err == nil && len(ms) == 0 {
		err = errors.New("entry holds no message")
	}
	if err != nil {
		return fail(err)
	}
	all := make([]bq.Row, 0, len(ms))
	for i := range ms {
		r, err := bq.NewRow(&ms[i], now)
		if err != nil {
			// The dead letter keeps this one message, as a one-message envelope batch.
			one, _ := bus.AppendMessage(bus.AppendBatchHeader(nil), &ms[i])
			dead = append(dead, feed.Dead{Entry: feed.Entry{ID: e.ID, Data: one}, Err: err.Error()})
			why = append(why, "invalid_row")
			continue
		}
		all = append(all, r)
	}
	return pointers(all), dead, why, len(ms)
}

func pointers(rows []bq.Row) []*bq.Row {
	out := make([]*bq.Row, len(rows))
	for i := range rows {
		out[i] = &rows[i]
	}
	return out
}

// flatten returns the rows of ents in order, each row id once (a broker that retried an XADD
// wrote some messages twice) and none of skip, by table. The same entries and skip always give
// the same rows.
func flatten(ents []entryRows, skip map[string]bool) (out [2][]*bq.Row, entries [2][]string, dups int) {
	n := 0
	for _, e := range ents {
		n += len(e.rows)
	}
	seen := make(map[bus.MessageID]struct{}, n)
	for _, e := range ents {
		for _, r := range e.rows {
			if _, ok := seen[r.Key]; ok {
				dups++
				continue
			}
			seen[r.Key] = struct{}{}
			if len(skip) == 0 || !skip[r.ID] {
				out[r.Table] = append(out[r.Table], r)
				entries[r.Table] = append(entries[r.Table], e.id)
			}
		}
	}
	return out, entries, dups
}

func (a *Adapter) forget(b *batch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range b.entries {
		delete(a.inflight, id)
	}
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

// idCache remembers recently written row ids in two generations of at most n/2 each.
type idCache struct {
	mu       sync.Mutex
	n        int
	cur, old map[bus.MessageID]struct{}
}

func newIDCache(n int) *idCache {
	return &idCache{n: n, cur: make(map[bus.MessageID]struct{}, n/2+1)}
}

// add remembers the ids of rows.
func (c *idCache) add(rows [2][]*bq.Row) {
	if c.n == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range rows {
		for _, r := range t {
			if len(c.cur) >= c.n/2+1 {
				c.old, c.cur = c.cur, make(map[bus.MessageID]struct{}, c.n/2+1)
			}
			c.cur[r.Key] = struct{}{}
		}
	}
}

// skip returns the row ids of ents this replica wrote recently, counting them.
func (c *idCache) skip(ents []entryRows, m *Metrics) map[string]bool {
	if c.n == 0 {
		return nil
	}
	var out map[string]bool
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range ents {
		for _, r := range e.rows {
			if c.hasLocked(r.Key) {
				if out == nil {
					out = map[string]bool{}
				}
				if !out[r.ID] {
					m.Duplicates.WithLabelValues("cache").Inc()
				}
				out[r.ID] = true
			}
		}
	}
	return out
}

func (c *idCache) hasLocked(id bus.MessageID) bool {
	if _, ok := c.cur[id]; ok {
		return true
	}
	_, ok := c.old[id]
	return ok
}
