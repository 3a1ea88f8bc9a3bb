package adapter

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bqtest"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// A replica that recorded a plan and died, and what the replica that claims its entries does
// with the plan, on a real Redis and the emulator.

const group = "bigquery-adapter"

type env struct {
	t     *testing.T
	redis *redistest.Server
	rc    *redis.Client
	emu   *bqtest.Emulator
	bq    *bq.Client
	dead  *feed.Feed // the replica that planned and died
	names bus.Names
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, redis: redistest.Start(t), emu: bqtest.Start(t, "test"), names: bus.NewNames("")}
	e.rc = redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
	t.Cleanup(func() { _ = e.rc.Close() })
	var err error
	e.bq, err = bq.New(context.Background(), bq.Options{Project: "test", Dataset: "mqtt", Table: "messages",
		Endpoint: e.emu.Endpoint, GRPCEndpoint: e.emu.GRPCAddr, CreateTable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.bq.Close() })
	if err := e.bq.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.dead = e.feed("dead")
	if err := e.dead.EnsureGroup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) feed(consumer string) *feed.Feed {
	f := feed.New(feed.Options{Addrs: []string{e.redis.Addr()}, Group: group, Consumer: consumer, DeadLetterMaxLen: 1000})
	e.t.Cleanup(func() { _ = f.Close() })
	return f
}

// entries adds n message entries of 3 messages each and one presence entry, and has the dead
// replica read them; it returns them as read.
func (e *env) entries(n int) []feed.Entry {
	e.t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		b := bus.AppendBatchHeader(nil)
		for j := 0; j < 3; j++ {
			m := bus.Message{ID: bus.NewMessageID(), ClientID: "dev", Topic: "t/" + strconv.Itoa(i),
				Payload: []byte(`{"i":` + strconv.Itoa(i*3+j) + `}`), Created: time.Now().UnixNano()}
			b, _ = bus.AppendMessage(b, &m)
		}
		if err := e.rc.XAdd(ctx, &redis.XAddArgs{Stream: e.names.Export(), Values: []any{bus.ExportField, b}}).Err(); err != nil {
			e.t.Fatal(err)
		}
	}
	p := bus.Presence{ID: bus.NewMessageID(), Connection: bus.NewMessageID(), Kind: bus.PresenceConnect,
		Time: time.Now().UnixNano(), ConnectedAt: time.Now().UnixNano(), ClientID: "dev", Protocol: 5}
	if err := e.rc.XAdd(ctx, &redis.XAddArgs{Stream: e.names.Export(),
		Values: []any{bus.PresenceField, bus.AppendPresence(bus.AppendBatchHeader(nil), &p)}}).Err(); err != nil {
		e.t.Fatal(err)
	}
	es, err := e.dead.ReadNew(ctx, n+1, 10*time.Millisecond)
	if err != nil || len(es) != n+1 {
		e.t.Fatalf("read %d entries, %v", len(es), err)
	}
	return es
}

// plan records the dead replica's plan of es on new streams, the way a slot does, and returns
// it with its rows and the streams.
func (e *env) plan(es []feed.Entry) (*feed.Plan, [2][]*bq.Row, [2]*bq.Stream) {
	e.t.Helper()
	var ents []entryRows
	p := &feed.Plan{}
	for _, en := range es {
		rows, _, _, _ := decodeEntry(en, time.Now())
		ents = append(ents, entryRows{id: en.ID, rows: rows})
		p.Entries = append(p.Entries, en.ID)
	}
	rows, _, _ := flatten(ents, nil)
	var streams [2]*bq.Stream
	for t := range rows {
		s, err := e.bq.NewStream(context.Background(), bq.Table(t))
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(s.Close)
		streams[t] = s
		p.Parts = append(p.Parts, feed.Part{Table: bq.Table(t).String(), Stream: s.Name(), Rows: len(rows[t])})
	}
	if taken, err := e.dead.CreatePlan(context.Background(), p); err != nil || taken != nil {
		e.t.Fatalf("CreatePlan: %v %v", taken, err)
	}
	return p, rows, streams
}

// claimer runs an adapter that claims what the dead replica left (after 100 ms idle) until the
// group has nothing pending; it returns the adapter's metrics.
func (e *env) claimer() *Metrics {
	e.t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	a := New(Options{BatchRows: 1000, BatchBytes: 5 << 20, BatchDelay: 20 * time.Millisecond, Writers: 1,
		RequestTimeout: 5 * time.Second, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		ClaimIdle: 100 * time.Millisecond, DedupCache: 1000, ShutdownTimeout: 5 * time.Second},
		e.feed("claimer"), e.bq, m, testLogger(e.t))
	time.Sleep(150 * time.Millisecond) // the dead replica's entries are idle long enough
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := e.rc.XPending(context.Background(), e.names.Export(), group).Result()
		if err != nil {
			e.t.Fatal(err)
		}
		if p.Count == 0 {
			return m
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d entries still pending", p.Count)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) count(table string) int64 {
	e.t.Helper()
	return e.emu.Query(e.t, "SELECT COUNT(*) FROM `test.mqtt."+table+"`")[0][0].(int64)
}

func (e *env) distinct(table string) int64 {
	e.t.Helper()
	return e.emu.Query(e.t, "SELECT COUNT(DISTINCT "+map[string]string{"messages": "message_id", "events": "event_id"}[table]+
		") FROM `test.mqtt."+table+"`")[0][0].(int64)
}

// noPlans checks that no plan is left (final row counts of finalized streams stay).
func (e *env) noPlans() {
	e.t.Helper()
	all, err := e.rc.HGetAll(context.Background(), e.names.ExportPlans()).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	for k := range all {
		if !strings.HasPrefix(k, "final:") {
			e.t.Fatalf("plans left: %v", all)
		}
	}
}

// The planner appended the rows and died before acknowledging: the claimer appends the same rows
// at the same offsets, BigQuery answers ALREADY_EXISTS, and nothing is written twice.
func TestRecoveredPlanAlreadyWritten(t *testing.T) {
	e := newEnv(t)
	_, rows, streams := e.plan(e.entries(5))
	for tb, s := range streams {
		if err := s.Append(context.Background(), rows[tb], 0); err != nil {
			t.Fatal(err)
		}
	}
	m := e.claimer()
	if n := e.count("messages"); n != 15 || e.distinct("messages") != 15 || e.count("events") != 1 {
		t.Fatalf("%d message rows (%d distinct), %d events; want 15, 15, 1", n, e.distinct("messages"), e.count("events"))
	}
	if got := testutil.ToFloat64(m.Duplicates.WithLabelValues("offset")); got != 16 {
		t.Errorf("%v rows found at their offsets, want 16", got)
	}
	if got := testutil.ToFloat64(m.Recovered.WithLabelValues("append")); got != 2 {
		t.Errorf("%v parts recovered by appending, want 2", got)
	}
	e.noPlans()
}

// The planner died before appending: the claimer appends at the planned offsets in the planner's
// streams.
func TestRecoveredPlanNotWritten(t *testing.T) {
	e := newEnv(t)
	_, _, streams := e.plan(e.entries(5))
	m := e.claimer()
	if n := e.count("messages"); n != 15 || e.count("events") != 1 {
		t.Fatalf("%d message rows, %d events; want 15, 1", n, e.count("events"))
	}
	if got := testutil.ToFloat64(m.Duplicates.WithLabelValues("offset")); got != 0 {
		t.Errorf("%v rows found at their offsets, want 0", got)
	}
	if n, err := e.bq.Finalize(context.Background(), streams[bq.Messages].Name()); err != nil || n != 15 {
		t.Errorf("the planner's stream holds %d rows (%v), want the plan's 15", n, err)
	}
	e.noPlans()
}

// One of the plan's entries was trimmed from the stream before anyone wrote it: the rows cannot
// be rebuilt as planned, so the claimer finalizes the planner's stream; it holds nothing at the
// plan's offset, and the rows that are left go to the claimer's own stream.
func TestRecoveredPlanTrimmedNotWritten(t *testing.T) {
	e := newEnv(t)
	es := e.entries(5)
	_, _, streams := e.plan(es)
	if err := e.rc.XDel(context.Background(), e.names.Export(), es[2].ID).Err(); err != nil {
		t.Fatal(err)
	}
	m := e.claimer()
	if n := e.count("messages"); n != 12 || e.distinct("messages") != 12 || e.count("events") != 1 {
		t.Fatalf("%d message rows, %d events; want 12 (the trimmed entry's 3 are lost), 1", n, e.count("events"))
	}
	if got := testutil.ToFloat64(m.Recovered.WithLabelValues("finalized")); got != 1 {
		t.Errorf("%v parts decided by a final row count, want 1", got)
	}
	if got := testutil.ToFloat64(m.Trimmed); got != 1 {
		t.Errorf("trimmed %v, want 1", got)
	}
	if n, ok, err := e.dead.FinalCount(context.Background(), streams[bq.Messages].Name()); !ok || err != nil || n != 0 {
		t.Errorf("final count of the planner's stream: %d %v %v", n, ok, err)
	}
	e.noPlans()
}

// The same, but the planner had written the plan before the entry was trimmed: the final row
// count says the rows are there, and nothing is written again.
func TestRecoveredPlanTrimmedWritten(t *testing.T) {
	e := newEnv(t)
	es := e.entries(5)
	_, rows, streams := e.plan(es)
	for tb, s := range streams {
		if err := s.Append(context.Background(), rows[tb], 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.rc.XDel(context.Background(), e.names.Export(), es[2].ID).Err(); err != nil {
		t.Fatal(err)
	}
	m := e.claimer()
	if n := e.count("messages"); n != 15 || e.distinct("messages") != 15 || e.count("events") != 1 {
		t.Fatalf("%d message rows, %d events; want 15, 1", n, e.count("events"))
	}
	if got := testutil.ToFloat64(m.Recovered.WithLabelValues("finalized")); got != 1 {
		t.Errorf("%v parts decided by a final row count, want 1", got)
	}
	e.noPlans()
}

// The plan's streams no longer exist (BigQuery dropped them long after their last append): the
// claimer asks the table which rows it holds and writes only the others, once.
func TestRecoveredPlanStreamGone(t *testing.T) {
	e := newEnv(t)
	es := e.entries(5)
	var ents []entryRows
	p := &feed.Plan{}
	for _, en := range es {
		rows, _, _, _ := decodeEntry(en, time.Now())
		ents = append(ents, entryRows{id: en.ID, rows: rows})
		p.Entries = append(p.Entries, en.ID)
	}
	rows, _, _ := flatten(ents, nil)
	gone := "projects/test/datasets/mqtt/tables/%s/streams/gone-long-ago"
	for t := range rows {
		p.Parts = append(p.Parts, feed.Part{Table: bq.Table(t).String(), Stream: fmt.Sprintf(gone, bq.Table(t).String()), Rows: len(rows[t])})
	}
	if _, err := e.dead.CreatePlan(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	// Six of the messages made it into the table before the stream went.
	s, err := e.bq.NewStream(context.Background(), bq.Messages)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(context.Background(), rows[bq.Messages][:6], 0); err != nil {
		t.Fatal(err)
	}
	m := e.claimer()
	if n := e.count("messages"); n != 15 || e.distinct("messages") != 15 || e.count("events") != 1 {
		t.Fatalf("%d message rows (%d distinct), %d events; want 15, 15, 1", n, e.distinct("messages"), e.count("events"))
	}
	if got := testutil.ToFloat64(m.Duplicates.WithLabelValues("table")); got != 6 {
		t.Errorf("%v rows found in the table, want 6", got)
	}
	if got := testutil.ToFloat64(m.Recovered.WithLabelValues("query")); got != 2 {
		t.Errorf("%v parts settled by a query, want 2", got)
	}
	e.noPlans()
}

// testLogger writes the adapter's log into the test's log.
func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: testWriter{t}, NoColor: true}).Level(zerolog.InfoLevel)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
