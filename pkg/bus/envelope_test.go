package bus

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// fixtures drive the round-trip tests, the fuzz seeds and the benchmarks.
var fixtures = []struct {
	name string
	msgs []Message
}{
	{"empty payload", []Message{{ID: MessageID{1}, Origin: "r1", ClientID: "c", Topic: "a/b", Created: 1}}},
	{"binary payload", []Message{{
		ID: NewMessageID(), Origin: "r1", ClientID: "dev-1", Username: "u", Topic: "t",
		Payload: []byte{0, 0xff, 0xfe, 0, 'x', 0xc3, 0x28, 0, 0x80}, QoS: 1, Created: 1_700_000_000_000_000_000,
		Plain: true,
	}}},
	{"all properties", []Message{{
		ID: NewMessageID(), Origin: "broker-7c9f8d-x2x4z", ClientID: "client/with/slashes", Username: "ünïcode",
		Topic: "sensors/building-1/floor-2/temperature", Payload: []byte(`{"t":21.5}`), QoS: 2, Retain: true,
		Flags: 0xdeadbeef, Created: 1_700_000_000_123_456_789, Expiry: 1_700_000_060_123_456_789,
		Props: PropPayloadFormat, PayloadFormat: 1, ContentType: "application/json",
		ResponseTopic: "reply/here", CorrelationData: []byte{0, 1, 2},
		UserProperties: []mqtt.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}, {Key: "", Value: ""}},
		Plain:          true, Groups: []string{"g1/sensors/#", "g2/+/+/+/temperature"},
	}}},
	{"absent vs zero", []Message{
		{ID: MessageID{2}, Origin: "r", Topic: "t", Props: PropPayloadFormat | PropContentType | PropCorrelationData,
			CorrelationData: []byte{}},
		{ID: MessageID{3}, Origin: "r", Topic: "t"},
	}},
	{"negative times", []Message{{ID: MessageID{4}, Origin: "r", Topic: "t", Created: -1, Expiry: -5}}},
	{"many user properties", []Message{{ID: MessageID{5}, Origin: "r", Topic: "t", UserProperties: manyProps(300)}}},
	{"groups only", []Message{{ID: MessageID{6}, Origin: "r", Topic: "t", Groups: []string{"g/a", "h/a", "i/#"}}}},
	{"large payload", []Message{{ID: MessageID{7}, Origin: "r", Topic: "t", Payload: bytes.Repeat([]byte{0xab}, 70_000)}}},
	{"several", []Message{
		{ID: MessageID{8}, Origin: "r1", Topic: "a", Payload: []byte("1"), QoS: 0, Plain: true},
		{ID: MessageID{9}, Origin: "r1", Topic: "b", Payload: []byte("2"), QoS: 1, Groups: []string{"g/b"}},
		{ID: MessageID{10}, Origin: "r1", Topic: "c", Payload: []byte("3"), QoS: 2, Retain: true},
	}},
}

func manyProps(n int) []mqtt.UserProperty {
	ps := make([]mqtt.UserProperty, n)
	for i := range ps {
		ps[i] = mqtt.UserProperty{Key: "k" + strings.Repeat("x", i%7), Value: string(rune('a' + i%26))}
	}
	return ps
}

func encodeBatch(t testing.TB, msgs []Message) []byte {
	t.Helper()
	b := AppendBatchHeader(nil)
	for i := range msgs {
		var err error
		before := len(b)
		if b, err = AppendMessage(b, &msgs[i]); err != nil {
			t.Fatal(err)
		}
		if got, want := len(b)-before, msgs[i].Size(); got != want {
			t.Fatalf("message %d: appended %d bytes, Size says %d", i, got, want)
		}
	}
	return b
}

// normalize makes an encoded-then-decoded message comparable with its source: presence bits
// derived from fields, nil and empty slices alike where the wire does not tell them apart.
func normalize(m Message) Message {
	m.Props = m.Encoded().Props()
	if len(m.Payload) == 0 {
		m.Payload = nil
	}
	if m.Props&PropCorrelationData != 0 && m.CorrelationData == nil {
		m.CorrelationData = []byte{}
	}
	if len(m.UserProperties) == 0 {
		m.UserProperties = nil
	}
	if len(m.Groups) == 0 {
		m.Groups = nil
	}
	return m
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			b := encodeBatch(t, fx.msgs)
			got, err := DecodeBatch(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(fx.msgs) {
				t.Fatalf("decoded %d messages, want %d", len(got), len(fx.msgs))
			}
			for i := range got {
				if w, g := normalize(fx.msgs[i]), normalize(got[i]); !reflect.DeepEqual(w, g) {
					t.Errorf("message %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}

func TestEnvelopePresenceBits(t *testing.T) {
	// Absent properties stay absent, present zero values stay present.
	b := encodeBatch(t, fixtures[3].msgs)
	got, err := DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	want := PropPayloadFormat | PropContentType | PropCorrelationData
	if got[0].Props != want || got[0].CorrelationData == nil || got[0].PayloadFormat != 0 {
		t.Errorf("present zero values: props %b, correlation %v", got[0].Props, got[0].CorrelationData)
	}
	if got[1].Props != 0 || got[1].CorrelationData != nil {
		t.Errorf("absent: props %b, correlation %v", got[1].Props, got[1].CorrelationData)
	}
}

func TestDecodeAliasesInput(t *testing.T) {
	b := encodeBatch(t, []Message{{ID: MessageID{1}, Origin: "r", Topic: "topic", Payload: []byte("payload")}})
	ms, err := DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("payload"))
	b[i] = 'P'
	if string(ms[0].Payload) != "Payload" {
		t.Fatal("payload does not alias the batch")
	}
}

func TestDecodeBatchIntoReuses(t *testing.T) {
	b := encodeBatch(t, fixtures[8].msgs)
	dst := make([]Message, 0, 8)
	ms, err := DecodeBatchInto(dst, b)
	if err != nil || len(ms) != 3 || &ms[0] != &dst[:1][0] {
		t.Fatalf("DecodeBatchInto did not reuse dst: %v", err)
	}
	allocs := testing.AllocsPerRun(100, func() { ms, _ = DecodeBatchInto(ms, b) })
	// fixture 8's second message has one group: one slice.
	if allocs > 1 {
		t.Fatalf("DecodeBatchInto allocated %v times, want <= 1", allocs)
	}
}

func TestAppendMessageRejectsQoS3(t *testing.T) {
	b := AppendBatchHeader(nil)
	out, err := AppendMessage(b, &Message{QoS: 3})
	if !errors.Is(err, ErrBadMessage) || len(out) != 1 {
		t.Fatalf("QoS 3: err %v, len %d", err, len(out))
	}
}

func TestAppendMessageZeroAllocs(t *testing.T) {
	for _, fx := range fixtures {
		buf := make([]byte, 0, 1<<20)
		allocs := testing.AllocsPerRun(100, func() {
			b := AppendBatchHeader(buf[:0])
			for i := range fx.msgs {
				b, _ = AppendMessage(b, &fx.msgs[i])
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per AppendMessage, want 0", fx.name, allocs)
		}
	}
}

// malformedCases: each must be rejected with ErrMalformed.
func malformedCases() []struct {
	name string
	raw  []byte
} {
	good := encodeBatch(&testing.T{}, fixtures[2].msgs)
	one := encodeBatch(&testing.T{}, fixtures[0].msgs)
	// one: version, len, id[16], hdr at 18.
	qos3 := bytes.Clone(one)
	qos3[18] |= 3
	hugeLen := []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}
	badVarint := append([]byte{1}, bytes.Repeat([]byte{0x80}, 11)...)
	// A body that claims a topic longer than itself.
	longTopic := bytes.Clone(one)
	topicAt := bytes.Index(longTopic, []byte("a/b")) - 1
	longTopic[topicAt] = 0x7f
	// Body length shrunk by one: the last field runs out.
	short := bytes.Clone(one)
	short[1]--
	short = short[:len(short)-1]
	// User property count far beyond the bytes present.
	manyUP := bytes.Clone(one)
	manyUP[len(manyUP)-2] = 0x7f
	manyGroups := bytes.Clone(one)
	manyGroups[len(manyGroups)-1] = 0x7f
	// Flags above 32 bits.
	bigFlags := AppendBatchHeader(nil)
	body := append(make([]byte, 17), 0xff, 0xff, 0xff, 0xff, 0x7f) // id, hdr, flags (35 bits)
	body = append(body, make([]byte, 8+1+5+2)...)
	bigFlags = append(append(bigFlags, byte(len(body))), body...)
	return []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"version 0", []byte{0}},
		{"version 2", append([]byte{2}, good[1:]...)},
		{"truncated frame", good[:len(good)-1]},
		{"truncated length", []byte{1, 0x80}},
		{"length beyond input", hugeLen},
		{"varint too long", badVarint},
		{"frame below minimum", []byte{1, 3, 0, 0, 0}},
		{"qos 3", qos3},
		{"topic longer than body", longTopic},
		{"field runs out", short},
		{"user property count", manyUP},
		{"group count", manyGroups},
		{"flags above 32 bits", bigFlags},
		{"trailing garbage after good message", append(bytes.Clone(one), 0x05)},
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, c := range malformedCases() {
		t.Run(c.name, func(t *testing.T) {
			ms, err := DecodeBatch(c.raw)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if len(ms) != 0 {
				t.Fatalf("returned %d messages with an error", len(ms))
			}
		})
	}
}

func TestDecodeEveryTruncation(t *testing.T) {
	for _, fx := range fixtures {
		b := encodeBatch(t, fx.msgs)
		for n := 0; n < len(b); n++ {
			ms, err := DecodeBatch(b[:n])
			// A cut exactly between frames is a valid, shorter batch.
			if err == nil && len(ms) >= len(fx.msgs) {
				t.Fatalf("%s: truncation at %d decoded all %d messages", fx.name, n, len(ms))
			}
		}
	}
}

func TestNewMessageID(t *testing.T) {
	seen := make(map[MessageID]bool)
	for i := 0; i < 10000; i++ {
		id := NewMessageID()
		if seen[id] || id.IsZero() {
			t.Fatalf("duplicate or zero id %v", id)
		}
		seen[id] = true
		if id[6]>>4 != 7 || id[8]>>6 != 2 {
			t.Fatalf("%v is not a version 7 UUID", id)
		}
	}
	id := MessageID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 1, 2, 3, 4, 5, 6, 7}
	if s := id.String(); s != "01234567-89ab-cdef-0001-020304050607" {
		t.Fatalf("String = %s", s)
	}
	if a := testing.AllocsPerRun(100, func() { _ = NewMessageID() }); a != 0 {
		t.Fatalf("NewMessageID allocates %v", a)
	}
}
