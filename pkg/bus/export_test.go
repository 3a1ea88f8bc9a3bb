package bus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// exportMsg builds the i-th test message; its payload is binary and its fields vary with i.
func exportMsg(i int) Message {
	m := Message{
		ID: NewMessageID(), Origin: "r1", ClientID: "dev-" + strconv.Itoa(i%7), Topic: "t/" + strconv.Itoa(i%13),
		Payload: []byte{0xff, 0x00, byte(i), byte(i >> 8), byte(i >> 16)}, QoS: byte(i % 3), Retain: i%5 == 0,
		Created: time.Now().UnixNano(),
	}
	if i%2 == 0 {
		m.Username = "user"
		m.ContentType = "application/octet-stream"
		m.UserProperties = []mqtt.UserProperty{{Key: "seq", Value: strconv.Itoa(i)}, {Key: "k", Value: ""}}
	}
	return m
}

// readExport reads the whole export stream and decodes every entry, failing on anything else
// than one well-formed envelope batch per entry. It returns the messages in order and the number
// of entries.
func readExport(t *testing.T, c redis.UniversalClient, stream string) ([]Message, int) {
	t.Helper()
	entries, err := c.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []Message
	for _, e := range entries {
		if len(e.Values) != 1 {
			t.Fatalf("entry %s: fields %v, want only %q", e.ID, e.Values, ExportField)
		}
		v, ok := e.Values[ExportField].(string)
		if !ok {
			t.Fatalf("entry %s: no field %q", e.ID, ExportField)
		}
		ms, err := DecodeExportEntry([]byte(v))
		if err != nil || len(ms) == 0 {
			t.Fatalf("entry %s: %d messages, %v", e.ID, len(ms), err)
		}
		out = append(out, ms...)
	}
	return out, len(entries)
}

func sameMessage(a, b *Message) bool {
	if len(a.UserProperties) != len(b.UserProperties) {
		return false
	}
	for i := range a.UserProperties {
		if a.UserProperties[i] != b.UserProperties[i] {
			return false
		}
	}
	return a.ID == b.ID && a.Origin == b.Origin && a.ClientID == b.ClientID && a.Username == b.Username &&
		a.Topic == b.Topic && bytes.Equal(a.Payload, b.Payload) && a.QoS == b.QoS && a.Retain == b.Retain &&
		a.Created == b.Created && a.ContentType == b.ContentType
}

func TestExportWritesEveryMessageInOrderInPipelines(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions(t, "r1", srv.Addr())
	o.ExportBatch = 100
	b := newBus(t, o)
	const n = 10_000
	want := make([]Message, n)
	buf := make([]byte, 5)
	for i := range want {
		want[i] = exportMsg(i)
		m := want[i]
		copy(buf, m.Payload)
		m.Payload = buf // the caller's buffer, overwritten by the next message
		if !b.Export(&m) {
			t.Fatalf("Export %d refused", i)
		}
	}
	waitFor(t, "every message exported", 10*time.Second, func() bool { return b.Stats().Exported == n })
	got, entries := readExport(t, b.Client(), b.Names().Export())
	if len(got) != n {
		t.Fatalf("stream has %d messages, want %d", len(got), n)
	}
	for i := range got {
		if !sameMessage(&got[i], &want[i]) {
			t.Fatalf("message %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	st := b.Stats()
	// At most ExportBatch messages per entry, and (since messages arrive faster than Redis
	// answers) far fewer entries than messages: one XADD per entry.
	if entries < n/100 || entries > n/5 || uint64(entries) != st.ExportEntries {
		t.Errorf("%d entries (stats: %d) for %d messages with ExportBatch 100", entries, st.ExportEntries, n)
	}
	if xadd := srv.CommandCalls("xadd"); xadd != entries {
		t.Errorf("redis ran %d XADDs for %d entries", xadd, entries)
	}
	if st.ExportDropped != 0 || st.ExportRetries != 0 || st.ExportQueued != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestExportCapsTheStreamApproximately(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions(t, "r1", srv.Addr())
	o.ExportMaxLen = 1000
	o.ExportBatch = 1 // one message per entry: MAXLEN counts entries
	b := newBus(t, o)
	for i := 0; i < 5000; i++ {
		m := exportMsg(i)
		b.Export(&m)
	}
	waitFor(t, "exported", 10*time.Second, func() bool { return b.Stats().Exported == 5000 })
	n, err := b.Client().XLen(context.Background(), b.Names().Export()).Result()
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole macro nodes (stream-node-max-entries, 100 by default).
	if n < 1000 || n > 1100 {
		t.Fatalf("XLEN %d with MAXLEN ~ 1000", n)
	}
}

func TestExportQueueBoundedWhileRedisIsDownThenDelivered(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions(t, "r1", srv.Addr())
	o.ExportQueue = 100
	b := newBus(t, o)
	waitConnected(t, b)
	srv.Stop()
	ids := map[MessageID]bool{}
	accepted := 0
	for i := 0; i < 150; i++ {
		m := exportMsg(i)
		if b.Export(&m) {
			accepted++
			ids[m.ID] = true
		}
	}
	if accepted != 100 {
		t.Fatalf("accepted %d of 150 with ExportQueue 100", accepted)
	}
	if st := b.Stats(); st.ExportDropped != 50 || st.ExportQueued != 100 {
		t.Fatalf("stats %+v: want 50 dropped, 100 queued", st)
	}
	waitFor(t, "a failed attempt", 5*time.Second, func() bool { return b.Stats().ExportRetries > 0 })
	srv.Start()
	waitFor(t, "queued messages written after Redis came back", 10*time.Second,
		func() bool { return b.Stats().Exported == 100 })
	got, _ := readExport(t, b.Client(), b.Names().Export())
	if len(got) != 100 {
		t.Fatalf("%d messages, want 100", len(got))
	}
	for _, m := range got {
		if !ids[m.ID] {
			t.Fatalf("unexpected or repeated id %s", m.ID)
		}
		delete(ids, m.ID)
	}
	if st := b.Stats(); st.ExportQueued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExportCloseFlushes(t *testing.T) {
	srv := redistest.Start(t)
	b, err := New(context.Background(), testOptions(t, "r1", srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for i := 0; i < n; i++ {
		m := exportMsg(i)
		if !b.Export(&m) {
			t.Fatal("refused")
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Exported != n || st.ExportQueued != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	m := exportMsg(0)
	if b.Export(&m) {
		t.Fatal("Export after Close accepted")
	}
	r := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer r.Close()
	if got, _ := readExport(t, r, NewNames("").Export()); len(got) != n {
		t.Fatalf("%d messages after Close, want %d", len(got), n)
	}
}

func TestExportCloseGivesUpWhenRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions(t, "r1", srv.Addr())
	b, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, b)
	srv.Stop()
	for i := 0; i < 10; i++ {
		m := exportMsg(i)
		b.Export(&m)
	}
	start := time.Now()
	_ = b.Close()
	// Close waits at most WriteTimeout+ReadTimeout for the export (2 s in these options), plus
	// the flusher's own bound and a slack.
	if d := time.Since(start); d > 2*(o.WriteTimeout+o.ReadTimeout)+time.Second {
		t.Fatalf("Close took %v", d)
	}
	if st := b.Stats(); st.ExportDropped != 10 || st.Exported != 0 || st.ExportQueued != 0 {
		t.Fatalf("stats %+v: want the 10 messages dropped", st)
	}
}

func TestExportRefusesQoS3(t *testing.T) {
	srv := redistest.Start(t)
	b := newBus(t, testOptions(t, "r1", srv.Addr()))
	m := exportMsg(0)
	m.QoS = 3
	if b.Export(&m) {
		t.Fatal("QoS 3 accepted")
	}
	if st := b.Stats(); st.ExportDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExportClusterMode(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	o := testOptions(t, "r1", c.Addrs()...)
	b := newBus(t, o)
	const n = 2000
	for i := 0; i < n; i++ {
		m := exportMsg(i)
		if !b.Export(&m) {
			t.Fatal("refused")
		}
	}
	waitFor(t, "exported", 10*time.Second, func() bool { return b.Stats().Exported == n })
	node := c.NodeFor(t, b.Names().Export())
	r := redis.NewClient(&redis.Options{Addr: node.Addr()})
	defer r.Close()
	if got, _ := readExport(t, r, b.Names().Export()); len(got) != n {
		t.Fatalf("%d messages on the stream's node, want %d", len(got), n)
	}
}

func BenchmarkExport(b *testing.B) {
	srv := redistest.Start(b)
	o := testOptions(b, "r1", srv.Addr())
	o.ExportMaxLen = 100_000
	bs := newBus(b, o)
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			m := exportMsg(0)
			m.Payload = make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			start := bs.Stats().Exported
			sent := 0
			for i := 0; i < b.N; i++ {
				for !bs.Export(&m) {
					time.Sleep(time.Microsecond) // queue full: Redis is the bottleneck
				}
				sent++
			}
			for bs.Stats().Exported-start < uint64(sent) {
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestExportCompresses: entries of compressible messages are stored compressed, and decode to
// the messages; with ExportUncompressed they are plain envelope batches.
func TestExportCompresses(t *testing.T) {
	srv := redistest.Start(t)
	for _, plain := range []bool{false, true} {
		o := testOptions(t, "r1", srv.Addr())
		o.ExportUncompressed = plain
		o.Prefix = fmt.Sprintf("c%v", plain)
		b := newBus(t, o)
		want := make([]Message, 300)
		for i := range want {
			want[i] = exportMsg(i)
			want[i].Payload = []byte(fmt.Sprintf(`{"temperature": %d.5, "unit": "C", "device": "dev-%d"}`, 20+i%5, i%7))
			if !b.Export(&want[i]) {
				t.Fatal("refused")
			}
		}
		waitFor(t, "exported", 10*time.Second, func() bool { return b.Stats().Exported == uint64(len(want)) })
		entries, err := b.Client().XRange(context.Background(), b.Names().Export(), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var got []Message
		compressed, size := 0, 0
		for _, e := range entries {
			v := []byte(e.Values[ExportField].(string))
			size += len(v)
			if v[0] == ExportCompressed {
				compressed++
			}
			ms, err := DecodeExportEntry(v)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ms...)
		}
		if len(got) != len(want) {
			t.Fatalf("%d messages, want %d", len(got), len(want))
		}
		for i := range got {
			if !sameMessage(&got[i], &want[i]) {
				t.Fatalf("message %d differs", i)
			}
		}
		t.Logf("uncompressed=%v: %d entries, %d compressed, %d bytes", plain, len(entries), compressed, size)
		if plain != (compressed == 0) {
			t.Fatalf("uncompressed=%v but %d of %d entries compressed", plain, compressed, len(entries))
		}
	}
}

func TestDecodeExportEntryMalformed(t *testing.T) {
	m := exportMsg(1)
	plain, _ := AppendMessage(AppendBatchHeader(nil), &m)
	c := &exportChunk{buf: append(plain, plain[1:]...)}
	for i := 0; i < 20; i++ {
		c.buf = append(c.buf, plain[1:]...)
	}
	c.pack(true)
	if c.packed[0] != ExportCompressed {
		t.Fatal("a repetitive chunk was not compressed")
	}
	if ms, err := DecodeExportEntry(c.packed); err != nil || len(ms) != 22 {
		t.Fatalf("%d messages, %v", len(ms), err)
	}
	huge := append([]byte{ExportCompressed}, binary.AppendUvarint(nil, 1<<30)...)
	for name, b := range map[string][]byte{
		"truncated":     c.packed[:len(c.packed)-3],
		"not s2":        {ExportCompressed, 0xff, 0xff, 0xff},
		"too large":     huge,
		"empty":         {},
		"only the flag": {ExportCompressed},
	} {
		if _, err := DecodeExportEntry(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// ExportBatch: messages handed over in batches of varied sizes (one lock each) reach the stream
// in order, split into entries of at most ExportBatch messages; mixed with single Exports.
func TestExportBatchInOrder(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions(t, "r1", srv.Addr())
	o.ExportBatch = 50
	b := newBus(t, o)
	const n = 5_000
	want := make([]Message, n)
	for i := range want {
		want[i] = exportMsg(i)
	}
	for i := 0; i < n; {
		k := 1 + i%37 // batches of 1 to 37 messages
		if i%5 == 0 {
			if !b.Export(&want[i]) {
				t.Fatalf("Export %d refused", i)
			}
			i++
			continue
		}
		j := min(i+k, n)
		batch := encodeExportBatch(t, want[i:j])
		if got := b.ExportBatch(batch, j-i); got != j-i {
			t.Fatalf("ExportBatch queued %d of %d", got, j-i)
		}
		clear(batch) // copied: the caller reuses its buffer
		i = j
	}
	waitFor(t, "every message exported", 10*time.Second, func() bool { return b.Stats().Exported == n })
	got, entries := readExport(t, b.Client(), b.Names().Export())
	if len(got) != n {
		t.Fatalf("stream has %d messages, want %d", len(got), n)
	}
	for i := range got {
		if !sameMessage(&got[i], &want[i]) {
			t.Fatalf("message %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if entries < n/50 {
		t.Errorf("%d entries for %d messages with ExportBatch 50", entries, n)
	}
}

// ExportBatch admits what fits in the queue and drops and counts the rest.
func TestExportBatchQueueBound(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions(t, "r1", srv.Addr())
	o.ExportQueue = 100
	b := newBus(t, o)
	waitConnected(t, b)
	srv.Stop()
	msgs := make([]Message, 80)
	for i := range msgs {
		msgs[i] = exportMsg(i)
	}
	batch := encodeExportBatch(t, msgs)
	if got := b.ExportBatch(batch, 80); got != 80 {
		t.Fatalf("first batch: queued %d of 80", got)
	}
	if got := b.ExportBatch(batch, 80); got != 20 {
		t.Fatalf("second batch: queued %d of 80 with 20 places left", got)
	}
	if st := b.Stats(); st.ExportDropped != 60 || st.ExportQueued != 100 {
		t.Fatalf("stats %+v: want 60 dropped, 100 queued", st)
	}
	srv.Start()
	waitFor(t, "queued messages written after Redis came back", 10*time.Second,
		func() bool { return b.Stats().Exported == 100 })
}
