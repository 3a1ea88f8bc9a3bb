package main

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bqtest"
)

// exporter is a bus on the stack's Redis that feeds the export stream as a broker does.
func (s *stack) exporter(queue int) *bus.Bus { return s.exporterBatch(queue, 0) }

// exporterBatch is exporter with at most perEntry messages per stream entry (0: the default).
func (s *stack) exporterBatch(queue, perEntry int) *bus.Bus {
	s.t.Helper()
	b, err := bus.New(context.Background(), bus.Options{Addrs: []string{s.redis.Addr()}, ReplicaID: "producer",
		ExportQueue: queue, ExportQueueBytes: 1 << 30, ExportBatch: perEntry, Logger: zerolog.Nop()})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = b.Close() })
	return b
}

// exported waits until prod has written n messages and returns the stream's length in entries.
func (s *stack) exported(prod *bus.Bus, n uint64) int64 {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for prod.Stats().Exported < n {
		if time.Now().After(deadline) {
			s.t.Fatalf("producer wrote %d of %d messages", prod.Stats().Exported, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	l, err := s.rc.XLen(context.Background(), s.names.Export()).Result()
	if err != nil {
		s.t.Fatal(err)
	}
	return l
}

func exportN(t testing.TB, b *bus.Bus, from, n int) {
	exportWith(t, b, from, n, func(i int) []byte { return []byte(strconv.Itoa(i)) })
}

// exportWith exports messages from..from+n-1 from 100 devices on 10 topics, with payload(i).
func exportWith(t testing.TB, b *bus.Bus, from, n int, payload func(i int) []byte) {
	t.Helper()
	for i := from; i < from+n; i++ {
		m := bus.Message{ID: bus.NewMessageID(), Origin: "producer", ClientID: "dev-" + strconv.Itoa(i%100),
			Topic: "load/" + strconv.Itoa(i%10), Payload: payload(i), QoS: 1, Created: time.Now().UnixNano()}
		for !b.Export(&m) {
			time.Sleep(time.Millisecond) // queue full: Redis is behind
		}
	}
}

// TestNoLossNoDuplicates: 200,000 messages go through the Storage Write API while the adapter is
// SIGKILLed and restarted twice and 20% of BigQuery requests fail, half of them after the emulator
// applied them (so the adapter cannot know whether its rows arrived): appends on a gRPC proxy,
// table set-up on an HTTP proxy. The table must end with exactly 200,000 rows and 200,000
// distinct message ids, nothing pending, and the adapter must never have queried the table.
func TestNoLossNoDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 messages")
	}
	noLoss(t, 200_000, "storage", 2)
}

// TestNoLossNoDuplicatesInsertAll: the same with ADAPTER_BIGQUERY_API=insertall (fewer messages,
// one kill), where uncertain attempts are settled by asking the table.
func TestNoLossNoDuplicatesInsertAll(t *testing.T) {
	if testing.Short() {
		t.Skip("40,000 messages")
	}
	noLoss(t, 40_000, "insertall", 1)
}

func noLoss(t *testing.T, total int, api string, kills int) {
	s := newStack(t)
	proxy := bqtest.StartFaultProxy(t, s.emu.Endpoint)
	gproxy := bqtest.StartGRPCFaultProxy(t, s.emu.GRPCAddr)
	env := []string{"ADAPTER_BATCH_ROWS=2000", "ADAPTER_WRITERS=2", "ADAPTER_BIGQUERY_API=" + api,
		"ADAPTER_BIGQUERY_GRPC_ENDPOINT=" + gproxy.Addr}
	start := func() (*proctest.Proc, string) { return s.adapter("loss-1", proxy.URL, env...) }
	// The tables are created before the faults start, then the faults run to the end.
	p, httpAddr := start()
	proxy.SetFaults(0.1, 0.1)
	gproxy.SetFaults(0.1, 0.1)
	prod := s.exporter(total)
	go exportN(t, prod, 0, total)

	logs := func() string { return p.Output() }
	report := func(when string) {
		t.Logf("adapter %s: %v rows written, %v retries after an uncertain outcome, %v rows found already written (offset), %v (table), %v plan parts recovered",
			when, metric(t, httpAddr, "mcloudtt_adapter_rows_written_total"),
			metric(t, httpAddr, `mcloudtt_adapter_retries_total{class="uncertain"}`),
			metric(t, httpAddr, `mcloudtt_adapter_duplicates_skipped_total{where="offset"}`),
			metric(t, httpAddr, `mcloudtt_adapter_duplicates_skipped_total{where="table"}`),
			metric(t, httpAddr, `mcloudtt_adapter_plans_recovered_total{how="append"}`))
	}
	for k := 1; k <= kills; k++ {
		at := int64(total * k / (kills + 2))
		s.waitRows(at, 60*time.Second, logs)
		report("before the kill")
		_ = p.Signal(syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = p.Wait(ctx)
		cancel()
		t.Logf("adapter killed at >= %d rows (pending entries %d)", at, s.pending())
		p, httpAddr = start()
	}
	s.waitRows(int64(total), 60*time.Second, logs)
	// Let the adapter finish acknowledging, then check the table did not get more.
	deadline := time.Now().Add(30 * time.Second)
	for s.pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if st := prod.Stats(); st.Exported != uint64(total) {
		t.Fatalf("producer exported %d of %d", st.Exported, total)
	}
	report("at the end")
	rows := s.count("SELECT COUNT(*) FROM " + table)
	distinct := s.count("SELECT COUNT(DISTINCT message_id) FROM " + table)
	t.Logf("rows %d, distinct message ids %d, pending %d; REST proxy: %d requests (%d queries), %d failed before forwarding, %d after; gRPC proxy: %d appends, %d failed before, %d after the emulator applied them",
		rows, distinct, s.pending(), proxy.Requests.Load(), proxy.Queries.Load(), proxy.FailedBefore.Load(), proxy.FailedAfter.Load(),
		gproxy.Appends.Load(), gproxy.FailedBefore.Load(), gproxy.FailedAfter.Load())
	if rows != int64(total) || distinct != int64(total) {
		t.Fatalf("table has %d rows and %d distinct message ids, want exactly %d of each", rows, distinct, total)
	}
	if n := s.pending(); n != 0 {
		t.Fatalf("%d entries still pending", n)
	}
	// Entries the group acknowledged leave the stream (ADAPTER_RELEASE_ACKED, once a heartbeat):
	// Redis holds what is still to be written, here at most the node of the last one delivered.
	stream := bus.NewNames("").Export()
	var left int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if left, err = s.rc.XLen(context.Background(), stream).Result(); err != nil {
			t.Fatal(err)
		}
		if left <= 100 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("export stream: %d entries left after the adapter released what it wrote (%v released by the last adapter process)",
		left, metric(t, httpAddr, "mcloudtt_adapter_released_total"))
	if left > 100 {
		t.Fatalf("the export stream still holds %d entries after every one was written and acknowledged", left)
	}
	faults := proxy
	if api == "storage" {
		if q := proxy.Queries.Load(); q != 0 {
			t.Fatalf("the adapter queried the table %d times", q)
		}
		if gproxy.FailedAfter.Load() == 0 || gproxy.FailedBefore.Load() == 0 {
			t.Fatal("the gRPC proxy injected no faults of one kind: the test proved nothing")
		}
		return
	}
	if faults.FailedAfter.Load() == 0 || faults.FailedBefore.Load() == 0 {
		t.Fatal("the proxy injected no faults of one kind: the test proved nothing")
	}
}

// TestPoisonEntriesGoToTheDeadLetterStream: entries that are not an envelope, a malformed
// envelope, messages BigQuery cannot store (alone in an entry, or among good ones) each land in
// the dead-letter stream with the error; the good messages around them are written, and every
// entry is acknowledged.
func TestPoisonEntriesGoToTheDeadLetterStream(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	stream := s.names.Export()
	xadd := func(vals ...any) string {
		id, err := s.rc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: vals}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	envelope := func(m bus.Message) []byte {
		b, err := bus.AppendMessage(bus.AppendBatchHeader(nil), &m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := func(i int) []byte {
		return envelope(bus.Message{ID: bus.NewMessageID(), Topic: "ok/" + strconv.Itoa(i), Created: time.Now().UnixNano()})
	}
	xadd(bus.ExportField, good(1))
	bad := map[string]string{
		xadd("x", "no envelope field"):                                                              "no field m",
		xadd(bus.ExportField, []byte{1, 200, 3}):                                                    "malformed envelope",
		xadd(bus.ExportField, envelope(bus.Message{ID: bus.NewMessageID(), Topic: "t"})):            "out of range",
		xadd(bus.ExportField, envelope(bus.Message{ID: bus.NewMessageID(), Topic: "", Created: 1})): "empty topic",
	}
	xadd(bus.ExportField, good(2))
	// One entry of three messages, the middle one poison: the other two are written.
	multi := bus.AppendBatchHeader(nil)
	for _, m := range []bus.Message{
		{ID: bus.NewMessageID(), Topic: "ok/3", Created: time.Now().UnixNano()},
		{ID: bus.NewMessageID(), Topic: "bad/created", Created: -5},
		{ID: bus.NewMessageID(), Topic: "ok/4", Created: time.Now().UnixNano()},
	} {
		multi, _ = bus.AppendMessage(multi, &m)
	}
	bad[xadd(bus.ExportField, multi)] = "poison message inside an entry"
	p, httpAddr := s.adapter("poison-1", s.emu.Endpoint)
	s.waitRows(4, 20*time.Second, p.Output)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := s.rc.XLen(ctx, s.names.ExportDeadLetter()).Result()
		if n >= int64(len(bad)) && s.pending() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters %d, pending %d\n%s", n, s.pending(), p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	dl, err := s.rc.XRange(ctx, s.names.ExportDeadLetter(), "-", "+").Result()
	if err != nil || len(dl) != len(bad) {
		t.Fatalf("%v: %d dead letters, want %d", err, len(dl), len(bad))
	}
	for _, d := range dl {
		entry, _ := d.Values["entry"].(string)
		want, ok := bad[entry]
		errText, _ := d.Values["error"].(string)
		if !ok || errText == "" || d.Values["consumer"] != "poison-1" {
			t.Errorf("dead letter %v: not one of the bad entries (%q)", d.Values, want)
		}
		t.Logf("dead letter for %q: %s", want, errText)
	}
	if n := s.count("SELECT COUNT(*) FROM " + table); n != 4 {
		t.Fatalf("%d rows, want the 4 good ones", n)
	}
	if n := s.count("SELECT COUNT(*) FROM " + table + " WHERE topic LIKE 'bad%'"); n != 0 {
		t.Fatalf("%d poison rows in the table", n)
	}
	if v := metric(t, httpAddr, `mcloudtt_adapter_dead_letters_total{reason="malformed"}`) +
		metric(t, httpAddr, `mcloudtt_adapter_dead_letters_total{reason="invalid_row"}`); v != float64(len(bad)) {
		t.Fatalf("dead-letter metric %v, want %d", v, len(bad))
	}
}

// TestSIGTERMWritesTheOpenBatch: with a batch that would stay open for an hour, SIGTERM makes the
// adapter write it, acknowledge it and exit 0.
func TestSIGTERMWritesTheOpenBatch(t *testing.T) {
	s := newStack(t)
	p, _ := s.adapter("term-1", s.emu.Endpoint, "ADAPTER_BATCH_DELAY=1h", "ADAPTER_BATCH_ROWS=10000")
	prod := s.exporter(1000)
	exportN(t, prod, 0, 25)
	entries := s.exported(prod, 25)
	deadline := time.Now().Add(10 * time.Second)
	for s.pending() < entries {
		if time.Now().After(deadline) {
			t.Fatalf("the adapter did not read the %d entries (pending %d)", entries, s.pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.count("SELECT COUNT(*) FROM " + table); n != 0 {
		t.Fatalf("%d rows before SIGTERM: the batch was not open", n)
	}
	_ = p.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if code, ok := p.Wait(ctx); !ok || code != 0 {
		t.Fatalf("exit %d (%v)\n%s", code, ok, p.Output())
	}
	if n := s.count("SELECT COUNT(*) FROM " + table); n != 25 {
		t.Fatalf("%d rows after SIGTERM, want 25", n)
	}
	if n := s.pending(); n != 0 {
		t.Fatalf("%d entries pending after SIGTERM", n)
	}
}

// TestHeartbeatCarriesTheLag: the adapter announces itself as KindAdapter with its lag.
func TestHeartbeatCarriesTheLag(t *testing.T) {
	s := newStack(t)
	hbs := make(chan bus.Heartbeat, 100)
	w, err := bus.New(context.Background(), bus.Options{Addrs: []string{s.redis.Addr()}, ReplicaID: "watcher",
		Logger: zerolog.Nop(), OnHeartbeat: func(h bus.Heartbeat) {
			select {
			case hbs <- h:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Entries wait while the adapter's BigQuery endpoints refuse everything.
	proxy := bqtest.StartFaultProxy(t, s.emu.Endpoint)
	gproxy := bqtest.StartGRPCFaultProxy(t, s.emu.GRPCAddr)
	s.adapter("hb-1", proxy.URL, "ADAPTER_BIGQUERY_GRPC_ENDPOINT="+gproxy.Addr)
	proxy.SetFaults(1, 0)
	gproxy.SetFaults(1, 0)
	prod := s.exporter(1000)
	exportN(t, prod, 0, 50)
	entries := s.exported(prod, 50)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case h := <-hbs:
			if h.ReplicaID == "hb-1" && h.Kind == bus.KindAdapter && h.ExportLag == entries && h.ExportLagSeconds > 0.3 {
				proxy.SetFaults(0, 0)
				gproxy.SetFaults(0, 0)
				s.waitRows(50, 20*time.Second, func() string { return "" })
				return
			}
		case <-deadline:
			t.Fatalf("no adapter heartbeat with export_lag %d (entries) and a growing lag in seconds", entries)
		}
	}
}

// TestReplicasShareAndClaim: two adapter replicas share the stream; one cannot reach BigQuery
// (its proxy fails everything) and holds entries pending when it is SIGKILLed; the other claims
// them after ADAPTER_CLAIM_IDLE and writes them. Every message ends in the table exactly once.
func TestReplicasShareAndClaim(t *testing.T) {
	const total = 20_000
	s := newStack(t)
	proxy := bqtest.StartFaultProxy(t, s.emu.Endpoint)
	gproxy := bqtest.StartGRPCFaultProxy(t, s.emu.GRPCAddr)
	fast := []string{"ADAPTER_BATCH_ROWS=500", "ADAPTER_REQUEST_TIMEOUT=1s", "ADAPTER_RETRY_MAX=300ms", "ADAPTER_CLAIM_IDLE=2s"}
	a, _ := s.adapter("share-a", proxy.URL, append(fast, "ADAPTER_BIGQUERY_GRPC_ENDPOINT="+gproxy.Addr)...)
	proxy.SetFaults(1, 0) // a's tables are set up; from now on a writes nothing
	gproxy.SetFaults(1, 0)
	b, bAddr := s.adapter("share-b", s.emu.Endpoint, fast...)
	prod := s.exporterBatch(total, 20)
	exportN(t, prod, 0, total)
	s.exported(prod, total)
	// Wait until a holds entries it cannot write, then kill it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ps, err := s.rc.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: s.names.Export(),
			Group: "bigquery-adapter", Start: "-", End: "+", Count: 1, Consumer: "share-a"}).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("share-a never read an entry\n%s", tail(a.Output(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = a.Signal(syscall.SIGKILL)
	s.waitRows(total, 30*time.Second, func() string { return "share-a:\n" + tail(a.Output(), 2000) + "\nshare-b:\n" + b.Output() })
	deadline = time.Now().Add(10 * time.Second)
	for s.pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	rows := s.count("SELECT COUNT(*) FROM " + table)
	distinct := s.count("SELECT COUNT(DISTINCT message_id) FROM " + table)
	claimed := metric(t, bAddr, "mcloudtt_adapter_claimed_total")
	t.Logf("rows %d, distinct %d, pending %d, entries share-b claimed %v", rows, distinct, s.pending(), claimed)
	if rows != total || distinct != total || s.pending() != 0 {
		t.Fatalf("rows %d, distinct %d, pending %d; want %d, %d, 0", rows, distinct, s.pending(), total, total)
	}
	if claimed == 0 {
		t.Fatal("share-b claimed nothing: the dead replica's entries were not taken over")
	}
}
