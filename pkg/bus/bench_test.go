package bus

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/rs/zerolog"
)

var benchSizes = []int{64, 1024}

func benchMessage(payload int) *Message {
	return &Message{
		ID: NewMessageID(), Origin: "broker-7c9f8d-x2x4z", ClientID: "device-000123", Username: "fleet",
		Topic: "sensors/building-1/floor-2/temperature", Payload: make([]byte, payload), QoS: 1,
		Created: time.Now().UnixNano(), Plain: true,
		UserProperties: []mqtt.UserProperty{{Key: "unit", Value: "C"}},
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			m := benchMessage(size)
			buf := AppendBatchHeader(make([]byte, 0, 1<<20))
			b.SetBytes(int64(m.Size()))
			b.ReportAllocs()
			for b.Loop() {
				if len(buf)+m.Size() > cap(buf) {
					buf = AppendBatchHeader(buf[:0])
				}
				buf, _ = AppendMessage(buf, m)
			}
		})
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			m := benchMessage(size)
			batch := AppendBatchHeader(nil)
			const n = 100
			for range n {
				batch, _ = AppendMessage(batch, m)
			}
			dst := make([]Message, 0, n)
			b.SetBytes(int64(len(batch) / n)) // per message
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += n {
				var err error
				if dst, err = DecodeBatchInto(dst, batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNewMessageID makes ids as the broker does for a PUBLISH, from the time it already
// read for the message.
func BenchmarkNewMessageID(b *testing.B) {
	b.ReportAllocs()
	at := time.Now().UnixNano()
	for b.Loop() {
		_ = NewMessageIDAt(at)
	}
}

// BenchmarkBusThroughput sends 64-byte messages from replica r1 to r2 through a real
// redis-server, as fast as the publishers can go with at most 64k messages awaiting their done,
// and reports messages per second end to end (r2 decoded them all) and Redis PUBLISH commands per
// message. Sub-benchmarks vary BatchMaxDelay (which does not matter at saturation: batches fill
// to BatchMaxBytes while the previous flush is in flight) and the number of publishing goroutines.
func BenchmarkBusThroughput(b *testing.B) {
	for _, delay := range []time.Duration{-1, DefaultBatchMaxDelay} {
		for _, pubs := range []int{1, 8} {
			name := "delay=" + delay.String() + "/publishers=" + strconv.Itoa(pubs)
			if delay < 0 {
				name = "delay=0/publishers=" + strconv.Itoa(pubs)
			}
			b.Run(name, func(b *testing.B) { benchThroughput(b, delay, pubs, 64) })
		}
	}
}

func benchThroughput(b *testing.B, delay time.Duration, pubs, payload int) {
	s := redistest.Start(b)
	var received atomic.Int64
	const window = 64 << 10
	sem := make(chan struct{}, window)
	o2 := Options{Addrs: []string{s.Addr()}, ReplicaID: "r2", Logger: zerolog.Nop()}
	var dst []Message
	o2.OnBatch = func(batch []byte) {
		var err error
		if dst, err = DecodeBatchInto(dst, batch); err != nil {
			panic(err)
		}
		received.Add(int64(len(dst)))
		for range dst {
			<-sem
		}
	}
	b2 := newBus(b, o2)
	b1 := newBus(b, Options{Addrs: []string{s.Addr()}, ReplicaID: "r1", BatchMaxDelay: delay, Logger: zerolog.Nop()})
	waitConnected(b, b1, b2)
	if _, err := redistest.Do(s.Addr(), "", "CONFIG", "RESETSTAT"); err != nil {
		b.Fatal(err)
	}

	// The window closes at the receiver, not at done: Redis pub/sub has no flow control, and a
	// subscriber that falls 32 MiB behind is disconnected (client-output-buffer-limit pubsub).
	var failed atomic.Int64
	done := func(err error) {
		if err != nil {
			failed.Add(1)
			<-sem
		}
	}
	msgs := make([]*Message, pubs)
	for i := range msgs {
		msgs[i] = benchMessage(payload)
	}
	b.SetBytes(int64(msgs[0].Size()))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := b.N / pubs
	for p := 0; p < pubs; p++ {
		n := per
		if p == 0 {
			n += b.N % pubs
		}
		wg.Add(1)
		go func(m *Message, n int) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				sem <- struct{}{}
				b1.Publish("r2", m, done)
			}
		}(msgs[p], n)
	}
	wg.Wait()
	waitReceived(b, &received, &failed, b1, b2)
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d publishes failed", f, b.N)
	}
	calls := s.CommandCalls("publish")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(calls)/float64(b.N), "cmds/msg")
	b.ReportMetric(float64(b.N)/float64(max(calls, 1)), "msgs/batch")
}

// BenchmarkBusPaced offers 64-byte messages from r1 to r2 at a fixed rate and reports what
// BatchMaxDelay trades: Redis commands per message against latency from Publish to r2's
// OnBatch (p50, p99). At saturation (BenchmarkBusThroughput) batches fill up whatever the delay;
// this is the regime below it. Rates are per destination replica: at 1M msg/s offered to a
// cluster, each of 10 destinations sees 100k.
func BenchmarkBusPaced(b *testing.B) {
	for _, rate := range []int{10_000, 100_000, 1_000_000} {
		for _, delay := range []time.Duration{-1, 100 * time.Microsecond, 500 * time.Microsecond, time.Millisecond} {
			d := delay.String()
			if delay < 0 {
				d = "0"
			}
			b.Run("rate="+strconv.Itoa(rate)+"/delay="+d, func(b *testing.B) { benchPaced(b, rate, delay) })
		}
	}
}

func benchPaced(b *testing.B, rate int, delay time.Duration) {
	s := redistest.Start(b)
	var received atomic.Int64
	lat := make([]int64, 0, min(b.N, 4<<20))
	var latMu sync.Mutex
	o2 := Options{Addrs: []string{s.Addr()}, ReplicaID: "r2", Logger: zerolog.Nop()}
	var dst []Message
	o2.OnBatch = func(batch []byte) {
		now := time.Now().UnixNano()
		dst, _ = DecodeBatchInto(dst, batch)
		latMu.Lock()
		for i := range dst {
			if len(lat) < cap(lat) {
				lat = append(lat, now-dst[i].Created)
			}
		}
		latMu.Unlock()
		received.Add(int64(len(dst)))
	}
	b2 := newBus(b, o2)
	b1 := newBus(b, Options{Addrs: []string{s.Addr()}, ReplicaID: "r1", BatchMaxDelay: delay, Logger: zerolog.Nop()})
	waitConnected(b, b1, b2)
	if _, err := redistest.Do(s.Addr(), "", "CONFIG", "RESETSTAT"); err != nil {
		b.Fatal(err)
	}
	var failed atomic.Int64
	done := func(err error) {
		if err != nil {
			failed.Add(1)
		}
	}
	m := benchMessage(64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; {
		due := int(time.Since(start).Seconds() * float64(rate))
		if i >= due {
			// On an otherwise idle process this sleeps up to a millisecond (Go's timers wait in
			// epoll_wait with millisecond resolution), so the load comes in bursts of up to
			// rate/1000 messages. Spinning instead would take one of the machine's two cores
			// from Redis and the receiver.
			time.Sleep(20 * time.Microsecond)
			continue
		}
		for ; i < min(due, b.N); i++ {
			m.Created = time.Now().UnixNano()
			b1.Publish("r2", m, done)
		}
	}
	waitReceived(b, &received, &failed, b1, b2)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d publishes failed", f, b.N)
	}
	calls := s.CommandCalls("publish")
	latMu.Lock()
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	latMu.Unlock()
	b.ReportMetric(float64(calls)/float64(b.N), "cmds/msg")
	b.ReportMetric(float64(p50)/1e3, "p50-µs")
	b.ReportMetric(float64(p99)/1e3, "p99-µs")
}

func percentile(xs []int64, p float64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]int64(nil), xs...)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// waitReceived waits until every message was received or failed, and fails the benchmark when
// nothing moves for 10 s (a lost message would otherwise hang it).
func waitReceived(b *testing.B, received, failed *atomic.Int64, b1, b2 *Bus) {
	last, lastChange := int64(-1), time.Now()
	for {
		n := received.Load() + failed.Load()
		if n >= int64(b.N) {
			return
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > 10*time.Second {
			b.Fatalf("stuck at %d of %d: sender %+v, receiver %+v", n, b.N, b1.Stats(), b2.Stats())
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkExportEntryBytes reports the bytes an export stream entry stores per message (the
// S2 block of one connection's batch of 512 S1 messages: 64-byte payloads carrying a send time
// and a sequence number, one topic, one publisher) and the encoding's CPU time, for the export
// batch brokers write (format=export) and the envelope batch they wrote before
// (format=envelope), with the broker's message ids and with random version 4 ids, which the
// broker used before. Redis' cost of an XADD grows with the bytes it stores, so stored-B/msg is
// the export's cost per message on the Redis side.
func BenchmarkExportEntryBytes(b *testing.B) {
	random := func(int64) MessageID {
		var id MessageID
		binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
		id[6] = id[6]&0x0f | 0x40
		id[8] = id[8]&0x3f | 0x80
		return id
	}
	for _, format := range []string{"export", "envelope"} {
		for _, ids := range []struct {
			name string
			make func(int64) MessageID
		}{{"ids=v7", NewMessageIDAt}, {"ids=random", random}} {
			b.Run("format="+format+"/"+ids.name, func(b *testing.B) {
				benchEntryBytes(b, format == "export", ids.make)
			})
		}
	}
}

func benchEntryBytes(b *testing.B, export bool, newID func(int64) MessageID) {
	const n = 512
	payload := make([]byte, 64)
	for i := 16; i < len(payload); i++ {
		payload[i] = 'x'
	}
	binary.BigEndian.PutUint32(payload[8:12], 3)
	var batch, z []byte
	var stored int
	for b.Loop() {
		t0 := time.Now().UnixNano()
		var base ExportBase
		if export {
			batch = AppendExportBatchHeader(batch[:0])
		} else {
			batch = AppendBatchHeader(batch[:0])
		}
		for i := range n {
			at := t0 + int64(i)*1100 // about S1's pace on one connection
			binary.BigEndian.PutUint64(payload[0:8], uint64(at))
			binary.BigEndian.PutUint32(payload[12:16], uint32(i))
			m := Message{ID: newID(at), Origin: "broker-7c9f8d-x2x4z", ClientID: "loadgen-pub-3",
				Topic: "mqttload/fanin", Payload: payload, Created: at}
			var err error
			switch {
			case !export:
				batch, err = AppendMessage(batch, &m)
			case i == 0:
				base.SetFrom(&m)
				batch = AppendExportBase(batch, &base)
				fallthrough
			default:
				batch, err = AppendExportMessage(batch, &base, &m)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		z = s2.Encode(z[:cap(z)], batch)
		stored = len(z)
	}
	b.ReportMetric(float64(stored)/n, "stored-B/msg")
	b.ReportMetric(float64(len(batch))/n, "encoded-B/msg")
}
