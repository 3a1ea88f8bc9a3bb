package mqtt

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// readerVersion is the version a Reader must be set to before reading f: a CONNECT sets it.
func readerVersion(f fixture) Version {
	if f.pk.Type() == CONNECT {
		return 0
	}
	return f.v
}

func decodeRaw(t *testing.T, raw []byte, v Version) Packet {
	t.Helper()
	pk, n, err := Parse(raw, v, 0)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if n != len(raw) {
		t.Fatalf("Parse used %d of %d bytes", n, len(raw))
	}
	return pk
}

func TestFixturesDecode(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			got := decodeRaw(t, f.raw, f.v)
			if !reflect.DeepEqual(got, f.pk) {
				t.Fatalf("decoded\n%#v\nwant\n%#v", got, f.pk)
			}
			// The packet's own Decode into a dirty struct resets it first.
			dirty := reflect.New(reflect.TypeOf(f.pk).Elem())
			fillDirty(dirty.Elem())
			d := dirty.Interface().(interface {
				Decode(byte, []byte, Version) error
			})
			fh, hl, err := parseFixedHeader(f.raw, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Decode(fh.Flags, f.raw[hl:], f.v); err != nil {
				t.Fatalf("Decode into dirty struct: %v", err)
			}
			if !reflect.DeepEqual(d, f.pk) {
				t.Fatalf("Decode into a used struct kept old fields:\n%#v", d)
			}
		})
	}
}

// fillDirty sets every settable field of v to something non-zero.
func fillDirty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				fillDirty(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("dirty")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	}
}

func TestFixturesEncode(t *testing.T) {
	for _, f := range fixtures {
		if f.decodeOnly {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			prefix := []byte("prefix")
			got, err := f.pk.AppendTo(append([]byte(nil), prefix...), f.v)
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			if !bytes.HasPrefix(got, prefix) {
				t.Fatal("AppendTo overwrote dst")
			}
			if got = got[len(prefix):]; !bytes.Equal(got, f.raw) {
				t.Fatalf("encoded\n% x\nwant\n% x", got, f.raw)
			}
			if n := f.pk.Size(f.v); n != len(f.raw) {
				t.Fatalf("Size = %d, encoding is %d bytes", n, len(f.raw))
			}
			if p, ok := f.pk.(*Publish); ok {
				hdr := p.AppendHeader(nil, f.v)
				if !bytes.Equal(append(hdr, p.Payload...), f.raw) {
					t.Fatalf("AppendHeader + payload = % x", hdr)
				}
			}
		})
	}
}

func TestFixturesRoundTrip(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			enc, err := f.pk.AppendTo(nil, f.v)
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			got := decodeRaw(t, enc, f.v)
			if !reflect.DeepEqual(got, f.pk) {
				t.Fatalf("round trip\n%#v\nwant\n%#v", got, f.pk)
			}
		})
	}
}

func wantCode(t *testing.T, what string, err error, code ReasonCode) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %v, want a *Error with code 0x%02X", what, err, byte(code))
	}
	if e.Code != code {
		t.Fatalf("%s: code 0x%02X (%v), want 0x%02X", what, byte(e.Code), e, byte(code))
	}
	if !errors.Is(err, &Error{Code: code}) {
		t.Fatalf("%s: errors.Is does not match the sentinel", what)
	}
}

func TestMalformed(t *testing.T) {
	if len(malformedCases) < 40 {
		t.Fatalf("only %d malformed cases", len(malformedCases))
	}
	seen := map[string]bool{}
	for _, m := range malformedCases {
		if seen[m.name] {
			t.Fatalf("duplicate case name %q", m.name)
		}
		seen[m.name] = true
		t.Run(m.name, func(t *testing.T) {
			_, _, err := Parse(m.raw, m.v, m.max)
			wantCode(t, "Parse", err, m.code)

			rd := NewReader(bytes.NewReader(m.raw), m.max)
			if m.raw[0]>>4 != byte(CONNECT) {
				rd.SetVersion(m.v)
			}
			_, err = rd.ReadPacket()
			wantCode(t, "Reader", err, m.code)

			// One byte at a time gives the same answer.
			rd = NewReader(iotest.OneByteReader(bytes.NewReader(m.raw)), m.max)
			rd.SetVersion(m.v)
			_, err = rd.ReadPacket()
			wantCode(t, "Reader, one byte at a time", err, m.code)
		})
	}
}

func TestUnsupportedVersionKeepsVersion(t *testing.T) {
	raw := pkt(0x10, str("MQTT"), bs(6, 2), u16(0), noProps, str("c"))
	rd := NewReader(bytes.NewReader(raw), 0)
	pk, err := rd.ReadPacket()
	wantCode(t, "ReadPacket", err, UnsupportedProtocolVersion)
	c, ok := pk.(*Connect)
	if !ok || c.Version != 6 || c.ProtocolName != "MQTT" {
		t.Fatalf("packet %#v: want the Connect with Version 6", pk)
	}
	if rd.Version() != 0 {
		t.Fatalf("reader version %v after an unsupported CONNECT", rd.Version())
	}

	// A v5 CONNECT that fails later still tells the reader (and caller) its version.
	raw = conn5(0x03, noProps, str("c"))
	rd = NewReader(bytes.NewReader(raw), 0)
	pk, err = rd.ReadPacket()
	wantCode(t, "ReadPacket", err, MalformedPacket)
	if pk.(*Connect).Version != V5 || rd.Version() != V5 {
		t.Fatalf("version lost: packet %v, reader %v", pk.(*Connect).Version, rd.Version())
	}
}

func TestTopicNameInvalidKeepsPacketID(t *testing.T) {
	var p Publish
	err := p.Decode(0x02, cat(str("a/+"), u16(42), noProps), V5)
	wantCode(t, "Decode", err, TopicNameInvalid)
	if p.PacketID != 42 {
		t.Fatalf("PacketID %d, want 42 so the server can answer with PUBACK 0x90", p.PacketID)
	}
}

// TestReaderSequence reads every fixture of a version from one stream, one byte at a time,
// checking that the reader picks its version up from CONNECT.
func TestReaderSequence(t *testing.T) {
	for _, v := range []Version{V31, V311, V5} {
		var stream []byte
		var want []Packet
		var connect []byte
		for _, f := range fixtures {
			if f.v != v {
				continue
			}
			if f.pk.Type() == CONNECT && connect == nil {
				connect = f.raw
				continue
			}
			stream = append(stream, f.raw...)
			want = append(want, f.pk)
		}
		rd := NewReader(iotest.OneByteReader(bytes.NewReader(append(append([]byte(nil), connect...), stream...))), 0)
		if _, err := rd.ReadPacket(); err != nil || rd.Version() != v {
			t.Fatalf("%v: CONNECT: %v, version %v", v, err, rd.Version())
		}
		for i, w := range want {
			pk, err := rd.ReadPacket()
			if err != nil {
				t.Fatalf("%v: packet %d (%s): %v", v, i, w.Type(), err)
			}
			if !reflect.DeepEqual(pk, w) {
				t.Fatalf("%v: packet %d\n%#v\nwant\n%#v", v, i, pk, w)
			}
		}
		if _, err := rd.ReadPacket(); err != io.EOF {
			t.Fatalf("%v: after the last packet: %v, want io.EOF", v, err)
		}
	}
}

// TestSplitReads feeds each fixture one byte at a time through Reader, and to Parse as every
// prefix, which must be ErrIncomplete until the packet is whole.
func TestSplitReads(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			rd := NewReader(iotest.OneByteReader(bytes.NewReader(f.raw)), 0)
			rd.SetVersion(readerVersion(f))
			pk, err := rd.ReadPacket()
			if err != nil {
				t.Fatalf("ReadPacket: %v", err)
			}
			if !reflect.DeepEqual(pk, f.pk) {
				t.Fatalf("ReadPacket\n%#v\nwant\n%#v", pk, f.pk)
			}
			if f.pk.Type() == CONNECT && rd.Version() != f.v {
				t.Fatalf("reader version %v after CONNECT, want %v", rd.Version(), f.v)
			}

			for i := 0; i < len(f.raw); i++ {
				// A copy of exactly i bytes, so reading past it would be caught by the race
				// detector's bounds checks rather than read the rest of f.raw.
				prefix := append([]byte(nil), f.raw[:i]...)
				if pk, n, err := Parse(prefix, f.v, 0); err != ErrIncomplete || pk != nil || n != 0 {
					t.Fatalf("Parse of %d/%d bytes: %v, %d, %v; want ErrIncomplete", i, len(f.raw), pk, n, err)
				}
				// Cut short, the stream ends in io.ErrUnexpectedEOF (or io.EOF before the first byte).
				rd := NewReader(iotest.OneByteReader(bytes.NewReader(prefix)), 0)
				rd.SetVersion(readerVersion(f))
				_, err := rd.ReadPacket()
				if want := io.ErrUnexpectedEOF; i == 0 && err != io.EOF || i > 0 && err != want {
					t.Fatalf("ReadPacket of %d/%d bytes: %v", i, len(f.raw), err)
				}
			}
			// Followed by more bytes, Parse takes only its packet.
			buf := append(append([]byte(nil), f.raw...), 0xC0, 0)
			pk, n, err := Parse(buf, f.v, 0)
			if err != nil || n != len(f.raw) || !reflect.DeepEqual(pk, f.pk) {
				t.Fatalf("Parse with trailing data: %v, n=%d", err, n)
			}
		})
	}
}

func TestReadFixedHeader(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		max  int
		want FixedHeader
		err  error
	}{
		{bs(0x30, 0), 0, FixedHeader{Type: PUBLISH}, nil},
		{bs(0x3D, 0x7F), 0, FixedHeader{Type: PUBLISH, Flags: 0xD, Remaining: 127}, nil},
		{bs(0x30, 0x80, 0x01), 0, FixedHeader{Type: PUBLISH, Remaining: 128}, nil},
		{bs(0x30, 0xFF, 0x7F), 0, FixedHeader{Type: PUBLISH, Remaining: 16383}, nil},
		{bs(0x30, 0x80, 0x80, 0x01), 0, FixedHeader{Type: PUBLISH, Remaining: 16384}, nil},
		{bs(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 0, FixedHeader{Type: PUBLISH, Remaining: MaxRemainingLength}, nil},
		{bs(0x30, 0x7E), 128, FixedHeader{Type: PUBLISH, Remaining: 126}, nil}, // 128 bytes in all
		{bs(0x30, 0x7F), 128, FixedHeader{Type: PUBLISH, Remaining: 127}, ErrPacketTooLarge},
		{bs(), 0, FixedHeader{}, io.EOF},
		{bs(0x30), 0, FixedHeader{Type: PUBLISH}, io.ErrUnexpectedEOF},
		{bs(0x30, 0x80), 0, FixedHeader{Type: PUBLISH}, io.ErrUnexpectedEOF},
		{bs(0x30, 0x80, 0x80, 0x80, 0x80), 0, FixedHeader{Type: PUBLISH}, ErrMalformed},
	} {
		got, err := ReadFixedHeader(bytes.NewReader(tc.in), tc.max)
		if !errors.Is(err, tc.err) && err != tc.err {
			t.Errorf("% x: error %v, want %v", tc.in, err, tc.err)
		}
		if got != tc.want {
			t.Errorf("% x: %+v, want %+v", tc.in, got, tc.want)
		}
	}
	// Other reader errors pass through.
	boom := errors.New("boom")
	if _, err := ReadFixedHeader(bytes.NewReader(nil), 0); err != io.EOF {
		t.Fatal(err)
	}
	if _, err := NewReader(iotest.ErrReader(boom), 0).ReadPacket(); err != boom {
		t.Fatalf("ReadPacket: %v, want the reader's error", err)
	}
}

func TestVarint(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, MaxRemainingLength} {
		b := AppendVarint(nil, n)
		if !bytes.Equal(b, vbi(n)) || len(b) != VarintSize(n) {
			t.Fatalf("%d: % x (size %d)", n, b, VarintSize(n))
		}
		v, used := consumeVarint(b)
		if v != n || used != len(b) {
			t.Fatalf("%d: decoded %d from %d bytes", n, v, used)
		}
		if len(b) > 1 {
			if _, used := consumeVarint(b[:len(b)-1]); used != 0 {
				t.Fatalf("%d: truncated varint not incomplete", n)
			}
		}
	}
	if VarintSize(MaxRemainingLength+1) != 5 {
		t.Fatal("VarintSize above the maximum")
	}
}

func TestCheckString(t *testing.T) {
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"", true},
		{"a/b", true},
		{"\u00e9\u4e16\U0001F600", true},
		{"\x01\x1f\x7f\u0080\u009f", true}, // control characters: SHOULD NOT, not MUST NOT
		{"\ufeff", true},                   // BOM kept as is [MQTT-1.5.4-3]
		{"\uffff\U0010FFFF", true},         // non-characters are allowed
		{"a\x00b", false},                  // [MQTT-1.5.4-2]
		{"\xed\xa0\x80", false},            // U+D800, a surrogate [MQTT-1.5.4-1]
		{"\xed\xbf\xbf", false},            // U+DFFF
		{"\xc0\x80", false},                // overlong U+0000
		{"\xe0\x80\xaf", false},            // overlong '/'
		{"\xf4\x90\x80\x80", false},        // above U+10FFFF
		{"\xff", false},
		{"\xc3", false},                            // truncated sequence
		{strings.Repeat("a", 100) + "\x00", false}, // long strings take the vectorised path
		{strings.Repeat("a", 100) + "\xed\xa0\x80", false},
		{strings.Repeat("\u00e9", 100), true},
		{strings.Repeat("a", 65535), true},
		{strings.Repeat("a", 65536), false},
	} {
		err := CheckString(tc.s)
		if (err == nil) != tc.ok {
			t.Errorf("CheckString(%q) = %v", tc.s, err)
		}
		if err != nil {
			wantCode(t, "CheckString", err, MalformedPacket)
		}
		if err2 := CheckStringBytes([]byte(tc.s)); (err2 == nil) != tc.ok {
			t.Errorf("CheckStringBytes(%q) = %v", tc.s, err2)
		}
	}
}

func TestPropertyAllowedTable(t *testing.T) {
	// Spot checks against table 2-4 of the 5.0 specification.
	for _, tc := range []struct {
		t  Type
		id PropID
		ok bool
	}{
		{PUBLISH, PropTopicAlias, true}, {CONNECT, PropTopicAlias, false},
		{willPropertiesPseudoPacket, PropWillDelay, true}, {CONNECT, PropWillDelay, false},
		{PUBLISH, PropWillDelay, false}, {SUBSCRIBE, PropSubscriptionID, true},
		{SUBACK, PropSubscriptionID, false}, {CONNACK, PropAssignedClientID, true},
		{DISCONNECT, PropServerReference, true}, {AUTH, PropAuthMethod, true},
		{PINGREQ, PropUserProperty, false}, {UNSUBSCRIBE, PropReasonString, false},
		{willPropertiesPseudoPacket, PropSessionExpiry, false},
	} {
		if PropertyAllowed(tc.t, tc.id) != tc.ok {
			t.Errorf("PropertyAllowed(%s, %s) != %v", packetName(tc.t), tc.id, tc.ok)
		}
	}
	// User Property is everywhere properties are.
	for tt := Type(0); tt <= AUTH; tt++ {
		if tt == PINGREQ || tt == PINGRESP {
			continue
		}
		if !PropertyAllowed(tt, PropUserProperty) {
			t.Errorf("User Property not allowed in %s", packetName(tt))
		}
	}
}

func TestPropertiesValidate(t *testing.T) {
	ok := connectProps
	if err := ok.Validate(CONNECT); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		t    Type
		p    Properties
		code ReasonCode
	}{
		{"not allowed", CONNECT, Properties{Present: props(PropTopicAlias), TopicAlias: 1}, MalformedPacket},
		{"unknown", PUBLISH, Properties{Present: 1 << 4}, MalformedPacket},
		{"range", CONNACK, Properties{Present: props(PropMaximumQoS), MaximumQoS: 2}, ProtocolError},
		{"bad string", PUBLISH, Properties{Present: props(PropContentType), ContentType: "\xff"}, MalformedPacket},
		{"bad user", PUBLISH, Properties{User: []UserProperty{{"k", "\x00"}}}, MalformedPacket},
		{"two subscription ids", SUBSCRIBE, Properties{SubscriptionIDs: []uint32{1, 2}}, ProtocolError},
		{"subscription id too big", PUBLISH, Properties{SubscriptionIDs: []uint32{MaxRemainingLength + 1}}, MalformedPacket},
		{"subscription ids in SUBACK", SUBACK, Properties{SubscriptionIDs: []uint32{1}}, MalformedPacket},
	} {
		wantCode(t, tc.name, tc.p.Validate(tc.t), tc.code)
	}
}

func TestEncodeErrors(t *testing.T) {
	long := strings.Repeat("x", 65536)
	for _, tc := range []struct {
		name string
		pk   Packet
		v    Version
	}{
		{"AUTH in 3.1.1", &Auth{}, V311},
		{"unknown version", &Publish{Topic: "t"}, 0},
		{"unknown version ping", &Pingreq{}, 6},
		{"publish qos 3", &Publish{Topic: "t", QoS: 3, PacketID: 1}, V5},
		{"publish qos 1 id 0", &Publish{Topic: "t", QoS: 1}, V311},
		{"publish qos 0 dup", &Publish{Topic: "t", Dup: true}, V311},
		{"publish empty topic 3.1.1", &Publish{Properties: Properties{Present: props(PropTopicAlias), TopicAlias: 1}}, V311},
		{"publish empty topic no alias", &Publish{}, V5},
		{"publish topic too long", &Publish{Topic: long}, V311},
		{"publish disallowed property", &Publish{Topic: "t", Properties: Properties{Present: props(PropSessionExpiry)}}, V5},
		{"publish topic alias 0", &Publish{Topic: "t", Properties: Properties{Present: props(PropTopicAlias)}}, V5},
		{"publish user property too long", &Publish{Topic: "t", Properties: Properties{User: []UserProperty{{long, ""}}}}, V5},
		{"connect will qos 3", &Connect{WillFlag: true, WillQoS: 3, WillTopic: "w"}, V311},
		{"connect will qos without will", &Connect{WillQoS: 1}, V5},
		{"connect password without user 3.1.1", &Connect{PasswordFlag: true}, V311},
		{"connect client id too long", &Connect{ClientID: long}, V5},
		{"connect bad will property", &Connect{WillFlag: true, WillTopic: "w", WillProperties: Properties{Present: props(PropTopicAlias), TopicAlias: 1}}, V5},
		{"connack v5 code in 3.1.1 without equivalent", &Connack{ReasonCode: QuotaExceeded}, V311},
		{"connack invalid v5 code", &Connack{ReasonCode: NoMatchingSubscribers}, V5},
		{"connack session present with error", &Connack{SessionPresent: true, ReasonCode: NotAuthorized}, V5},
		{"puback bad code", &Puback{PacketID: 1, ReasonCode: PacketIdentifierNotFound}, V5},
		{"pubrel bad code", &Pubrel{PacketID: 1, ReasonCode: NoMatchingSubscribers}, V5},
		{"subscribe no filters", &Subscribe{PacketID: 1}, V5},
		{"subscribe id 0", &Subscribe{Subscriptions: []Subscription{{Filter: "a"}}}, V5},
		{"subscribe empty filter", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{}}}, V5},
		{"subscribe qos 3", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", QoS: 3}}}, V311},
		{"subscribe retain handling 3", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", RetainHandling: 3}}}, V5},
		{"subscribe two subscription ids", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a"}}, Properties: Properties{SubscriptionIDs: []uint32{1, 2}}}, V5},
		{"suback no codes", &Suback{PacketID: 1}, V5},
		{"suback bad code", &Suback{PacketID: 1, ReasonCodes: []ReasonCode{0x10}}, V5},
		{"suback bad 3.1.1 code", &Suback{PacketID: 1, ReasonCodes: []ReasonCode{3}}, V311},
		{"unsubscribe no filters", &Unsubscribe{PacketID: 1}, V311},
		{"unsubscribe empty filter", &Unsubscribe{PacketID: 1, Filters: []string{""}}, V311},
		{"unsuback no codes", &Unsuback{PacketID: 1}, V5},
		{"unsuback bad code", &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{0x92}}, V5},
		{"disconnect bad code", &Disconnect{ReasonCode: 0x01}, V5},
		{"auth bad code", &Auth{ReasonCode: 0x01}, V5},
	} {
		dst := []byte("keep")
		out, err := tc.pk.AppendTo(dst, tc.v)
		if !errors.Is(err, ErrInvalidPacket) {
			t.Errorf("%s: AppendTo error %v, want ErrInvalidPacket", tc.name, err)
		}
		if string(out) != "keep" {
			t.Errorf("%s: AppendTo changed dst on error: %q", tc.name, out)
		}
		if n := tc.pk.Size(tc.v); n != -1 && tc.pk.Type() != PINGREQ {
			t.Errorf("%s: Size = %d, want -1", tc.name, n)
		}
		if p, ok := tc.pk.(*Publish); ok {
			if h := p.AppendHeader(dst, tc.v); string(h) != "keep" {
				t.Errorf("%s: AppendHeader appended % x", tc.name, h)
			}
		}
	}
}

// TestEncodeConversions covers encodings that are deliberately not the identity: 5.0 fields
// dropped in 3.x and reason codes translated.
func TestEncodeConversions(t *testing.T) {
	pubProps := Properties{Present: props(PropMessageExpiry), MessageExpiry: 5}
	for _, tc := range []struct {
		name string
		pk   Packet
		v    Version
		raw  []byte
	}{
		{"publish properties dropped in 3.1.1", &Publish{Topic: "t", Properties: pubProps}, V311, pkt(0x30, str("t"))},
		{"publish packet id ignored at qos 0", &Publish{Topic: "t", PacketID: 9}, V311, pkt(0x30, str("t"))},
		{"puback reason dropped in 3.1.1", &Puback{PacketID: 1, ReasonCode: QuotaExceeded, Properties: ackProps}, V311, bs(0x40, 2, 0, 1)},
		{"suback failures become 0x80 in 3.1.1", &Suback{PacketID: 1, ReasonCodes: []ReasonCode{1, TopicFilterInvalid, NotAuthorized}}, V311, bs(0x90, 5, 0, 1, 1, 0x80, 0x80)},
		{"connack 5.0 code in 3.1.1", &Connack{ReasonCode: BadUserNameOrPassword}, V311, bs(0x20, 2, 0, 4)},
		{"connack banned in 3.1.1", &Connack{ReasonCode: Banned}, V311, bs(0x20, 2, 0, 5)},
		{"connack 3.1 has no session present", &Connack{SessionPresent: true}, V31, bs(0x20, 2, 0, 0)},
		{"subscribe 5.0 options dropped in 3.1.1", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", QoS: 1, NoLocal: true, RetainHandling: 2}}}, V311, pkt(0x82, u16(1), str("a"), bs(1))},
		{"unsuback codes dropped in 3.1.1", &Unsuback{PacketID: 2, ReasonCodes: []ReasonCode{0x11}}, V311, bs(0xB0, 2, 0, 2)},
		{"disconnect reason dropped in 3.1.1", &Disconnect{ReasonCode: ServerShuttingDown}, V311, bs(0xE0, 0)},
		{"disconnect reason only", &Disconnect{ReasonCode: ServerShuttingDown}, V5, bs(0xE0, 1, 0x8B)},
		{"auth reason without properties", &Auth{ReasonCode: ReAuthenticate}, V5, bs(0xF0, 2, 0x19, 0)},
		{"connect 3.1 protocol name", &Connect{ClientID: "c", CleanStart: true}, V31, pkt(0x10, str("MQIsdp"), bs(3, 2), u16(0), str("c"))},
		{"connect version from argument", &Connect{ProtocolName: "MQIsdp", Version: V31, ClientID: "c"}, V311, pkt(0x10, str("MQTT"), bs(4, 0), u16(0), str("c"))},
		{"user property bit follows the slice", &Publish{Topic: "t", Properties: Properties{User: []UserProperty{{"a", "b"}}}}, V5, pkt(0x30, str("t"), pblock(pair("a", "b")))},
	} {
		got, err := tc.pk.AppendTo(nil, tc.v)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !bytes.Equal(got, tc.raw) {
			t.Errorf("%s: % x, want % x", tc.name, got, tc.raw)
		}
		if n := tc.pk.Size(tc.v); n != len(got) {
			t.Errorf("%s: Size %d, encoding %d", tc.name, n, len(got))
		}
	}
}

func TestDecodeArguments(t *testing.T) {
	// The body must match the remaining length.
	_, err := Decode(FixedHeader{Type: PINGREQ, Remaining: 1}, nil, V5)
	wantCode(t, "short body", err, MalformedPacket)
	// Packets other than CONNECT need a negotiated version.
	_, err = Decode(FixedHeader{Type: PUBACK, Remaining: 2}, bs(0, 1), 0)
	wantCode(t, "no version", err, ProtocolError)
	_, err = Decode(FixedHeader{Type: 0}, nil, V5)
	wantCode(t, "type 0", err, MalformedPacket)
	_, err = Decode(FixedHeader{Type: 16}, nil, V5)
	wantCode(t, "type 16", err, MalformedPacket)
	var p Publish
	wantCode(t, "flags checked by Publish.Decode", p.Decode(0x06, cat(str("t"), u16(1)), V311), MalformedPacket)
}

func TestV3ConnackCode(t *testing.T) {
	for rc := 0; rc < 256; rc++ {
		code, ok := V3ConnackCode(ReasonCode(rc))
		if ok && code > V3NotAuthorized {
			t.Fatalf("%v maps to %v", ReasonCode(rc), code)
		}
		if rc <= 5 && (!ok || code != ReasonCode(rc)) {
			t.Fatalf("3.x code %d maps to %v, %v", rc, code, ok)
		}
	}
	for rc, want := range map[ReasonCode]ReasonCode{
		UnsupportedProtocolVersion: 1, ClientIdentifierNotValid: 2, ServerBusy: 3,
		BadUserNameOrPassword: 4, NotAuthorized: 5,
	} {
		if got, ok := V3ConnackCode(rc); !ok || got != want {
			t.Errorf("%v -> %v, want %v", rc, got, want)
		}
	}
	if _, ok := V3ConnackCode(QuotaExceeded); ok {
		t.Error("Quota Exceeded has no 3.x code")
	}
}
