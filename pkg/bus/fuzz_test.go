package bus

import (
	"errors"
	"reflect"
	"runtime"
	"testing"
)

// decodeAllocLimit is the most DecodeBatch may allocate for n input bytes: 16 bytes per byte
// (see DecodeBatchInto) plus small-object rounding.
func decodeAllocLimit(n int) uint64 { return uint64(16*n + 512) }

var fuzzCalls int

// FuzzDecodeBatch feeds arbitrary bytes to DecodeBatch. It must not panic; whatever decodes
// must re-encode and decode to the same messages; errors are ErrMalformed. Every 64th input also
// checks the allocation bound.
func FuzzDecodeBatch(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(encodeBatch(f, fx.msgs))
	}
	for _, c := range malformedCases() {
		f.Add(c.raw)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := DecodeBatch(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			if len(ms) != 0 {
				t.Fatal("messages returned with an error")
			}
			return
		}
		re := AppendBatchHeader(nil)
		for i := range ms {
			if re, err = AppendMessage(re, &ms[i]); err != nil {
				t.Fatalf("decoded message %d does not encode: %v", i, err)
			}
		}
		again, err := DecodeBatch(re)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if len(again) != len(ms) {
			t.Fatalf("%d messages, then %d", len(ms), len(again))
		}
		for i := range ms {
			if a, b := normalize(ms[i]), normalize(again[i]); !reflect.DeepEqual(a, b) {
				t.Fatalf("message %d changed:\n%+v\n%+v", i, a, b)
			}
		}
		// Canonical encodings survive byte for byte.
		if len(re) > len(data) {
			t.Fatalf("re-encoding grew: %d > %d bytes", len(re), len(data))
		}
		checkDecodeAllocs(t, data, decodeAllocLimit(len(data)), DecodeBatch)
	})
}

// FuzzDecodeExportEntry: compressed or not, an export batch or an envelope batch, any input
// decodes or fails with ErrMalformed, never panics, and never allocates beyond the entry limit.
// An export batch that decodes re-encodes (each message with a publisher frame of its own) to
// the same messages, and decoding it allocates under 32 bytes per byte (DecodeExportBatch).
func FuzzDecodeExportEntry(f *testing.F) {
	for _, msgs := range exportFixtures() {
		for _, plain := range [][]byte{encodeBatch(f, msgs), encodeExportBatch(f, msgs)} {
			f.Add(plain)
			if len(plain) < 2 {
				continue
			}
			c := &exportChunk{buf: plain}
			for len(c.buf) < 512 {
				c.buf = append(c.buf, plain[1:]...)
			}
			c.pack(true)
			f.Add(append([]byte(nil), c.packed...))
		}
	}
	for _, c := range malformedExportCases(f) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := DecodeExportEntry(data)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v is not ErrMalformed", err)
		}
		if err != nil && len(ms) != 0 {
			t.Fatal("messages returned with an error")
		}
		if err != nil || len(data) == 0 || data[0] != ExportVersion {
			return
		}
		checkExportReencodes(t, ms)
		checkDecodeAllocs(t, data, uint64(32*len(data)+512), DecodeExportEntry)
	})
}

// checkExportReencodes encodes decoded messages again, each after a publisher frame of its own,
// and checks that they decode to the same.
func checkExportReencodes(t *testing.T, ms []Message) {
	re := AppendExportBatchHeader(nil)
	for i := range ms {
		var base ExportBase
		base.SetFrom(&ms[i])
		var err error
		if re, err = AppendExportMessage(AppendExportBase(re, &base), &base, &ms[i]); err != nil {
			t.Fatalf("decoded message %d does not encode: %v", i, err)
		}
	}
	again, err := DecodeExportEntry(re)
	if err != nil || len(again) != len(ms) {
		t.Fatalf("re-encoded batch: %d of %d messages, %v", len(again), len(ms), err)
	}
	for i := range ms {
		if a, b := normalize(ms[i]), normalize(again[i]); !reflect.DeepEqual(a, b) {
			t.Fatalf("message %d changed:\n%+v\n%+v", i, a, b)
		}
	}
}

// FuzzSplitLogBatches: any input splits into batches that cover it exactly, or is refused; never
// a panic. A log entry's messages split back into what was appended.
func FuzzSplitLogBatches(f *testing.F) {
	var blob []byte
	for i := range 3 {
		m := Message{ID: NewMessageID(), Topic: "t/" + string(rune('a'+i)), Payload: []byte("payload"), QoS: 1}
		blob, _ = AppendMessage(AppendBatchHeader(blob), &m)
	}
	f.Add(blob)
	f.Add(blob[:len(blob)-1])
	f.Add([]byte{EnvelopeVersion})
	f.Add([]byte{EnvelopeVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, p []byte) {
		bs, ok := SplitLogBatches(p)
		if !ok {
			return
		}
		n := 0
		for _, b := range bs {
			n += len(b)
		}
		if n != len(p) {
			t.Fatalf("%d batches cover %d of %d bytes", len(bs), n, len(p))
		}
	})
}

func TestSplitLogBatches(t *testing.T) {
	var blob []byte
	var want []string
	for i := range 5 {
		m := Message{ID: NewMessageID(), Topic: "t", Payload: []byte{byte('0' + i)}, QoS: 1}
		blob, _ = AppendMessage(AppendBatchHeader(blob), &m)
		want = append(want, string(m.Payload))
	}
	bs, ok := SplitLogBatches(blob)
	if !ok || len(bs) != len(want) {
		t.Fatalf("split: %v, %d batches", ok, len(bs))
	}
	for i, b := range bs {
		ms, err := DecodeBatch(b)
		if err != nil || len(ms) != 1 || string(ms[0].Payload) != want[i] {
			t.Fatalf("batch %d: %v %v", i, err, ms)
		}
	}
	if _, ok := SplitLogBatches(blob[:len(blob)-2]); ok {
		t.Fatal("a truncated entry split")
	}
}

// checkDecodeAllocs makes sure decode allocates at most limit bytes for data, every 64th call (it
// is slow): the least of three runs, as the fuzzing engine allocates in other goroutines.
func checkDecodeAllocs(t *testing.T, data []byte, limit uint64, decode func([]byte) ([]Message, error)) {
	t.Helper()
	fuzzCalls++
	if fuzzCalls%64 != 0 {
		return
	}
	least := ^uint64(0)
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		out, _ := decode(data)
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(out)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	if least > limit {
		t.Fatalf("decoding %d bytes allocated %d", len(data), least)
	}
}
