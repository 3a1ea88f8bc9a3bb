package mqtt

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

var fuzzVersions = [...]Version{V31, V311, V5}

// decodeAllocLimit is the most Decode may allocate for a body of n bytes: 8 bytes per body byte
// (the densest list is a User Property: 32 bytes of slice for at least 5 wire bytes, 6.4 per byte,
// rounded up to the allocator's size classes) plus 1 KiB for the packet struct (a Connect, the
// largest, is 680 bytes) and small-object rounding. The bound holds for any input, because every
// allocation is sized by a count of items already seen in the body.
func decodeAllocLimit(n int) uint64 { return uint64(8*n + 1024) }

// decodeAllocBytes reports the bytes Decode allocated for one call.
func decodeAllocBytes(fh FixedHeader, body []byte, v Version) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	pk, _ := Decode(fh, body, v)
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(pk)
	return after.TotalAlloc - before.TotalAlloc
}

var fuzzDecodeCalls int

// FuzzDecode feeds arbitrary bytes to Parse and Reader. Neither may panic, they must agree, and
// whatever decodes must encode, and decode again to the same packet. Every 64th input also
// checks Decode's allocation against decodeAllocLimit.
func FuzzDecode(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(fx.raw, byte(fx.v))
	}
	for _, m := range malformedCases {
		f.Add(m.raw, byte(m.v))
	}
	f.Fuzz(func(t *testing.T, data []byte, vb byte) {
		v := fuzzVersions[int(vb)%len(fuzzVersions)]
		pk, n, err := Parse(data, v, 0)

		rd := NewReader(bytes.NewReader(data), 0)
		rd.SetVersion(v)
		rpk, rerr := rd.ReadPacket()
		switch {
		case err == ErrIncomplete:
			if rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
				t.Fatalf("Parse incomplete, Reader: %v", rerr)
			}
			return
		case err != nil:
			var pe, re *Error
			if !errors.As(err, &pe) || !errors.As(rerr, &re) || pe.Code != re.Code {
				t.Fatalf("Parse: %v; Reader: %v", err, rerr)
			}
			return
		case rerr != nil:
			t.Fatalf("Parse ok, Reader: %v", rerr)
		}
		if !reflect.DeepEqual(pk, rpk) {
			t.Fatalf("Parse and Reader disagree:\n%#v\n%#v", pk, rpk)
		}

		if fuzzDecodeCalls++; fuzzDecodeCalls%64 == 0 {
			fh, hl, _ := parseFixedHeader(data, 0)
			if got, limit := decodeAllocBytes(fh, data[hl:n], v), decodeAllocLimit(fh.Remaining); got > limit {
				t.Fatalf("Decode of a %d byte body allocated %d bytes, limit %d", fh.Remaining, got, limit)
			}
		}

		ev := v
		if c, ok := pk.(*Connect); ok {
			ev = c.Version
		}
		enc, err := pk.AppendTo(nil, ev)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", pk, err)
		}
		if size := pk.Size(ev); size != len(enc) {
			t.Fatalf("Size %d, encoding %d bytes", size, len(enc))
		}
		pk2, n2, err := Parse(enc, ev, 0)
		if err != nil || n2 != len(enc) {
			t.Fatalf("re-decoding % x: %v (n=%d)", enc, err, n2)
		}
		if !reflect.DeepEqual(pk, pk2) {
			t.Fatalf("round trip changed the packet:\n%#v\n%#v", pk, pk2)
		}
		enc2, _ := pk2.AppendTo(nil, ev)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n% x\n% x", enc, enc2)
		}
	})
}

// clean makes s a valid MQTT string: well-formed UTF-8, no U+0000, at most max bytes.
func clean(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	s = strings.ToValidUTF8(s, "")
	return strings.ReplaceAll(s, "\x00", "")
}

// topicName makes s a valid topic name: no wildcards, at least one character.
func topicName(s string) string {
	s = strings.NewReplacer("+", "", "#", "").Replace(clean(s, 200))
	if s == "" {
		s = "t"
	}
	return s
}

func bytesOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// fuzzProps builds valid properties for packet type t: sel picks which of the allowed ones are
// present, the other arguments give their values.
func fuzzProps(t Type, sel uint64, s1, s2 string, b []byte, n uint32) Properties {
	var p Properties
	allowed := propertyAllowed[t]
	str1 := clean(s1, 100)
	for id := PropID(1); id <= maxPropID; id++ {
		if !allowed.Has(id) || sel&(1<<id) == 0 {
			continue
		}
		switch id {
		case PropSubscriptionID:
			p.SubscriptionIDs = []uint32{n%MaxRemainingLength + 1}
			if t == PUBLISH && n&1 == 1 {
				p.SubscriptionIDs = append(p.SubscriptionIDs, (n>>8)%MaxRemainingLength+1)
			}
			p.Set(id) // decoding sets the bits of the repeatable properties too
			continue
		case PropUserProperty:
			p.User = []UserProperty{{str1, clean(s2, 100)}, {clean(s2, 50), ""}}
			p.Set(id)
			continue
		}
		p.Set(id)
		switch propTypes[id] {
		case ptByte:
			v := byte(n & 1)
			switch id {
			case PropPayloadFormat:
				p.PayloadFormat = v
			case PropRequestProblemInfo:
				p.RequestProblemInfo = v
			case PropRequestResponseInfo:
				p.RequestResponseInfo = v
			case PropMaximumQoS:
				p.MaximumQoS = v
			case PropRetainAvailable:
				p.RetainAvailable = v
			case PropWildcardSubAvailable:
				p.WildcardSubAvailable = v
			case PropSubIDAvailable:
				p.SubIDAvailable = v
			case PropSharedSubAvailable:
				p.SharedSubAvailable = v
			}
		case ptUint16:
			v := uint16(n) | 1
			switch id {
			case PropServerKeepAlive:
				p.ServerKeepAlive = v
			case PropReceiveMaximum:
				p.ReceiveMaximum = v
			case PropTopicAliasMaximum:
				p.TopicAliasMaximum = v
			case PropTopicAlias:
				p.TopicAlias = v
			}
		case ptUint32:
			v := n | 1
			switch id {
			case PropMessageExpiry:
				p.MessageExpiry = v
			case PropSessionExpiry:
				p.SessionExpiry = v
			case PropWillDelay:
				p.WillDelay = v
			case PropMaximumPacketSize:
				p.MaximumPacketSize = v
			}
		case ptBinary:
			if id == PropCorrelationData {
				p.CorrelationData = bytesOrNil(b)
			} else {
				p.AuthData = bytesOrNil(b)
			}
		case ptString:
			switch id {
			case PropContentType:
				p.ContentType = str1
			case PropResponseTopic:
				p.ResponseTopic = topicName(s1)
			case PropAssignedClientID:
				p.AssignedClientID = str1
			case PropAuthMethod:
				p.AuthMethod = str1
			case PropResponseInfo:
				p.ResponseInfo = str1
			case PropServerReference:
				p.ServerReference = str1
			case PropReasonString:
				p.ReasonString = str1
			}
		}
	}
	if t == CONNECT && p.Has(PropAuthData) && !p.Has(PropAuthMethod) {
		p.Set(PropAuthMethod) // §3.1.2.11.10
	}
	return p
}

// validCodes lists, per packet type, the 5.0 reason codes to pick from.
func validCodes(t Type) []ReasonCode {
	var out []ReasonCode
	for rc := 0; rc < 256; rc++ {
		if ValidReasonCode(t, V5, ReasonCode(rc)) {
			out = append(out, ReasonCode(rc))
		}
	}
	return out
}

// FuzzRoundTrip builds a valid packet of every type from fuzzed fields, encodes it and decodes
// it back; the result must equal the packet.
func FuzzRoundTrip(f *testing.F) {
	for k := byte(1); k <= 15; k++ {
		f.Add(k, byte(k%3), uint16(k), byte(0xFF), uint64(1<<63-1), "a/b", "v", []byte("payload"), uint32(300))
		f.Add(k, byte(2), uint16(0xFFFF), byte(k*17), ^uint64(0), "\u00e9/\U0001F600", "", []byte{}, uint32(1<<31))
	}
	f.Fuzz(func(t *testing.T, kind, vb byte, id uint16, flags byte, sel uint64, s1, s2 string, b []byte, n uint32) {
		v := fuzzVersions[int(vb)%len(fuzzVersions)]
		typ := Type(kind%15 + 1)
		if id == 0 {
			id = 1
		}
		propsFor := func(t Type) Properties {
			if v != V5 {
				return Properties{}
			}
			return fuzzProps(t, sel, s1, s2, b, n)
		}
		code := func(t Type) ReasonCode {
			if v != V5 {
				return 0
			}
			codes := validCodes(t)
			return codes[int(flags)%len(codes)]
		}
		var pk Packet
		switch typ {
		case CONNECT:
			c := &Connect{ProtocolName: protocolName(v), Version: v, CleanStart: flags&1 != 0,
				KeepAlive: uint16(n), Properties: propsFor(CONNECT), ClientID: clean(s1, 23)}
			if flags&2 != 0 {
				c.WillFlag, c.WillQoS, c.WillRetain = true, flags>>2%3, flags&16 != 0
				c.WillProperties = propsFor(willPropertiesPseudoPacket)
				c.WillTopic, c.WillPayload = topicName(s2), bytesOrNil(b)
			}
			if flags&32 != 0 {
				c.UsernameFlag, c.Username = true, clean(s2, 50)
			}
			if flags&64 != 0 && (c.UsernameFlag || v != V311) {
				c.PasswordFlag, c.Password = true, bytesOrNil(b)
			}
			pk = c
		case CONNACK:
			c := &Connack{ReasonCode: code(CONNACK), Properties: propsFor(CONNACK)}
			if v != V5 {
				c.ReasonCode = ReasonCode(flags % 6)
			}
			c.SessionPresent = flags&128 != 0 && c.ReasonCode == 0 && v != V31
			pk = c
		case PUBLISH:
			p := &Publish{QoS: flags % 3, Retain: flags&4 != 0, Topic: topicName(s1),
				Properties: propsFor(PUBLISH), Payload: bytesOrNil(b)}
			if p.QoS > 0 {
				p.PacketID, p.Dup = id, flags&8 != 0
			}
			if p.Properties.Has(PropTopicAlias) && flags&16 != 0 {
				p.Topic = ""
			}
			pk = p
		case PUBACK:
			pk = &Puback{PacketID: id, ReasonCode: code(PUBACK), Properties: propsFor(PUBACK)}
		case PUBREC:
			pk = &Pubrec{PacketID: id, ReasonCode: code(PUBREC), Properties: propsFor(PUBREC)}
		case PUBREL:
			pk = &Pubrel{PacketID: id, ReasonCode: code(PUBREL), Properties: propsFor(PUBREL)}
		case PUBCOMP:
			pk = &Pubcomp{PacketID: id, ReasonCode: code(PUBCOMP), Properties: propsFor(PUBCOMP)}
		case SUBSCRIBE:
			s := &Subscribe{PacketID: id, Properties: propsFor(SUBSCRIBE)}
			for i, f := range strings.SplitN(clean(s1, 300), " ", 1+int(flags%8)) {
				if f == "" {
					f = "#"
				}
				sub := Subscription{Filter: f, QoS: byte(i+int(flags)) % 3}
				if v == V5 {
					sub.NoLocal, sub.RetainAsPublished = n>>i&1 == 1, n>>(i+8)&1 == 1
					sub.RetainHandling = byte(n>>(2*i+16)) % 3
				}
				s.Subscriptions = append(s.Subscriptions, sub)
			}
			pk = s
		case SUBACK:
			s := &Suback{PacketID: id, Properties: propsFor(SUBACK)}
			codes := validCodes(SUBACK)
			if v != V5 {
				codes = []ReasonCode{0, 1, 2, 0x80}
			}
			for i := 0; i <= len(b)%10; i++ {
				s.ReasonCodes = append(s.ReasonCodes, codes[(int(flags)+i*int(id))%len(codes)])
			}
			pk = s
		case UNSUBSCRIBE:
			u := &Unsubscribe{PacketID: id, Properties: propsFor(UNSUBSCRIBE)}
			for _, f := range strings.SplitN(clean(s2, 300), "/", 1+int(flags%8)) {
				if f == "" {
					f = "+"
				}
				u.Filters = append(u.Filters, f)
			}
			pk = u
		case UNSUBACK:
			u := &Unsuback{PacketID: id, Properties: propsFor(UNSUBACK)}
			if v == V5 {
				codes := validCodes(UNSUBACK)
				for i := 0; i <= int(flags%5); i++ {
					u.ReasonCodes = append(u.ReasonCodes, codes[(int(n)+i)%len(codes)])
				}
			}
			pk = u
		case PINGREQ:
			pk = &Pingreq{}
		case PINGRESP:
			pk = &Pingresp{}
		case DISCONNECT:
			pk = &Disconnect{ReasonCode: code(DISCONNECT), Properties: propsFor(DISCONNECT)}
		case AUTH:
			a := &Auth{ReasonCode: code(AUTH), Properties: propsFor(AUTH)}
			if v != V5 {
				if _, err := a.AppendTo(nil, v); !errors.Is(err, ErrInvalidPacket) {
					t.Fatalf("AUTH encoded for %v: %v", v, err)
				}
				return
			}
			pk = a
		}

		if err := validatePacket(pk); err != nil {
			t.Fatalf("generator built an invalid packet: %v", err)
		}
		enc, err := pk.AppendTo(nil, v)
		if err != nil {
			t.Fatalf("AppendTo(%#v, %v): %v", pk, v, err)
		}
		if size := pk.Size(v); size != len(enc) {
			t.Fatalf("Size %d, encoding %d bytes", size, len(enc))
		}
		if p, ok := pk.(*Publish); ok {
			if hdr := p.AppendHeader(nil, v); !bytes.Equal(append(hdr, p.Payload...), enc) {
				t.Fatal("AppendHeader + payload differs from AppendTo")
			}
		}
		got, used, err := Parse(enc, v, len(enc))
		if err != nil || used != len(enc) {
			t.Fatalf("Parse(% x): %v (used %d)", enc, err, used)
		}
		if !reflect.DeepEqual(got, pk) {
			t.Fatalf("round trip for %v\n%#v\nwant\n%#v", v, got, pk)
		}
		// The size limit is exact: one byte less and the packet is too large.
		if _, _, err := Parse(enc, v, len(enc)-1); !errors.Is(err, ErrPacketTooLarge) {
			t.Fatalf("limit %d on a %d byte packet: %v", len(enc)-1, len(enc), err)
		}
	})
}

// validatePacket checks the generator's output: every string well-formed and every property
// block valid.
func validatePacket(pk Packet) error {
	var err error
	check := func(s string) {
		if e := CheckString(s); e != nil && err == nil {
			err = e
		}
	}
	props := func(p *Properties, t Type) {
		if e := p.Validate(t); e != nil && err == nil {
			err = e
		}
	}
	switch p := pk.(type) {
	case *Connect:
		check(p.ClientID)
		check(p.WillTopic)
		check(p.Username)
		props(&p.Properties, CONNECT)
		props(&p.WillProperties, willPropertiesPseudoPacket)
	case *Publish:
		check(p.Topic)
		props(&p.Properties, PUBLISH)
	case *Subscribe:
		for _, s := range p.Subscriptions {
			check(s.Filter)
		}
	case *Unsubscribe:
		for _, f := range p.Filters {
			check(f)
		}
	}
	return err
}
