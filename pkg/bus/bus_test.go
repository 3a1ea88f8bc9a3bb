package bus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/rs/zerolog"
)

// Test timings: short health checks so failures are seen in well under a second.
const (
	tHealthInterval = 100 * time.Millisecond
	tHealthTimeout  = 400 * time.Millisecond
	tBackoffMax     = 200 * time.Millisecond
)

func testOptions(t testing.TB, id string, addrs ...string) Options {
	return Options{
		Addrs: addrs, ReplicaID: id,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
		HealthInterval: tHealthInterval, HealthTimeout: tHealthTimeout,
		BackoffMin: 20 * time.Millisecond, BackoffMax: tBackoffMax,
		Logger: zerolog.New(zerolog.ConsoleWriter{Out: zerolog.NewTestWriter(t), NoColor: true}).
			With().Timestamp().Str("replica", id).Logger(),
	}
}

func newBus(t testing.TB, o Options) *Bus {
	t.Helper()
	b, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func waitConnected(t testing.TB, bs ...*Bus) {
	t.Helper()
	for _, b := range bs {
		waitFor(t, b.ReplicaID()+" connected", 5*time.Second, func() bool { return b.Status().Connected })
	}
}

// receiver collects what a replica receives.
type receiver struct {
	mu       sync.Mutex
	msgs     []Message
	control  [][]byte
	batches  int
	arrived  chan struct{}
	decErr   error
	reconns  atomic.Int32
	statuses []Status
}

func newReceiver() *receiver { return &receiver{arrived: make(chan struct{}, 1)} }

func (r *receiver) attach(o *Options) {
	o.OnBatch = func(b []byte) {
		ms, err := DecodeBatch(b)
		r.mu.Lock()
		if err != nil && r.decErr == nil {
			r.decErr = err
		}
		r.msgs = append(r.msgs, ms...)
		r.batches++
		r.mu.Unlock()
		select {
		case r.arrived <- struct{}{}:
		default:
		}
	}
	o.OnControl = func(p []byte) {
		r.mu.Lock()
		r.control = append(r.control, p)
		r.mu.Unlock()
	}
	o.OnReconnect = func() { r.reconns.Add(1) }
	o.OnStatus = func(s Status) {
		r.mu.Lock()
		r.statuses = append(r.statuses, s)
		r.mu.Unlock()
	}
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *receiver) seqs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]uint64, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = binary.BigEndian.Uint64(m.Payload)
	}
	return out
}

func seqMessage(origin string, seq uint64) *Message {
	p := binary.BigEndian.AppendUint64(make([]byte, 0, 64), seq)
	p = append(p, make([]byte, 56)...) // 64-byte payload
	return &Message{ID: NewMessageID(), Origin: origin, ClientID: "pub", Topic: "t/seq", Payload: p,
		QoS: 1, Created: time.Now().UnixNano(), Plain: true}
}

// doneRecorder counts done callbacks by outcome and remembers which sequences succeeded.
type doneRecorder struct {
	mu    sync.Mutex
	calls int
	ok    map[uint64]bool
	errs  map[string]int
	wg    sync.WaitGroup
}

func newDoneRecorder() *doneRecorder {
	return &doneRecorder{ok: make(map[uint64]bool), errs: make(map[string]int)}
}

func (d *doneRecorder) done(seq uint64) func(error) {
	d.wg.Add(1)
	var once atomic.Bool
	return func(err error) {
		if once.Swap(true) {
			panic(fmt.Sprintf("done called twice for %d", seq))
		}
		d.mu.Lock()
		d.calls++
		if err == nil {
			d.ok[seq] = true
		} else {
			key := err.Error()
			switch {
			case errors.Is(err, ErrUnavailable):
				key = "ErrUnavailable"
			case errors.Is(err, ErrNoReceiver):
				key = "ErrNoReceiver"
			}
			d.errs[key]++
		}
		d.mu.Unlock()
		d.wg.Done()
	}
}

func (d *doneRecorder) wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	ch := make(chan struct{})
	go func() { d.wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("done callbacks not all called within %v", timeout)
	}
}

func TestPublishBatchesTenThousand(t *testing.T) {
	s := redistest.Start(t)
	r2 := newReceiver()
	o2 := testOptions(t, "r2", s.Addr())
	r2.attach(&o2)
	b1 := newBus(t, testOptions(t, "r1", s.Addr()))
	b2 := newBus(t, o2)
	waitConnected(t, b1, b2)

	const n = 10000
	rec := newDoneRecorder()
	start := time.Now()
	for i := uint64(0); i < n; i++ {
		b1.Publish("r2", seqMessage("r1", i), rec.done(i))
	}
	rec.wait(t, 10*time.Second)
	waitFor(t, "r2 receives all", 10*time.Second, func() bool { return r2.count() >= n })
	elapsed := time.Since(start)
	if r2.decErr != nil {
		t.Fatal(r2.decErr)
	}
	if len(rec.ok) != n || rec.calls != n {
		t.Fatalf("done: %d ok of %d calls, errors %v", len(rec.ok), rec.calls, rec.errs)
	}
	for i, seq := range r2.seqs() {
		if seq != uint64(i) {
			t.Fatalf("message %d has sequence %d: out of order", i, seq)
		}
	}
	calls := s.CommandCalls("publish")
	t.Logf("%d messages in %v: %d PUBLISH calls (%.4f per message), %d batches received, stats %+v",
		n, elapsed, calls, float64(calls)/n, r2.batches, b1.Stats())
	if calls > n*5/100 {
		t.Fatalf("%d PUBLISH calls for %d messages: more than 0.05 per message", calls, n)
	}
	if st := b1.Stats(); st.Published != n || st.Commands != uint64(calls) {
		t.Fatalf("stats %+v, want %d published and %d commands", st, n, calls)
	}
}

func TestRedisStartsAfterBus(t *testing.T) {
	s := redistest.New(t) // port reserved, not running
	r := newReceiver()
	o := testOptions(t, "r1", s.Addr())
	r.attach(&o)
	b := newBus(t, o)
	time.Sleep(3 * tBackoffMax) // a few failed attempts
	st := b.Status()
	if st.Connected || st.LastError == "" {
		t.Fatalf("status before Redis: %+v", st)
	}
	// Publishing now fails at once.
	var got error
	b.Publish("r2", seqMessage("r1", 0), func(err error) { got = err })
	if !errors.Is(got, ErrUnavailable) {
		t.Fatalf("publish while down: %v, want ErrUnavailable at once", got)
	}
	s.Start()
	d := waitFor(t, "connected after Redis starts", 3*time.Second, func() bool { return b.Status().Connected })
	t.Logf("connected %v after Redis came up", d)
	r.mu.Lock()
	last := r.statuses[len(r.statuses)-1]
	r.mu.Unlock()
	if !last.Connected || last.Reconnects != 0 {
		t.Fatalf("last OnStatus %+v", last)
	}
	if r.reconns.Load() != 0 {
		t.Fatal("OnReconnect called for the first connection")
	}
}

func TestRedisRestartMidTraffic(t *testing.T) {
	s := redistest.Start(t)
	r2 := newReceiver()
	o2 := testOptions(t, "r2", s.Addr())
	r2.attach(&o2)
	b1 := newBus(t, testOptions(t, "r1", s.Addr()))
	b2 := newBus(t, o2)
	waitConnected(t, b1, b2)

	rec := newDoneRecorder()
	stop := make(chan struct{})
	var published atomic.Uint64
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		for seq := uint64(0); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			b1.Publish("r2", seqMessage("r1", seq), rec.done(seq))
			published.Store(seq + 1)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	waitFor(t, "traffic flows", 5*time.Second, func() bool { return r2.count() > 100 })

	// Restart, in its two halves, to know which messages were published while Redis was down.
	restartAt := time.Now()
	s.Stop()
	seqAtStop := published.Load()
	time.Sleep(50 * time.Millisecond) // an outage long enough to publish into
	s.Start()
	before := r2.count()
	d := waitFor(t, "r2 receives again after the restart", 5*time.Second, func() bool {
		return r2.reconns.Load() > 0 && r2.count() > before+100
	})
	t.Logf("receiving again %v after Redis was back (%v after the restart began)", d, time.Since(restartAt))
	close(stop)
	pubWG.Wait()
	rec.wait(t, 5*time.Second)

	n := published.Load()
	if uint64(rec.calls) != n {
		t.Fatalf("%d done calls for %d publishes", rec.calls, n)
	}
	if rec.errs["ErrUnavailable"] == 0 {
		t.Fatalf("no publish failed with ErrUnavailable during the outage: %v", rec.errs)
	}
	// None succeeded silently: every message published once Redis was down whose done said nil
	// arrived. Messages acknowledged before may be lost: Redis had accepted them and not yet
	// written them to r2 when it stopped (pub/sub is at most once; see the package comment).
	got := make(map[uint64]bool)
	// done runs when Redis replied; the copy for r2 may still be on its way.
	waitFor(t, "acknowledged messages arrive", 2*time.Second, func() bool {
		for _, seq := range r2.seqs() {
			got[seq] = true
		}
		for seq := range rec.ok {
			if seq >= seqAtStop && !got[seq] {
				return false
			}
		}
		return true
	})
	lost := 0
	for seq := range rec.ok {
		if !got[seq] {
			if seq >= seqAtStop {
				t.Fatalf("message %d published after Redis stopped, acknowledged, never received", seq)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Logf("%d messages acknowledged just before the restart were in Redis' buffers and lost", lost)
	}
	st1, st2 := b1.Status(), b2.Status()
	if !st1.Connected || !st2.Connected || st1.Reconnects == 0 || st2.Reconnects == 0 {
		t.Fatalf("status after restart: r1 %+v, r2 %+v", st1, st2)
	}
	t.Logf("%d published: %d ok, errors %v, %d received", n, len(rec.ok), rec.errs, len(got))
}

func TestHalfOpenDetected(t *testing.T) {
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr())
	r1 := newReceiver()
	o1 := testOptions(t, "r1", p.Addr())
	r1.attach(&o1)
	b1 := newBus(t, o1)
	b2 := newBus(t, testOptions(t, "r2", s.Addr())) // direct, unaffected
	waitConnected(t, b1, b2)

	p.Blackhole()
	at := time.Now()
	// Noticed by the health check, not by TCP (whose timeouts are minutes); the slack beyond
	// HealthInterval + HealthTimeout is for a loaded machine.
	d := waitFor(t, "half-open link noticed", tHealthInterval+tHealthTimeout+2*time.Second, func() bool {
		return !b1.Status().Connected
	})
	t.Logf("half-open link noticed after %v (HealthInterval %v + HealthTimeout %v)", d, tHealthInterval, tHealthTimeout)
	if !strings.Contains(b1.Status().LastError, "health check") {
		t.Fatalf("LastError %q", b1.Status().LastError)
	}
	var got error
	b1.Publish("r2", seqMessage("r1", 0), func(err error) { got = err })
	if !errors.Is(got, ErrUnavailable) {
		t.Fatalf("publish on a dead link: %v", got)
	}
	// Stay partitioned through a few reconnection attempts, which must time out too.
	time.Sleep(2 * tHealthTimeout)
	if b1.Status().Connected {
		t.Fatal("connected through a black hole")
	}

	p.Restore()
	d = waitFor(t, "recovered after Restore", 5*time.Second, func() bool { return b1.Status().Connected })
	t.Logf("recovered %v after Restore (%v after the partition began)", d, time.Since(at))
	waitFor(t, "OnReconnect called", 3*time.Second, func() bool { return r1.reconns.Load() > 0 })
	rec := newDoneRecorder()
	b2.Publish("r1", seqMessage("r2", 7), rec.done(7))
	rec.wait(t, 3*time.Second)
	waitFor(t, "r1 receives after recovery", 3*time.Second, func() bool { return r1.count() == 1 })
}

func TestCutReconnectsAtOnce(t *testing.T) {
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr())
	r1 := newReceiver()
	o1 := testOptions(t, "r1", p.Addr())
	r1.attach(&o1)
	b1 := newBus(t, o1)
	waitConnected(t, b1)
	p.Cut()
	waitFor(t, "OnReconnect after a reset", 3*time.Second, func() bool { return r1.reconns.Load() == 1 })
	if !b1.Status().Connected || b1.Status().Reconnects != 1 {
		t.Fatalf("status %+v", b1.Status())
	}
}

func TestNoReceiver(t *testing.T) {
	s := redistest.Start(t)
	b1 := newBus(t, testOptions(t, "r1", s.Addr()))
	waitConnected(t, b1)
	rec := newDoneRecorder()
	b1.Publish("nobody", seqMessage("r1", 1), rec.done(1))
	rec.wait(t, 3*time.Second)
	if rec.errs["ErrNoReceiver"] != 1 {
		t.Fatalf("errors %v, want ErrNoReceiver", rec.errs)
	}
	var got error
	b1.Publish("bad{id}", seqMessage("r1", 1), func(err error) { got = err })
	if !errors.Is(got, ErrBadMessage) {
		t.Fatalf("bad destination: %v", got)
	}
	b1.Publish("r2", &Message{QoS: 3}, func(err error) { got = err })
	if !errors.Is(got, ErrBadMessage) {
		t.Fatalf("QoS 3: %v", got)
	}
}

func TestFlushPolicy(t *testing.T) {
	s := redistest.Start(t)
	r2 := newReceiver()
	o2 := testOptions(t, "r2", s.Addr())
	r2.attach(&o2)
	b2 := newBus(t, o2)

	t.Run("delay", func(t *testing.T) {
		o := testOptions(t, "r1", s.Addr())
		o.BatchMaxDelay = 100 * time.Millisecond
		b1 := newBus(t, o)
		waitConnected(t, b1, b2)
		start := time.Now()
		var took atomic.Int64
		rec := newDoneRecorder()
		for i := uint64(0); i < 3; i++ {
			done := rec.done(i)
			b1.Publish("r2", seqMessage("r1", i), func(err error) { took.Store(int64(time.Since(start))); done(err) })
		}
		rec.wait(t, 3*time.Second)
		d := time.Duration(took.Load())
		if d < 100*time.Millisecond || d > 400*time.Millisecond {
			t.Fatalf("flushed after %v, want about BatchMaxDelay (100ms)", d)
		}
		if c := b1.Stats().Commands; c != 1 {
			t.Fatalf("%d commands for 3 messages within the delay, want 1", c)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		o := testOptions(t, "r3", s.Addr())
		o.BatchMaxDelay = 10 * time.Second // never reached
		o.BatchMaxBytes = 1000
		b1 := newBus(t, o)
		waitConnected(t, b1)
		rec := newDoneRecorder()
		const n = 50 // ~110 bytes each: at least 5 full batches
		for i := uint64(0); i < n; i++ {
			b1.Publish("r2", seqMessage("r3", i), rec.done(i))
		}
		// The last, partial batch waits for the delay; every full one went at once.
		waitFor(t, "full batches flushed without waiting", 2*time.Second, func() bool {
			return b1.Stats().Published >= n-10
		})
		st := b1.Stats()
		if st.Commands < 4 {
			t.Fatalf("stats %+v: want several batches of <= 1000 bytes", st)
		}
		if max := uint64(1000); st.SentBytes > st.Commands*max {
			t.Fatalf("batches above BatchMaxBytes: %+v", st)
		}
		_ = b1.Close() // flushes the rest at once
		rec.wait(t, 2*time.Second)
		if len(rec.ok) != n {
			t.Fatalf("%d ok of %d (%v)", len(rec.ok), n, rec.errs)
		}
	})
}

func TestOverloaded(t *testing.T) {
	s := redistest.Start(t)
	o := testOptions(t, "r1", s.Addr())
	o.BatchMaxDelay = 10 * time.Second
	o.BatchMaxBytes = 1 << 20
	o.MaxPendingBytes = 1 << 20
	b := newBus(t, o)
	waitConnected(t, b)
	var overloaded int
	rec := newDoneRecorder()
	for i := uint64(0); i < 20000; i++ {
		b.Publish("r2", seqMessage("r1", i), func(err error) {
			if errors.Is(err, ErrOverloaded) {
				overloaded++
			}
		})
		if overloaded > 0 {
			break
		}
	}
	if overloaded == 0 {
		t.Fatal("MaxPendingBytes never enforced")
	}
	_ = rec
}

func TestCloseFlushesAndStops(t *testing.T) {
	s := redistest.Start(t)
	before := runtime.NumGoroutine()
	o := testOptions(t, "r1", s.Addr())
	o.BatchMaxDelay = 10 * time.Second
	b, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	r2 := newReceiver()
	o2 := testOptions(t, "r2", s.Addr())
	r2.attach(&o2)
	b2 := newBus(t, o2)
	waitConnected(t, b, b2)
	rec := newDoneRecorder()
	b.Publish("r2", seqMessage("r1", 1), rec.done(1))
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	rec.wait(t, time.Second)
	if !rec.ok[1] {
		t.Fatalf("pending message not flushed by Close: %v", rec.errs)
	}
	if err := b.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if st := b.Status(); st.Connected || st.LastError != ErrClosed.Error() {
		t.Fatalf("status after Close: %+v", st)
	}
	var got error
	b.Publish("r2", seqMessage("r1", 2), func(err error) { got = err })
	if !errors.Is(got, ErrClosed) {
		t.Fatalf("publish after Close: %v", got)
	}
	_ = b2.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReceiveLimit(t *testing.T) {
	s := redistest.Start(t)
	r2 := newReceiver()
	o2 := testOptions(t, "r2", s.Addr())
	o2.MaxReceiveBytes = 1000
	r2.attach(&o2)
	b2 := newBus(t, o2)
	b1 := newBus(t, testOptions(t, "r1", s.Addr()))
	waitConnected(t, b1, b2)
	rec := newDoneRecorder()
	big := seqMessage("r1", 1)
	big.Payload = append(big.Payload, make([]byte, 5000)...)
	b1.Publish("r2", big, rec.done(1))
	rec.wait(t, 2*time.Second)
	b1.Publish("r2", seqMessage("r1", 2), rec.done(2))
	rec.wait(t, 2*time.Second)
	waitFor(t, "small message after a discarded one", 2*time.Second, func() bool { return r2.count() == 1 })
	if st := b2.Stats(); st.Discarded != 1 || st.Reconnects != 0 {
		t.Fatalf("stats %+v: want 1 discarded on the same connection", st)
	}
}

func TestControl(t *testing.T) {
	s := redistest.Start(t, redistest.WithPassword("pw"))
	r2 := newReceiver()
	o2 := testOptions(t, "r2", s.Addr())
	o2.Password = "pw"
	r2.attach(&o2)
	o1 := testOptions(t, "r1", s.Addr())
	o1.Password = "pw"
	b1, b2 := newBus(t, o1), newBus(t, o2)
	waitConnected(t, b1, b2)
	ctx := context.Background()
	if err := b1.PublishControl(ctx, "r2", []byte("kick c1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "control notice", 2*time.Second, func() bool {
		r2.mu.Lock()
		defer r2.mu.Unlock()
		return len(r2.control) == 1 && string(r2.control[0]) == "kick c1"
	})
	if err := b1.PublishControl(ctx, "r9", []byte("x")); !errors.Is(err, ErrNoReceiver) {
		t.Fatalf("control to nobody: %v", err)
	}
}

func TestWrongPasswordRetries(t *testing.T) {
	s := redistest.Start(t, redistest.WithPassword("right"))
	o := testOptions(t, "r1", s.Addr())
	o.Password = "wrong"
	var statuses atomic.Int32
	o.OnStatus = func(Status) { statuses.Add(1) }
	b := newBus(t, o)
	waitFor(t, "AUTH error reported", 2*time.Second, func() bool {
		return strings.Contains(b.Status().LastError, "AUTH")
	})
	if b.Status().Connected {
		t.Fatal("connected with a wrong password")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "ReplicaID"},
		{Options{ReplicaID: "a{b}"}, "ReplicaID"},
		{Options{ReplicaID: "r", Prefix: "x{"}, "Prefix"},
		{Options{ReplicaID: "r", HealthInterval: time.Second, HealthTimeout: time.Second}, "HealthTimeout"},
		{Options{ReplicaID: "r", BackoffMin: time.Second, BackoffMax: time.Millisecond}, "BackoffMax"},
		{Options{ReplicaID: "r", MaxPendingBytes: 10}, "MaxPendingBytes"},
		{Options{ReplicaID: "r", Addrs: []string{""}}, "Addrs"},
		{Options{ReplicaID: "r", PoolSize: -1}, "PoolSize"},
	} {
		_, err := New(context.Background(), c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want one naming %s", c.o, err, c.want)
		}
	}
	o, err := Options{ReplicaID: "r", Addrs: []string{"a:1", "b:2"}}.withDefaults()
	if err != nil || !o.Cluster || o.BatchMaxBytes != DefaultBatchMaxBytes || o.HealthInterval != time.Second {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

func TestBackoff(t *testing.T) {
	b := &Bus{opts: Options{BackoffMin: 100 * time.Millisecond, BackoffMax: 5 * time.Second}}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		4: 800 * time.Millisecond, 7: 5 * time.Second, 100: 5 * time.Second} {
		for range 50 {
			d := b.backoff(n)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %v outside [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestPublishDoesNotAllocate(t *testing.T) {
	s := redistest.Start(t)
	o := testOptions(t, "r1", s.Addr())
	o.BatchMaxDelay = time.Hour // nothing flushes while measuring
	o.BatchMaxBytes = 4 << 20
	b := newBus(t, o)
	waitConnected(t, b)
	m := seqMessage("r1", 1)
	b.Publish("r2", m, nil) // the destination's queue and first batch
	if a := testing.AllocsPerRun(2000, func() { b.Publish("r2", m, nil) }); a != 0 {
		t.Fatalf("Publish allocates %v times per message", a)
	}
}
