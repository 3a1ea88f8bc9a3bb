package bus

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// encodeExportBatch encodes msgs as one export batch the way a broker's connection does: a
// publisher frame whenever the publisher changes, its first message's id and time the base.
func encodeExportBatch(t testing.TB, msgs []Message) []byte {
	t.Helper()
	b := AppendExportBatchHeader(nil)
	var base ExportBase
	for i := range msgs {
		if i == 0 || !base.Fits(&msgs[i]) {
			base.SetFrom(&msgs[i])
			b = AppendExportBase(b, &base)
		}
		var err error
		if b, err = AppendExportMessage(b, &base, &msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// exported is what the export carries of m: everything but the routing hints and flags, which
// stay between replicas.
func exported(m Message) Message {
	m = normalize(m)
	m.Plain, m.Groups, m.Flags = false, nil, 0
	return m
}

// exportFixtures are the envelope's fixtures and messages whose ids and times are far from
// their publisher frame's: other milliseconds, counters and nodes, times before it, expiries.
func exportFixtures() [][]Message {
	var out [][]Message
	for _, fx := range fixtures {
		out = append(out, fx.msgs)
	}
	far := func(id MessageID, created, expiry int64, client string) Message {
		return Message{ID: id, Origin: "r1", ClientID: client, Topic: "t", Payload: []byte("p"), QoS: 1,
			Created: created, Expiry: expiry, UserProperties: []mqtt.UserProperty{{Key: "k", Value: "v"}}}
	}
	base := NewMessageIDAt(1_700_000_000_000_000_000)
	next := NewMessageIDAt(1_700_000_000_000_000_000)
	later := NewMessageIDAt(1_800_000_000_000_000_000)
	var ones, random MessageID
	for i := range ones {
		ones[i] = 0xff
		random[i] = byte(i*37 + 11)
	}
	out = append(out, []Message{
		far(base, 1_700_000_000_000_000_000, 0, "a"),
		far(next, 1_700_000_000_000_000_999, 1_700_000_060_000_000_000, "a"),
		far(later, -1_800_000_000_000_000_000, -5, "a"),
		far(ones, 1<<63-1, -1<<63, "a"),
		far(MessageID{}, -1<<63, 1<<63-1, "a"),
		far(random, 0, 1, "a"),
		far(base, 1, 0, "b"), // a new publisher frame
		far(ones, 2, 0, "b"),
		far(base, 3, 0, "a"), // and back
	})
	return out
}

// An export batch decodes to the messages encoded, less the routing hints, and to exactly what
// the envelope batch of the same messages (what brokers wrote before) decodes to: the adapter
// writes the same rows from either.
func TestExportBatchRoundTrip(t *testing.T) {
	for k, msgs := range exportFixtures() {
		got, err := DecodeExportEntry(encodeExportBatch(t, msgs))
		if err != nil {
			t.Fatalf("fixture %d: %v", k, err)
		}
		old, err := DecodeExportEntry(encodeBatch(t, msgs))
		if err != nil {
			t.Fatalf("fixture %d, envelope batch: %v", k, err)
		}
		if len(got) != len(msgs) || len(old) != len(msgs) {
			t.Fatalf("fixture %d: %d and %d messages, want %d", k, len(got), len(old), len(msgs))
		}
		for i := range msgs {
			want := exported(msgs[i])
			if g := normalize(got[i]); !reflect.DeepEqual(g, want) {
				t.Errorf("fixture %d message %d:\n got %+v\nwant %+v", k, i, g, want)
			}
			if o := exported(old[i]); !reflect.DeepEqual(normalize(got[i]), o) {
				t.Errorf("fixture %d message %d: export batch and envelope batch differ:\n%+v\n%+v", k, i, got[i], o)
			}
		}
	}
}

// The publisher is stated once per run of its messages, and ids and times take a few bytes:
// an export batch of one connection's messages is much smaller than the envelope batch.
func TestExportBatchSmaller(t *testing.T) {
	msgs := make([]Message, 100)
	for i := range msgs {
		at := int64(1_700_000_000_000_000_000 + i*1100)
		msgs[i] = Message{ID: NewMessageIDAt(at), Origin: "broker-7c9f8d-x2x4z", ClientID: "loadgen-pub-3",
			Topic: "mqttload/fanin", Payload: bytes.Repeat([]byte{'x'}, 64), Created: at}
	}
	v2, v1 := encodeExportBatch(t, msgs), encodeBatch(t, msgs)
	per := func(b []byte) float64 { return float64(len(b)-len(msgs)*(64+15)) / float64(len(msgs)) }
	t.Logf("overhead per message beyond topic and payload: export batch %.1f B, envelope batch %.1f B", per(v2), per(v1))
	if per(v2) > 12 || per(v1) < 40 {
		t.Fatalf("export batch %d bytes, envelope batch %d bytes for %d messages", len(v2), len(v1), len(msgs))
	}
}

// malformedExportCases are export batches DecodeExportEntry must refuse.
func malformedExportCases(t testing.TB) map[string][]byte {
	fx := exportFixtures()
	good := encodeExportBatch(t, fx[len(fx)-1][:2])
	baseLen := int(good[1]) + 1 // the publisher frame, its length prefix included
	msgAt := 1 + baseLen        // the first message frame
	qos3 := bytes.Clone(good)
	qos3[msgAt+2] |= 3
	kind := bytes.Clone(good)
	kind[msgAt+1] = 7
	pubKind := bytes.Clone(good)
	pubKind[2] = 9
	longTopic := bytes.Clone(good)
	at := bytes.Index(longTopic[msgAt:], []byte{1, 't'}) + msgAt
	longTopic[at] = 0x7f
	manyUP := encodeExportBatch(t, fixtures[0].msgs) // ends with its user property count, 0
	manyUP[len(manyUP)-1] = 0x7f
	return map[string][]byte{
		"truncated":           good[:len(good)-1],
		"message first":       append([]byte{ExportVersion}, good[msgAt:]...),
		"QoS 3":               qos3,
		"unknown frame":       kind,
		"unknown first frame": pubKind,
		"short publisher":     {ExportVersion, 4, 0, 0, 0, 0},
		"tiny message":        append(bytes.Clone(good[:msgAt]), 2, 1, 0),
		"topic beyond":        longTopic,
		"user props beyond":   manyUP,
		"zero-length frame":   {ExportVersion, 0},
		"huge frame length":   {ExportVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
}

func TestDecodeExportBatchMalformed(t *testing.T) {
	for name, b := range malformedExportCases(t) {
		if ms, err := DecodeExportEntry(b); !errors.Is(err, ErrMalformed) || len(ms) != 0 {
			t.Errorf("%s: %d messages, %v", name, len(ms), err)
		}
	}
	if ms, err := DecodeExportEntry([]byte{ExportVersion}); err != nil || len(ms) != 0 {
		t.Errorf("only the version: %d messages, %v", len(ms), err)
	}
}

// A connection's batch longer than an entry is split between entries, each starting with the
// publisher frame again: every entry decodes on its own to the publisher's messages.
func TestExportBatchSplitRepeatsThePublisher(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions(t, "r1", srv.Addr())
	o.ExportBatch = 50
	b := newBus(t, o)
	const n = 1_000
	want := make([]Message, n)
	for i := range want {
		want[i] = exportMsg(i)
		want[i].ClientID, want[i].Username = "one-device", "its-user"
	}
	for i := 0; i < n; i += 120 {
		j := min(i+120, n)
		if got := b.ExportBatch(encodeExportBatch(t, want[i:j]), j-i); got != j-i {
			t.Fatalf("ExportBatch queued %d of %d", got, j-i)
		}
	}
	waitFor(t, "every message exported", 10*time.Second, func() bool { return b.Stats().Exported == n })
	// Written, the queue counts neither messages nor bytes: publisher frames included.
	waitFor(t, "an empty queue", 5*time.Second, func() bool {
		b.export.mu.Lock()
		defer b.export.mu.Unlock()
		return b.export.queued == 0 && b.export.bytes == 0
	})
	got, entries := readExport(t, b.Client(), b.Names().Export())
	if len(got) != n || entries < n/50 {
		t.Fatalf("%d messages in %d entries, want %d in at least %d", len(got), entries, n, n/50)
	}
	for i := range got {
		if g, w := normalize(got[i]), exported(want[i]); !reflect.DeepEqual(g, w) {
			t.Fatalf("message %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

// AdvanceExportBase: the publisher frame it makes after some of a batch's messages decodes the
// rest of them as the whole batch does; it refuses what is not a publisher frame and messages.
func TestAdvanceExportBase(t *testing.T) {
	fx := exportFixtures()
	msgs := fx[len(fx)-1][:6] // one publisher, ids and times far apart
	batch := encodeExportBatch(t, msgs)
	pubLen, _, _ := wire.ExportFrame(batch[1:])
	pub, frames := batch[1:1+pubLen], batch[1+pubLen:]
	for split := 0; split <= len(msgs); split++ {
		off := 0
		for range split {
			size, _, _ := wire.ExportFrame(frames[off:])
			off += size
		}
		next, err := wire.AdvanceExportBase(AppendExportBatchHeader(nil), pub, frames[:off])
		if err != nil {
			t.Fatalf("split %d: %v", split, err)
		}
		got, err := DecodeExportEntry(append(next, frames[off:]...))
		if err != nil || len(got) != len(msgs)-split {
			t.Fatalf("split %d: %d messages, %v", split, len(got), err)
		}
		for i := range got {
			if g, w := normalize(got[i]), exported(msgs[split+i]); !reflect.DeepEqual(g, w) {
				t.Fatalf("split %d, message %d:\n got %+v\nwant %+v", split, split+i, g, w)
			}
		}
	}
	for name, c := range map[string][2][]byte{
		"message as publisher": {frames, nil},
		"publisher as message": {pub, pub},
		"truncated message":    {pub, frames[:5]},
		"empty publisher":      {nil, frames},
	} {
		if _, err := wire.AdvanceExportBase(nil, c[0], c[1]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
