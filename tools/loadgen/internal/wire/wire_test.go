package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// encodeCases is the one table of packets the tool sends: each builder must produce
// exactly raw, and every raw packet must read back through ReadPacket.
var encodeCases = []struct {
	name  string
	build func() []byte
	raw   []byte
}{
	{"connect v311", func() []byte {
		return AppendConnect(nil, Connect{Version: V311, ClientID: "c1", KeepAlive: 60, CleanStart: true})
	}, []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'c', '1'}},
	{"connect v5", func() []byte {
		return AppendConnect(nil, Connect{Version: V5, ClientID: "c1", KeepAlive: 60, CleanStart: true})
	}, []byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 2, 'c', '1'}},
	{"connect v311 no clean", func() []byte {
		return AppendConnect(nil, Connect{Version: V311, ClientID: "", KeepAlive: 0x1234})
	}, []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0x12, 0x34, 0, 0}},
	{"subscribe v311 qos1", func() []byte { return AppendSubscribe(nil, V311, 1, "a/b", 1) },
		[]byte{0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 1}},
	{"subscribe v5 qos2", func() []byte { return AppendSubscribe(nil, V5, 0x0102, "a/b", 2) },
		[]byte{0x82, 9, 1, 2, 0, 0, 3, 'a', '/', 'b', 2}},
	{"publish v311 qos0", func() []byte { return AppendPublish(nil, V311, 0, false, "t", 99, []byte("hi")) },
		[]byte{0x30, 5, 0, 1, 't', 'h', 'i'}},
	{"publish v311 qos1", func() []byte { return AppendPublish(nil, V311, 1, false, "t", 10, []byte("hi")) },
		[]byte{0x32, 7, 0, 1, 't', 0, 10, 'h', 'i'}},
	{"publish v5 qos2 dup", func() []byte { return AppendPublish(nil, V5, 2, true, "t", 10, []byte("hi")) },
		[]byte{0x3c, 8, 0, 1, 't', 0, 10, 0, 'h', 'i'}},
	{"publish v5 qos0", func() []byte { return AppendPublish(nil, V5, 0, false, "t", 0, nil) },
		[]byte{0x30, 4, 0, 1, 't', 0}},
	{"puback", func() []byte { return AppendAck(nil, PUBACK, 0x0102) }, []byte{0x40, 2, 1, 2}},
	{"pubrec", func() []byte { return AppendAck(nil, PUBREC, 7) }, []byte{0x50, 2, 0, 7}},
	{"pubrel", func() []byte { return AppendAck(nil, PUBREL, 7) }, []byte{0x62, 2, 0, 7}},
	{"pubcomp", func() []byte { return AppendAck(nil, PUBCOMP, 65535) }, []byte{0x70, 2, 0xff, 0xff}},
	{"pingreq", func() []byte { return AppendPingreq(nil) }, []byte{0xc0, 0}},
	{"disconnect", func() []byte { return AppendDisconnect(nil) }, []byte{0xe0, 0}},
}

func TestEncode(t *testing.T) {
	for _, tc := range encodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.build()
			if !bytes.Equal(got, tc.raw) {
				t.Fatalf("got  % x\nwant % x", got, tc.raw)
			}
		})
	}
}

func TestReadPacketAllFixtures(t *testing.T) {
	var stream []byte
	for _, tc := range encodeCases {
		stream = append(stream, tc.raw...)
	}
	// One byte per read, and a buffer smaller than some packets, so both the Peek path
	// and the scratch path see packets split at every point.
	for _, size := range []int{16, 4096} {
		r := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(stream)), size)
		var scratch []byte
		for _, tc := range encodeCases {
			hdr, body, err := ReadPacket(r, &scratch, 1<<20)
			if err != nil {
				t.Fatalf("size %d %s: %v", size, tc.name, err)
			}
			n, used, _ := Varint(tc.raw[1:])
			if hdr != tc.raw[0] || !bytes.Equal(body, tc.raw[1+used:1+used+n]) {
				t.Fatalf("size %d %s: got %#x % x", size, tc.name, hdr, body)
			}
		}
		if _, _, err := ReadPacket(r, &scratch, 1<<20); err != io.EOF {
			t.Fatalf("size %d: want io.EOF at end, got %v", size, err)
		}
	}
}

func TestReadPacketErrors(t *testing.T) {
	cases := []struct {
		name string
		raw  []byte
		max  int
		want error
	}{
		{"truncated body", []byte{0x30, 5, 0, 1}, 100, io.ErrUnexpectedEOF},
		{"truncated length", []byte{0x30, 0x80}, 100, io.ErrUnexpectedEOF},
		{"5-byte length", []byte{0x30, 0x80, 0x80, 0x80, 0x80, 1}, 1 << 30, ErrMalformed},
		{"over limit", []byte{0x30, 0x80, 0x01}, 127, ErrTooLarge},
	}
	for _, tc := range cases {
		var scratch []byte
		_, _, err := ReadPacket(bufio.NewReader(bytes.NewReader(tc.raw)), &scratch, tc.max)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if tc.want == ErrTooLarge && cap(scratch) != 0 {
			t.Errorf("%s: allocated %d bytes before the size check", tc.name, cap(scratch))
		}
	}
}

func TestVarint(t *testing.T) {
	for _, tc := range []struct {
		n   int
		raw []byte
	}{
		{0, []byte{0}}, {127, []byte{0x7f}}, {128, []byte{0x80, 1}}, {16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 1}}, {2097151, []byte{0xff, 0xff, 0x7f}},
		{2097152, []byte{0x80, 0x80, 0x80, 1}}, {MaxRemainingLength, []byte{0xff, 0xff, 0xff, 0x7f}},
	} {
		if got := AppendVarint(nil, tc.n); !bytes.Equal(got, tc.raw) {
			t.Errorf("AppendVarint(%d) = % x, want % x", tc.n, got, tc.raw)
		}
		if l := varintLen(tc.n); l != len(tc.raw) {
			t.Errorf("varintLen(%d) = %d, want %d", tc.n, l, len(tc.raw))
		}
		n, used, err := Varint(tc.raw)
		if err != nil || n != tc.n || used != len(tc.raw) {
			t.Errorf("Varint(% x) = %d, %d, %v", tc.raw, n, used, err)
		}
	}
}

func TestPublishSize(t *testing.T) {
	for _, v := range []byte{V311, V5} {
		for q := byte(0); q <= 2; q++ {
			for _, n := range []int{0, 16, 200, 20000} {
				got := len(AppendPublish(nil, v, q, false, "load/t", 1, make([]byte, n)))
				if want := PublishSize(v, q, "load/t", n); got != want {
					t.Errorf("v%d q%d n%d: PublishSize %d, encoded %d", v, q, n, want, got)
				}
			}
		}
	}
}

func TestParsePublishRoundTrip(t *testing.T) {
	payload := []byte("0123456789abcdef-payload")
	for _, v := range []byte{V311, V5} {
		for q := byte(0); q <= 2; q++ {
			raw := AppendPublish(nil, v, q, q == 2, "load/p/7", 4242, payload)
			var scratch []byte
			hdr, body, err := ReadPacket(bufio.NewReader(bytes.NewReader(raw)), &scratch, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParsePublish(hdr, body, v)
			if err != nil {
				t.Fatalf("v%d q%d: %v", v, q, err)
			}
			wantID := uint16(4242)
			if q == 0 {
				wantID = 0
			}
			if p.QoS != q || p.Dup != (q == 2) || string(p.Topic) != "load/p/7" || p.PacketID != wantID || !bytes.Equal(p.Payload, payload) {
				t.Fatalf("v%d q%d: got %+v", v, q, p)
			}
		}
	}
}

func TestParsePublishV5Properties(t *testing.T) {
	// Topic "t", packet id 5, properties: payload format 1 (0x01 01), message expiry 60
	// (0x02 00 00 00 3c), user property k=v; then payload "x".
	body := []byte{0, 1, 't', 0, 5, 14, 0x01, 1, 0x02, 0, 0, 0, 60, 0x26, 0, 1, 'k', 0, 1, 'v', 'x'}
	p, err := ParsePublish(0x32, body, V5)
	if err != nil || string(p.Payload) != "x" || p.PacketID != 5 {
		t.Fatalf("got %+v, %v", p, err)
	}
}

func TestParsePublishMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  byte
		body []byte
		v    byte
	}{
		{"qos3", 0x36, []byte{0, 1, 't', 0, 1}, V311},
		{"empty", 0x30, nil, V311},
		{"topic over body", 0x30, []byte{0, 9, 't'}, V311},
		{"qos1 no id", 0x32, []byte{0, 1, 't', 0}, V311},
		{"v5 no property length", 0x30, []byte{0, 1, 't'}, V5},
		{"v5 property length over body", 0x30, []byte{0, 1, 't', 9, 1}, V5},
	} {
		if _, err := ParsePublish(tc.hdr, tc.body, tc.v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", tc.name, err)
		}
	}
}

func TestParseConnack(t *testing.T) {
	c, err := ParseConnack([]byte{0, 0}, V311)
	if err != nil || c.Code != 0 || c.ReceiveMaximum != 65535 || c.MaximumQoS != 2 {
		t.Fatalf("v311: %+v %v", c, err)
	}
	if c, _ := ParseConnack([]byte{1, 5}, V311); !c.SessionPresent || c.Code != 5 {
		t.Fatalf("v311 refused: %+v", c)
	}
	// v5: receive maximum 20, maximum QoS 1, assigned client id "ab", topic alias max 10.
	body := []byte{0, 0, 13, 0x21, 0, 20, 0x24, 1, 0x12, 0, 2, 'a', 'b', 0x22, 0, 10}
	c, err = ParseConnack(body, V5)
	if err != nil || c.ReceiveMaximum != 20 || c.MaximumQoS != 1 {
		t.Fatalf("v5: %+v %v", c, err)
	}
	if _, err := ParseConnack([]byte{0, 0, 3, 0x21, 0}, V5); !errors.Is(err, ErrMalformed) {
		t.Fatalf("v5 truncated property: %v", err)
	}
	if _, err := ParseConnack([]byte{0, 0, 2, 0x7f, 0}, V5); !errors.Is(err, ErrMalformed) {
		t.Fatalf("v5 unknown property: %v", err)
	}
	if _, err := ParseConnack([]byte{0}, V311); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short: %v", err)
	}
}

func TestParseSuback(t *testing.T) {
	id, codes, err := ParseSuback([]byte{0, 1, 1}, V311)
	if err != nil || id != 1 || !bytes.Equal(codes, []byte{1}) {
		t.Fatalf("v311: %d % x %v", id, codes, err)
	}
	id, codes, err = ParseSuback([]byte{0, 2, 0, 0x80}, V5)
	if err != nil || id != 2 || !bytes.Equal(codes, []byte{0x80}) {
		t.Fatalf("v5: %d % x %v", id, codes, err)
	}
	if _, _, err := ParseSuback([]byte{0, 2, 0}, V5); !errors.Is(err, ErrMalformed) {
		t.Fatalf("v5 without codes: %v", err)
	}
}

func TestParseAck(t *testing.T) {
	id, rc, err := ParseAck([]byte{1, 2})
	if err != nil || id != 0x0102 || rc != 0 {
		t.Fatal(id, rc, err)
	}
	id, rc, err = ParseAck([]byte{0, 9, 0x10, 0})
	if err != nil || id != 9 || rc != 0x10 {
		t.Fatal(id, rc, err)
	}
	if _, _, err := ParseAck([]byte{1}); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
	if DisconnectReason(nil) != 0 || DisconnectReason([]byte{0x8b, 0}) != 0x8b {
		t.Fatal("DisconnectReason")
	}
}

// FuzzDecode checks that no input makes the decoders panic; the seeds are the fixtures.
func FuzzDecode(f *testing.F) {
	for _, tc := range encodeCases {
		f.Add(tc.raw, byte(4))
		f.Add(tc.raw, byte(5))
	}
	f.Fuzz(func(t *testing.T, raw []byte, v byte) {
		r := bufio.NewReaderSize(bytes.NewReader(raw), 16)
		var scratch []byte
		for {
			hdr, body, err := ReadPacket(r, &scratch, 1<<16)
			if err != nil {
				return
			}
			_, _ = ParsePublish(hdr, body, v)
			_, _ = ParseConnack(body, v)
			_, _, _ = ParseSuback(body, v)
			_, _, _ = ParseAck(body)
		}
	})
}

func TestRESPEncode(t *testing.T) {
	got := string(AppendCommand(nil, []byte("SUBSCRIBE"), []byte("ch")))
	if want := "*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n"; got != want {
		t.Fatalf("AppendCommand = %q, want %q", got, want)
	}
	got = string(AppendPublishCommand(nil, "ch", []byte("p\r\n")))
	want := string(AppendCommand(nil, []byte("PUBLISH"), []byte("ch"), []byte("p\r\n")))
	if got != want || want != "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$3\r\np\r\n\r\n" {
		t.Fatalf("AppendPublishCommand = %q, want %q", got, want)
	}
}

func TestRESPRead(t *testing.T) {
	stream := ":3\r\n" +
		"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n" +
		"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\na\r\nbc\r\n" +
		"+OK\r\n" +
		"$-1\r\n" +
		"-ERR wrong\r\n"
	for _, size := range []int{16, 4096} {
		rr := NewRESPReader(bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(stream)), size), 1<<20)
		r, err := rr.Read()
		if err != nil || r.Kind != ':' || r.Int != 3 {
			t.Fatalf("int: %+v %v", r, err)
		}
		r, err = rr.Read()
		if err != nil || r.Kind != '*' || len(r.Elems) != 3 || string(r.Elems[0]) != "subscribe" || string(r.Elems[2]) != "1" {
			t.Fatalf("subscribe: %+v %v", r, err)
		}
		r, err = rr.Read()
		if err != nil || len(r.Elems) != 3 || string(r.Elems[0]) != "message" || string(r.Elems[1]) != "ch" || string(r.Elems[2]) != "a\r\nbc" {
			t.Fatalf("message: %q %v", r.Elems, err)
		}
		r, err = rr.Read()
		if err != nil || r.Kind != '+' || string(r.Str) != "OK" {
			t.Fatalf("simple: %+v %v", r, err)
		}
		r, err = rr.Read()
		if err != nil || r.Kind != '$' || r.Str != nil {
			t.Fatalf("null bulk: %+v %v", r, err)
		}
		if _, err = rr.Read(); !errors.Is(err, ErrRedis) || !strings.Contains(err.Error(), "ERR wrong") {
			t.Fatalf("error reply: %v", err)
		}
		if _, err = rr.Read(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	}
}

func TestRESPReadMalformed(t *testing.T) {
	for _, s := range []string{"?x\r\n", ":12a\r\n", "$3\r\nabcd\r\n", "*1\r\n*1\r\n", "$5\r\nab", ":1\n", "$999\r\n"} {
		rr := NewRESPReader(bufio.NewReader(strings.NewReader(s)), 100)
		if _, err := rr.Read(); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

// BenchmarkReadPublish is the subscriber's per-message decode cost: one PUBLISH read
// from a buffered stream and parsed, by payload size.
func BenchmarkReadPublish(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			one := AppendPublish(nil, V311, 1, false, "loadgen/123-abc/t", 7, make([]byte, size))
			stream := bytes.Repeat(one, 1000)
			rd := bytes.NewReader(stream)
			r := bufio.NewReaderSize(rd, 64<<10)
			var scratch []byte
			b.SetBytes(int64(len(one)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if i%1000 == 0 {
					rd.Reset(stream)
					r.Reset(rd)
				}
				hdr, body, err := ReadPacket(r, &scratch, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ParsePublish(hdr, body, V311); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendPublish is the publisher's per-message encode cost.
func BenchmarkAppendPublish(b *testing.B) {
	payload := make([]byte, 64)
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(AppendPublish(nil, V311, 1, false, "loadgen/123-abc/t", 7, payload))))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendPublish(buf[:0], V311, 1, false, "loadgen/123-abc/t", uint16(i), payload)
	}
}

// A v5 CONNECT with a session expiry decodes (with the project's codec's rules, by hand: the
// property block is 0x11 and four bytes) and a persistent 3.1.1 CONNECT clears the clean flag.
func TestConnectSessionExpiry(t *testing.T) {
	b := AppendConnect(nil, Connect{Version: V5, ClientID: "c", KeepAlive: 30, CleanStart: true, SessionExpiry: 3600})
	want := []byte{CONNECT << 4, 19, 0, 4, 'M', 'Q', 'T', 'T', V5, 0x02, 0, 30, 5, 0x11, 0, 0, 0x0e, 0x10, 0, 1, 'c'}
	if string(b) != string(want) {
		t.Fatalf("got % x\nwant % x", b, want)
	}
	b = AppendConnect(nil, Connect{Version: V311, ClientID: "c", KeepAlive: 30})
	if b[9] != 0 {
		t.Fatalf("3.1.1 persistent CONNECT flags %#x, want 0", b[9])
	}
}
