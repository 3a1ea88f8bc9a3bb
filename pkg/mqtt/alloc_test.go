package mqtt

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"testing/iotest"
)

// loopReader serves the same bytes forever, as an io.Reader and io.ByteReader, without
// allocating: it stands in for a connection in allocation tests and benchmarks.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func (l *loopReader) ReadByte() (byte, error) {
	b := l.data[l.off]
	l.off = (l.off + 1) % len(l.data)
	return b, nil
}

// benchPublish is the PUBLISH the benchmarks and allocation tests use: v5 carries a couple of
// properties that need no slices.
func benchPublish(v Version, payload int) *Publish {
	p := &Publish{QoS: 1, PacketID: 7, Topic: "sensors/building-1/floor-2/temperature",
		Payload: bytes.Repeat([]byte{'x'}, payload)}
	if v == V5 {
		p.Properties.PayloadFormat = 1
		p.Properties.Set(PropPayloadFormat)
		p.Properties.MessageExpiry = 3600
		p.Properties.Set(PropMessageExpiry)
		p.Properties.ContentType = "application/json"
		p.Properties.Set(PropContentType)
	}
	return p
}

func mustEncode(tb testing.TB, pk Packet, v Version) []byte {
	tb.Helper()
	b, err := pk.AppendTo(nil, v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var payloadSizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

var benchVersions = []struct {
	name string
	v    Version
}{{"v3.1.1", V311}, {"v5", V5}}

func TestAllocsDecodePublish(t *testing.T) {
	for _, bv := range benchVersions {
		for _, ps := range payloadSizes {
			raw := mustEncode(t, benchPublish(bv.v, ps.n), bv.v)
			fh, hl, err := parseFixedHeader(raw, 0)
			if err != nil {
				t.Fatal(err)
			}
			body := raw[hl:]
			var p Publish
			if n := testing.AllocsPerRun(100, func() {
				if err := p.Decode(fh.Flags, body, bv.v); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%s %s: Publish.Decode allocates %v times, want 0", bv.name, ps.name, n)
			}

			rd := NewReader(&loopReader{data: raw}, 0)
			rd.SetVersion(bv.v)
			if n := testing.AllocsPerRun(100, func() {
				if _, err := rd.ReadPacket(); err != nil {
					t.Fatal(err)
				}
			}); n != 1 {
				t.Errorf("%s %s: Reader.ReadPacket allocates %v times, want 1 (struct and body together)", bv.name, ps.name, n)
			}
		}
	}
}

// TestAllocsEncode: every fixture encodes into a buffer with room without allocating.
func TestAllocsEncode(t *testing.T) {
	buf := make([]byte, 0, 1<<10)
	for _, f := range fixtures {
		if n := testing.AllocsPerRun(50, func() {
			var err error
			if buf, err = f.pk.AppendTo(buf[:0], f.v); err != nil {
				t.Fatal(err)
			}
			_ = f.pk.Size(f.v)
		}); n != 0 {
			t.Errorf("%s: AppendTo and Size allocate %v times", f.name, n)
		}
	}
	for _, bv := range benchVersions {
		p := benchPublish(bv.v, 64<<10)
		if n := testing.AllocsPerRun(50, func() { buf = p.AppendHeader(buf[:0], bv.v) }); n != 0 {
			t.Errorf("%s: AppendHeader allocates %v times", bv.name, n)
		}
	}
}

// TestAllocsDecodeSmall: acknowledgements and pings decode into caller structs for free.
func TestAllocsDecodeSmall(t *testing.T) {
	for _, f := range fixtures {
		switch f.pk.Type() {
		case PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ, PINGRESP, DISCONNECT, AUTH, CONNACK, SUBACK, UNSUBACK:
		default:
			continue
		}
		fh, hl, _ := parseFixedHeader(f.raw, 0)
		body := f.raw[hl:]
		d := newPacket(f.pk.Type())
		want := 0.0
		if hasLists(f.pk) {
			want = 1 // the User Property slice
		}
		if n := testing.AllocsPerRun(50, func() { _ = d.Decode(fh.Flags, body, f.v) }); n != want {
			t.Errorf("%s: Decode allocates %v times, want %v", f.name, n, want)
		}
	}
}

func newPacket(t Type) interface {
	Decode(byte, []byte, Version) error
} {
	switch t {
	case PUBACK:
		return new(Puback)
	case PUBREC:
		return new(Pubrec)
	case PUBREL:
		return new(Pubrel)
	case PUBCOMP:
		return new(Pubcomp)
	case PINGREQ:
		return new(Pingreq)
	case PINGRESP:
		return new(Pingresp)
	case DISCONNECT:
		return new(Disconnect)
	case AUTH:
		return new(Auth)
	case CONNACK:
		return new(Connack)
	case SUBACK:
		return new(Suback)
	case UNSUBACK:
		return new(Unsuback)
	}
	return nil
}

func hasLists(pk Packet) bool {
	f := reflect.ValueOf(pk).Elem().FieldByName("Properties")
	return f.IsValid() && len(f.Interface().(Properties).User) > 0
}

// TestSizeLimitBeforeAllocation: a fixed header declaring a 268 MB packet against a 1 MiB limit
// is refused before anything the size of the body is allocated.
func TestSizeLimitBeforeAllocation(t *testing.T) {
	hdr := bs(0x30, 0xFF, 0xFF, 0xFF, 0x7F) // PUBLISH, remaining length 268,435,455
	const limit = 1 << 20

	measure := func(name string, f func() error) {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := f()
		runtime.ReadMemStats(&after)
		wantCode(t, name, err, PacketTooLarge)
		if got := after.TotalAlloc - before.TotalAlloc; got > 8<<10 {
			t.Errorf("%s: allocated %d bytes before refusing the packet", name, got)
		}
	}
	measure("ReadFixedHeader", func() error {
		_, err := ReadFixedHeader(bytes.NewReader(hdr), limit)
		return err
	})
	stream := &loopReader{data: hdr} // a peer that keeps sending
	rd := NewReader(stream, limit)
	measure("Reader.ReadPacket", func() error {
		_, err := rd.ReadPacket()
		return err
	})
	measure("Parse of the header alone", func() error {
		_, _, err := Parse(hdr, V311, limit)
		return err
	})
	if n := testing.AllocsPerRun(100, func() { _, _ = ReadFixedHeader(bytes.NewReader(hdr), limit) }); n > 6 {
		t.Errorf("refusing a large packet allocates %v times", n)
	}
}

// TestDecodeAllocationBound feeds Decode the inputs that maximise allocation per byte: lists of
// the smallest possible items. Allocation must stay within decodeAllocLimit.
func TestDecodeAllocationBound(t *testing.T) {
	const items = 20000
	rep := func(b []byte, n int) []byte { return bytes.Repeat(b, n) }
	userProps := rep(pair("", ""), items)       // 5 bytes each, 32 bytes of slice
	subIDs := rep(bs(0x0B, 1), items)           // 2 bytes each, 4 bytes of slice
	filters := rep(cat(str("a"), bs(0)), items) // 4 bytes each, 24 bytes of slice
	cases := []struct {
		name string
		v    Version
		raw  []byte
	}{
		{"PUBLISH user properties", V5, pkt(0x30, str("t"), pblock(userProps))},
		{"PUBLISH subscription identifiers", V5, pkt(0x30, str("t"), pblock(subIDs))},
		{"PUBLISH both", V5, pkt(0x30, str("t"), pblock(userProps, subIDs))},
		{"SUBSCRIBE one-character filters", V311, pkt(0x82, u16(1), filters)},
		{"SUBSCRIBE one-character filters v5", V5, pkt(0x82, u16(1), pblock(userProps), filters)},
		{"UNSUBSCRIBE one-character filters", V5, pkt(0xA2, u16(1), noProps, rep(str("a"), items))},
		{"CONNECT user properties twice", V5, conn5(0x06, pblock(userProps), str("c"), pblock(userProps), str("w"), str(""))},
		{"DISCONNECT user properties", V5, pkt(0xE0, bs(0), pblock(userProps))},
		{"SUBACK codes", V5, pkt(0x90, u16(1), noProps, rep(bs(0), items))},
		{"PUBLISH large payload", V311, pkt(0x30, str("t"), make([]byte, 1<<20))},
		{"PINGREQ", V311, bs(0xC0, 0)},
	}
	for _, tc := range cases {
		fh, hl, err := parseFixedHeader(tc.raw, 0)
		if err != nil {
			t.Fatal(err)
		}
		body := tc.raw[hl:]
		if _, err := Decode(fh, body, tc.v); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := decodeAllocBytes(fh, body, tc.v)
		limit := decodeAllocLimit(len(body))
		t.Logf("%-40s body %8d B, allocated %8d B (%.2f per body byte)", tc.name, len(body), got, float64(got)/float64(len(body)))
		if got > limit {
			t.Errorf("%s: allocated %d bytes for a %d byte body, limit %d", tc.name, got, len(body), limit)
		}
	}
	// Truncated or malformed lists allocate nothing for the list: the count comes first.
	bad := pkt(0x82, u16(1), filters[:len(filters)-1])
	fh, hl, _ := parseFixedHeader(bad, 0)
	if got := decodeAllocBytes(fh, bad[hl:], V311); got > 1024 {
		t.Errorf("truncated SUBSCRIBE allocated %d bytes", got)
	}
	if _, err := Decode(fh, bad[hl:], V311); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated SUBSCRIBE: %v", err)
	}
}

func TestNewPublishWithBody(t *testing.T) {
	for n := 0; n <= 300<<10; n += 1 + n/50 {
		p, body := newPublishWithBody(n)
		if p == nil || len(body) != n || cap(body) != n {
			t.Fatalf("n=%d: len %d cap %d", n, len(body), cap(body))
		}
		for i := range body {
			if body[i] != 0 {
				t.Fatalf("n=%d: body not zeroed", n)
			}
		}
		if n > 0 {
			body[0], body[n-1] = 1, 1 // in bounds of the box
		}
	}
	// Each box class fits: the smallest body of the next class does not fit the previous.
	for _, n := range []int{1, 64, 65, 16 << 10, 16<<10 + 1, 3*boxPage - publishSize, 3*boxPage - publishSize + 1, 32*boxPage - publishSize} {
		if _, body := newPublishWithBody(n); len(body) != n {
			t.Fatalf("n=%d", n)
		}
	}
}

// TestReaderLargeBodyGrows: a body announced above 256 KiB is allocated as it arrives, so a
// peer that announces 200 MB and sends 10 bytes does not get 200 MB allocated.
func TestReaderLargeBodyGrows(t *testing.T) {
	raw := bs(0x30, 0x80, 0x80, 0x80, 0x60, 0, 1, 't', 1, 2, 3, 4, 5, 6, 7) // 201 MB announced
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := NewReader(bytes.NewReader(raw), 0).ReadPacket()
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("ReadPacket: %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 300<<10 {
		t.Fatalf("allocated %d bytes for 10 bytes of body", got)
	}
	// A large packet that does arrive is read whole.
	payload := bytes.Repeat([]byte("0123456789"), 100_000)
	for _, v := range []Version{V311, V5} {
		in := &Publish{Topic: "big", Payload: payload}
		raw := mustEncode(t, in, v)
		rd := NewReader(iotest.HalfReader(bytes.NewReader(raw)), 0)
		rd.SetVersion(v)
		pk, err := rd.ReadPacket()
		if err != nil || !reflect.DeepEqual(pk, in) {
			t.Fatalf("%v: large PUBLISH: %v", v, err)
		}
		sub := &Subscribe{PacketID: 1}
		for i := 0; i < 40_000; i++ {
			sub.Subscriptions = append(sub.Subscriptions, Subscription{Filter: "filter/" + strconv.Itoa(i)})
		}
		raw = mustEncode(t, sub, v)
		rd = NewReader(bytes.NewReader(raw), 0)
		rd.SetVersion(v)
		if pk, err := rd.ReadPacket(); err != nil || !reflect.DeepEqual(pk, sub) {
			t.Fatalf("%v: large SUBSCRIBE (%d bytes): %v", v, len(raw), err)
		}
	}
}
