package mqtt

// One table of raw bytes <-> packets drives the encode, decode, round-trip, split-read and fuzz
// seed tests; a sibling table lists malformed packets with the reason code each must produce.
// The raw bytes are spelled out with the small builders below, written independently of the
// encoder (vbi is its own varint), so a bug in AppendTo cannot hide in the expectations.

import (
	"math"
	"strings"
)

func cat(parts ...[]byte) []byte {
	out := []byte{}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// vbi is a test-only Variable Byte Integer encoder.
func vbi(n int) []byte {
	var out []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			return out
		}
	}
}

// pkt builds a packet from its first byte and body parts, computing the remaining length.
func pkt(first byte, body ...[]byte) []byte {
	b := cat(body...)
	return cat([]byte{first}, vbi(len(b)), b)
}

func bs(b ...byte) []byte { return b }

func str(s string) []byte { return cat(u16(uint16(len(s))), []byte(s)) }

func u16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

func u32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// pblock is a property block: Property Length, then the properties.
func pblock(parts ...[]byte) []byte {
	b := cat(parts...)
	return cat(vbi(len(b)), b)
}

func pair(k, v string) []byte { return cat(bs(0x26), str(k), str(v)) }

var noProps = bs(0)

type fixture struct {
	name string
	v    Version
	raw  []byte
	pk   Packet
	// decodeOnly marks raw bytes that are valid but not what the encoder writes for pk (for
	// example a v5 PUBACK with an explicit empty property block); encoding pk must still
	// decode back to pk.
	decodeOnly bool
}

// Property blocks with every property each packet may carry; across them every identifier.
var (
	connectPropsWire = pblock(
		bs(0x11), u32(120), bs(0x15), str("SCRAM-SHA-1"), bs(0x16), str("client-first"),
		bs(0x17, 0), bs(0x19, 1), bs(0x21), u16(20), bs(0x22), u16(10),
		pair("region", "eu"), bs(0x27), u32(1<<20))
	connectProps = Properties{
		Present: props(PropSessionExpiry, PropAuthMethod, PropAuthData, PropRequestProblemInfo,
			PropRequestResponseInfo, PropReceiveMaximum, PropTopicAliasMaximum, PropUserProperty,
			PropMaximumPacketSize),
		SessionExpiry: 120, AuthMethod: "SCRAM-SHA-1", AuthData: []byte("client-first"),
		RequestProblemInfo: 0, RequestResponseInfo: 1, ReceiveMaximum: 20, TopicAliasMaximum: 10,
		User: []UserProperty{{"region", "eu"}}, MaximumPacketSize: 1 << 20,
	}
	willPropsWire = pblock(
		bs(0x01, 1), bs(0x02), u32(60), bs(0x03), str("text/plain"), bs(0x08), str("dev/1/reply"),
		bs(0x09), str("c1"), bs(0x18), u32(5), pair("why", "lost"))
	willProps = Properties{
		Present: props(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
			PropCorrelationData, PropWillDelay, PropUserProperty),
		PayloadFormat: 1, MessageExpiry: 60, ContentType: "text/plain", ResponseTopic: "dev/1/reply",
		CorrelationData: []byte("c1"), WillDelay: 5, User: []UserProperty{{"why", "lost"}},
	}
	connackPropsWire = pblock(
		bs(0x11), u32(math.MaxUint32), bs(0x12), str("auto-7"), bs(0x13), u16(30),
		bs(0x15), str("SCRAM-SHA-1"), bs(0x16), str("server-final"), bs(0x1A), str("resp/"),
		bs(0x1C), str("other:1883"), bs(0x1F), str("welcome"), bs(0x21), u16(100), bs(0x22), u16(5),
		bs(0x24, 1), bs(0x25, 0), pair("a", "b"), pair("a", "c"), bs(0x27), u32(65536),
		bs(0x28, 1), bs(0x29, 0), bs(0x2A, 1))
	connackProps = Properties{
		Present: props(PropSessionExpiry, PropAssignedClientID, PropServerKeepAlive, PropAuthMethod,
			PropAuthData, PropResponseInfo, PropServerReference, PropReasonString, PropReceiveMaximum,
			PropTopicAliasMaximum, PropMaximumQoS, PropRetainAvailable, PropUserProperty,
			PropMaximumPacketSize, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable),
		SessionExpiry: math.MaxUint32, AssignedClientID: "auto-7", ServerKeepAlive: 30,
		AuthMethod: "SCRAM-SHA-1", AuthData: []byte("server-final"), ResponseInfo: "resp/",
		ServerReference: "other:1883", ReasonString: "welcome", ReceiveMaximum: 100,
		TopicAliasMaximum: 5, MaximumQoS: 1, RetainAvailable: 0,
		User: []UserProperty{{"a", "b"}, {"a", "c"}}, MaximumPacketSize: 65536,
		WildcardSubAvailable: 1, SubIDAvailable: 0, SharedSubAvailable: 1,
	}
	publishPropsWire = pblock(
		bs(0x01, 0), bs(0x02), u32(3600), bs(0x03), str("application/json"), bs(0x08), str("r/1"),
		bs(0x09), str("\x00\x01\xff"), bs(0x0B, 1), bs(0x0B, 0xFF, 0xFF, 0xFF, 0x7F), bs(0x23), u16(7),
		pair("k1", "v1"), pair("k2", ""))
	publishProps = Properties{
		Present: props(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
			PropCorrelationData, PropSubscriptionID, PropTopicAlias, PropUserProperty),
		PayloadFormat: 0, MessageExpiry: 3600, ContentType: "application/json", ResponseTopic: "r/1",
		CorrelationData: []byte{0, 1, 0xff}, SubscriptionIDs: []uint32{1, MaxRemainingLength},
		TopicAlias: 7, User: []UserProperty{{"k1", "v1"}, {"k2", ""}},
	}
	ackPropsWire = pblock(bs(0x1F), str("quota"), pair("x", "y"))
	ackProps     = Properties{Present: props(PropReasonString, PropUserProperty), ReasonString: "quota",
		User: []UserProperty{{"x", "y"}}}
)

var fixtures = []fixture{
	// MQTT 3.1
	{name: "3.1 CONNECT", v: V31,
		raw: pkt(0x10, str("MQIsdp"), bs(3, 0xC2), u16(60), str("c31"), str("user"), str("pw")),
		pk: &Connect{ProtocolName: "MQIsdp", Version: V31, CleanStart: true, KeepAlive: 60,
			ClientID: "c31", UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("pw")}},
	{name: "3.1 CONNECT will", v: V31,
		raw: pkt(0x10, str("MQIsdp"), bs(3, 0x0C), u16(0), str("c"), str("w"), str("bye")),
		pk: &Connect{ProtocolName: "MQIsdp", Version: V31, ClientID: "c", WillFlag: true, WillQoS: 1,
			WillTopic: "w", WillPayload: []byte("bye")}},
	{name: "3.1 CONNACK", v: V31, raw: bs(0x20, 2, 0, 0), pk: &Connack{}},
	{name: "3.1 PUBLISH", v: V31, raw: pkt(0x30, str("t"), []byte("x")), pk: &Publish{Topic: "t", Payload: []byte("x")}},

	// MQTT 3.1.1
	{name: "3.1.1 CONNECT minimal", v: V311,
		raw: pkt(0x10, str("MQTT"), bs(4, 0x02), u16(0), str("")),
		pk:  &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true}},
	{name: "3.1.1 CONNECT full", v: V311,
		raw: pkt(0x10, str("MQTT"), bs(4, 0xEC), u16(65535), str("dev-1"), str("dev/1/status"),
			str("offline"), str("alice"), str("s3cret")),
		pk: &Connect{ProtocolName: "MQTT", Version: V311, KeepAlive: 65535, ClientID: "dev-1",
			WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "dev/1/status",
			WillPayload: []byte("offline"), UsernameFlag: true, Username: "alice",
			PasswordFlag: true, Password: []byte("s3cret")}},
	{name: "3.1.1 CONNECT will qos 2 empty payload", v: V311,
		raw: pkt(0x10, str("MQTT"), bs(4, 0x16), u16(10), str("c"), str("w"), str("")),
		pk: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 10, ClientID: "c",
			WillFlag: true, WillQoS: 2, WillTopic: "w"}},
	{name: "3.1.1 CONNACK session present", v: V311, raw: bs(0x20, 2, 1, 0), pk: &Connack{SessionPresent: true}},
	{name: "3.1.1 CONNACK not authorized", v: V311, raw: bs(0x20, 2, 0, 5), pk: &Connack{ReasonCode: V3NotAuthorized}},
	{name: "3.1.1 PUBLISH qos 0", v: V311, raw: pkt(0x30, str("a/b"), []byte("hello")),
		pk: &Publish{Topic: "a/b", Payload: []byte("hello")}},
	{name: "3.1.1 PUBLISH qos 1 dup retain", v: V311, raw: pkt(0x3B, str("a/b"), u16(10), []byte("hi")),
		pk: &Publish{Dup: true, QoS: 1, Retain: true, Topic: "a/b", PacketID: 10, Payload: []byte("hi")}},
	{name: "3.1.1 PUBLISH qos 2 empty payload", v: V311, raw: pkt(0x34, str("\u00e9t\u00e9/\U0001F600"), u16(65535)),
		pk: &Publish{QoS: 2, Topic: "\u00e9t\u00e9/\U0001F600", PacketID: 65535}},
	{name: "3.1.1 PUBLISH topic with control characters", v: V311, raw: pkt(0x30, str("a\x01\x7f\u0085"), []byte("p")),
		pk: &Publish{Topic: "a\x01\x7f\u0085", Payload: []byte("p")}},
	{name: "3.1.1 PUBACK", v: V311, raw: bs(0x40, 2, 0, 1), pk: &Puback{PacketID: 1}},
	{name: "3.1.1 PUBREC", v: V311, raw: bs(0x50, 2, 0x12, 0x34), pk: &Pubrec{PacketID: 0x1234}},
	{name: "3.1.1 PUBREL", v: V311, raw: bs(0x62, 2, 0, 2), pk: &Pubrel{PacketID: 2}},
	{name: "3.1.1 PUBCOMP", v: V311, raw: bs(0x70, 2, 0xFF, 0xFF), pk: &Pubcomp{PacketID: 65535}},
	{name: "3.1.1 SUBSCRIBE", v: V311, raw: pkt(0x82, u16(3), str("a/+"), bs(0), str("#"), bs(2)),
		pk: &Subscribe{PacketID: 3, Subscriptions: []Subscription{{Filter: "a/+"}, {Filter: "#", QoS: 2}}}},
	{name: "3.1.1 SUBACK", v: V311, raw: bs(0x90, 6, 0, 3, 0, 1, 2, 0x80),
		pk: &Suback{PacketID: 3, ReasonCodes: []ReasonCode{0, 1, 2, 0x80}}},
	{name: "3.1.1 UNSUBSCRIBE", v: V311, raw: pkt(0xA2, u16(4), str("a/+"), str("b")),
		pk: &Unsubscribe{PacketID: 4, Filters: []string{"a/+", "b"}}},
	{name: "3.1.1 UNSUBACK", v: V311, raw: bs(0xB0, 2, 0, 4), pk: &Unsuback{PacketID: 4}},
	{name: "3.1.1 PINGREQ", v: V311, raw: bs(0xC0, 0), pk: &Pingreq{}},
	{name: "3.1.1 PINGRESP", v: V311, raw: bs(0xD0, 0), pk: &Pingresp{}},
	{name: "3.1.1 DISCONNECT", v: V311, raw: bs(0xE0, 0), pk: &Disconnect{}},

	// MQTT 5.0
	{name: "5.0 CONNECT minimal", v: V5, raw: pkt(0x10, str("MQTT"), bs(5, 0x02), u16(30), noProps, str("")),
		pk: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 30}},
	{name: "5.0 CONNECT every property and a will", v: V5,
		raw: pkt(0x10, str("MQTT"), bs(5, 0xF6), u16(60), connectPropsWire, str("dev-2"),
			willPropsWire, str("dev/2/status"), str("gone"), str("bob"), str("\x00pw")),
		pk: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 60,
			Properties: connectProps, ClientID: "dev-2", WillFlag: true, WillQoS: 2, WillRetain: true,
			WillProperties: willProps, WillTopic: "dev/2/status", WillPayload: []byte("gone"),
			UsernameFlag: true, Username: "bob", PasswordFlag: true, Password: []byte("\x00pw")}},
	{name: "5.0 CONNECT password without user name", v: V5,
		raw: pkt(0x10, str("MQTT"), bs(5, 0x40), u16(0), noProps, str("c"), str("token")),
		pk: &Connect{ProtocolName: "MQTT", Version: V5, ClientID: "c", PasswordFlag: true,
			Password: []byte("token")}},
	{name: "5.0 CONNECT will without properties", v: V5,
		raw: pkt(0x10, str("MQTT"), bs(5, 0x06), u16(0), noProps, str("c"), noProps, str("w"), str("x")),
		pk: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, ClientID: "c",
			WillFlag: true, WillTopic: "w", WillPayload: []byte("x")}},
	{name: "5.0 CONNACK minimal", v: V5, raw: bs(0x20, 3, 0, 0, 0), pk: &Connack{}},
	{name: "5.0 CONNACK every property", v: V5, raw: pkt(0x20, bs(1, 0), connackPropsWire),
		pk: &Connack{SessionPresent: true, Properties: connackProps}},
	{name: "5.0 CONNACK refused", v: V5, raw: pkt(0x20, bs(0, 0x86), pblock(bs(0x1F), str("bad password"))),
		pk: &Connack{ReasonCode: BadUserNameOrPassword,
			Properties: Properties{Present: props(PropReasonString), ReasonString: "bad password"}}},
	{name: "5.0 PUBLISH qos 0", v: V5, raw: pkt(0x30, str("a/b"), noProps, []byte("hello")),
		pk: &Publish{Topic: "a/b", Payload: []byte("hello")}},
	{name: "5.0 PUBLISH every property", v: V5,
		raw: pkt(0x33, str("s/1"), u16(77), publishPropsWire, []byte{0, 1, 2}),
		pk: &Publish{QoS: 1, Retain: true, Topic: "s/1", PacketID: 77, Properties: publishProps,
			Payload: []byte{0, 1, 2}}},
	{name: "5.0 PUBLISH topic alias only", v: V5, raw: pkt(0x34, str(""), u16(9), pblock(bs(0x23), u16(3)), []byte("z")),
		pk: &Publish{QoS: 2, PacketID: 9, Properties: Properties{Present: props(PropTopicAlias), TopicAlias: 3},
			Payload: []byte("z")}},
	{name: "5.0 PUBACK short form", v: V5, raw: bs(0x40, 2, 0, 1), pk: &Puback{PacketID: 1}},
	{name: "5.0 PUBACK reason code only", v: V5, raw: bs(0x40, 3, 0, 1, 0x10),
		pk: &Puback{PacketID: 1, ReasonCode: NoMatchingSubscribers}},
	{name: "5.0 PUBACK success with properties", v: V5, raw: pkt(0x40, u16(1), bs(0), ackPropsWire),
		pk: &Puback{PacketID: 1, Properties: ackProps}},
	{name: "5.0 PUBACK explicit empty properties", v: V5, raw: bs(0x40, 4, 0, 1, 0, 0),
		pk: &Puback{PacketID: 1}, decodeOnly: true},
	{name: "5.0 PUBREC with properties", v: V5, raw: pkt(0x50, u16(2), bs(0x97), ackPropsWire),
		pk: &Pubrec{PacketID: 2, ReasonCode: QuotaExceeded, Properties: ackProps}},
	{name: "5.0 PUBREC short form", v: V5, raw: bs(0x50, 2, 0, 2), pk: &Pubrec{PacketID: 2}},
	{name: "5.0 PUBREL not found", v: V5, raw: bs(0x62, 3, 0, 3, 0x92),
		pk: &Pubrel{PacketID: 3, ReasonCode: PacketIdentifierNotFound}},
	{name: "5.0 PUBREL with properties", v: V5, raw: pkt(0x62, u16(3), bs(0), ackPropsWire),
		pk: &Pubrel{PacketID: 3, Properties: ackProps}},
	{name: "5.0 PUBCOMP short form", v: V5, raw: bs(0x70, 2, 0, 4), pk: &Pubcomp{PacketID: 4}},
	{name: "5.0 PUBCOMP with properties", v: V5, raw: pkt(0x70, u16(4), bs(0x92), ackPropsWire),
		pk: &Pubcomp{PacketID: 4, ReasonCode: PacketIdentifierNotFound, Properties: ackProps}},
	{name: "5.0 SUBSCRIBE with options and properties", v: V5,
		raw: pkt(0x82, u16(5), pblock(bs(0x0B, 0x80, 0x01), pair("s", "t")),
			str("$share/g/a/#"), bs(0x01), str("b/c"), bs(0x2E), str("+"), bs(0x1A)),
		pk: &Subscribe{PacketID: 5,
			Properties: Properties{Present: props(PropSubscriptionID, PropUserProperty),
				SubscriptionIDs: []uint32{128}, User: []UserProperty{{"s", "t"}}},
			Subscriptions: []Subscription{
				{Filter: "$share/g/a/#", QoS: 1},
				{Filter: "b/c", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "+", QoS: 2, RetainAsPublished: true, RetainHandling: 1},
			}}},
	{name: "5.0 SUBSCRIBE bad filter is the server's to judge", v: V5,
		raw: pkt(0x82, u16(6), noProps, str("a/#/b"), bs(0)),
		pk:  &Subscribe{PacketID: 6, Subscriptions: []Subscription{{Filter: "a/#/b"}}}},
	{name: "5.0 SUBACK", v: V5, raw: pkt(0x90, u16(5), pblock(bs(0x1F), str("partly")), bs(1, 2, 0x8F, 0xA2, 0)),
		pk: &Suback{PacketID: 5, Properties: Properties{Present: props(PropReasonString), ReasonString: "partly"},
			ReasonCodes: []ReasonCode{1, 2, TopicFilterInvalid, WildcardSubscriptionsNotSupported, 0}}},
	{name: "5.0 UNSUBSCRIBE", v: V5, raw: pkt(0xA2, u16(7), pblock(pair("u", "v")), str("a/b"), str("$share/g/#")),
		pk: &Unsubscribe{PacketID: 7, Properties: Properties{Present: props(PropUserProperty),
			User: []UserProperty{{"u", "v"}}}, Filters: []string{"a/b", "$share/g/#"}}},
	{name: "5.0 UNSUBACK", v: V5, raw: pkt(0xB0, u16(7), ackPropsWire, bs(0, 0x11)),
		pk: &Unsuback{PacketID: 7, Properties: ackProps, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
	{name: "5.0 PINGREQ", v: V5, raw: bs(0xC0, 0), pk: &Pingreq{}},
	{name: "5.0 PINGRESP", v: V5, raw: bs(0xD0, 0), pk: &Pingresp{}},
	{name: "5.0 DISCONNECT normal", v: V5, raw: bs(0xE0, 0), pk: &Disconnect{}},
	{name: "5.0 DISCONNECT with will", v: V5, raw: bs(0xE0, 1, 0x04), pk: &Disconnect{ReasonCode: DisconnectWithWill}},
	{name: "5.0 DISCONNECT every property", v: V5,
		raw: pkt(0xE0, bs(0x9C), pblock(bs(0x11), u32(0), bs(0x1C), str("b:1883"), bs(0x1F), str("moving"), pair("k", "v"))),
		pk: &Disconnect{ReasonCode: UseAnotherServer, Properties: Properties{
			Present:       props(PropSessionExpiry, PropServerReference, PropReasonString, PropUserProperty),
			SessionExpiry: 0, ServerReference: "b:1883", ReasonString: "moving", User: []UserProperty{{"k", "v"}}}}},
	{name: "5.0 DISCONNECT explicit empty properties", v: V5, raw: bs(0xE0, 2, 0, 0), pk: &Disconnect{}, decodeOnly: true},
	{name: "5.0 AUTH empty", v: V5, raw: bs(0xF0, 0), pk: &Auth{}},
	{name: "5.0 AUTH continue", v: V5,
		raw: pkt(0xF0, bs(0x18), pblock(bs(0x15), str("SCRAM-SHA-1"), bs(0x16), str("\x01\x02"), bs(0x1F), str("more"), pair("n", "1"))),
		pk: &Auth{ReasonCode: ContinueAuthentication, Properties: Properties{
			Present:    props(PropAuthMethod, PropAuthData, PropReasonString, PropUserProperty),
			AuthMethod: "SCRAM-SHA-1", AuthData: []byte{1, 2}, ReasonString: "more", User: []UserProperty{{"n", "1"}}}}},
	{name: "5.0 AUTH reason code only", v: V5, raw: bs(0xF0, 1, 0x19), pk: &Auth{ReasonCode: ReAuthenticate}, decodeOnly: true},
}

type malformedCase struct {
	name string // the normative statement (or section) the packet breaks
	v    Version
	raw  []byte
	code ReasonCode
	max  int // maximum packet size; 0 for none
}

// conn5 builds a v5 CONNECT with the given flags, properties and payload.
func conn5(flags byte, propBlock []byte, payload ...[]byte) []byte {
	return pkt(0x10, str("MQTT"), bs(5, flags), u16(30), propBlock, cat(payload...))
}

func conn4(flags byte, payload ...[]byte) []byte {
	return pkt(0x10, str("MQTT"), bs(4, flags), u16(30), cat(payload...))
}

// pub5 builds a v5 QoS 0 PUBLISH to "t" with the given property block.
func pub5(propBlock []byte) []byte { return pkt(0x30, str("t"), propBlock, []byte("p")) }

var malformedCases = []malformedCase{
	// Fixed header.
	{"MQTT-2.1.3-1 reserved packet type 0", V5, bs(0x00, 0), MalformedPacket, 0},
	{"MQTT-2.1.3-1 CONNECT flags not 0", V311, cat(bs(0x11), conn4(0x02, str("c"))[1:]), MalformedPacket, 0},
	{"MQTT-2.1.3-1 PUBACK flags not 0", V311, bs(0x42, 2, 0, 1), MalformedPacket, 0},
	{"MQTT-2.1.3-1 PINGREQ flags not 0", V311, bs(0xC1, 0), MalformedPacket, 0},
	{"MQTT-3.3.1-4 publish qos 3", V311, pkt(0x36, str("t"), u16(1)), MalformedPacket, 0},
	{"MQTT-3.3.1-2 publish qos 0 with dup", V5, pkt(0x38, str("t"), noProps), MalformedPacket, 0},
	{"MQTT-3.6.1-1 pubrel flags 0000", V311, bs(0x60, 2, 0, 1), MalformedPacket, 0},
	{"MQTT-3.8.1-1 subscribe flags 0000", V311, pkt(0x80, u16(1), str("a"), bs(0)), MalformedPacket, 0},
	{"MQTT-3.10.1-1 unsubscribe flags 0011", V311, pkt(0xA3, u16(1), str("a")), MalformedPacket, 0},
	{"MQTT-3.14.1-1 disconnect flags not 0", V5, bs(0xE1, 0), MalformedPacket, 0},
	{"MQTT-3.15.1-1 auth flags not 0", V5, bs(0xF8, 0), MalformedPacket, 0},
	{"MQTT-1.5.5 remaining length of five bytes", V311, bs(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), MalformedPacket, 0},
	{"MQTT-1.5.5-1 remaining length not minimal", V311, bs(0xC0, 0x80, 0x00), MalformedPacket, 0},
	{"MQTT-1.5.5-1 remaining length 4 bytes not minimal", V311, bs(0x30, 0x85, 0x80, 0x80, 0x00), MalformedPacket, 0},
	{"MQTT-3.2.2-15 packet larger than maximum packet size", V5, pkt(0x30, str("t"), noProps, make([]byte, 100)), PacketTooLarge, 64},
	{"MQTT-3.2.2-15 maximum packet size counts the fixed header", V311, bs(0xC0, 0), PacketTooLarge, 1},

	// CONNECT.
	{"MQTT-3.1.2-1 protocol name MQTX", V311, pkt(0x10, str("MQTX"), bs(4, 2), u16(0), str("c")), ProtocolError, 0},
	{"MQTT-3.1.2-2 protocol level 6", V5, pkt(0x10, str("MQTT"), bs(6, 2), u16(0), noProps, str("c")), UnsupportedProtocolVersion, 0},
	{"MQTT-3.1.2-2 MQIsdp with level 4", V311, pkt(0x10, str("MQIsdp"), bs(4, 2), u16(0), str("c")), UnsupportedProtocolVersion, 0},
	{"MQTT-3.1.2-3 reserved connect flag", V311, conn4(0x03, str("c")), MalformedPacket, 0},
	{"MQTT-3.1.2-3 reserved connect flag 5.0", V5, conn5(0x03, noProps, str("c")), MalformedPacket, 0},
	{"MQTT-3.1.2-11 will qos without will flag", V5, conn5(0x0A, noProps, str("c")), MalformedPacket, 0},
	{"MQTT-3.1.2-13 will retain without will flag", V5, conn5(0x22, noProps, str("c")), MalformedPacket, 0},
	{"MQTT-3.1.2-15 will retain without will flag 3.1.1", V311, conn4(0x22, str("c")), MalformedPacket, 0},
	{"MQTT-3.1.2-12 will qos 3", V5, conn5(0x1E, noProps, str("c"), noProps, str("w"), str("x")), MalformedPacket, 0},
	{"MQTT-3.1.2-14 will qos 3 3.1.1", V311, conn4(0x1E, str("c"), str("w"), str("x")), MalformedPacket, 0},
	{"MQTT-3.1.2-22 password without user name 3.1.1", V311, conn4(0x42, str("c"), str("pw")), MalformedPacket, 0},
	{"MQTT-3.1.2-19 password flag without password", V5, conn5(0xC2, noProps, str("c"), str("u")), MalformedPacket, 0},
	{"MQTT-3.1.2-9 will flag without will topic", V5, conn5(0x06, noProps, str("c"), noProps), MalformedPacket, 0},
	{"MQTT-3.1.3-4 client id not UTF-8", V311, conn4(0x02, bs(0, 2, 0xC3, 0x28)), MalformedPacket, 0},
	{"MQTT-1.5.4-2 client id with U+0000", V311, conn4(0x02, str("a\x00b")), MalformedPacket, 0},
	{"MQTT-3.1.3-11 will topic not UTF-8", V311, conn4(0x06, str("c"), bs(0, 1, 0xFF), str("x")), MalformedPacket, 0},
	{"MQTT-4.7.0-1 will topic with wildcard", V5, conn5(0x06, noProps, str("c"), noProps, str("a/#"), str("x")), TopicNameInvalid, 0},
	{"MQTT-4.7.3-1 empty will topic", V311, conn4(0x06, str("c"), str(""), str("x")), ProtocolError, 0},
	{"MQTT-3.1.4-1 connect trailing bytes", V311, conn4(0x02, str("c"), str("extra")), MalformedPacket, 0},
	{"MQTT-3.1.2-16 user name without user name flag", V5, conn5(0x02, noProps, str("c"), str("u")), MalformedPacket, 0},
	{"§2.2.2.2 topic alias in CONNECT", V5, conn5(0x02, pblock(bs(0x23), u16(1)), str("c")), MalformedPacket, 0},
	{"§2.2.2.2 session expiry in will properties", V5, conn5(0x06, noProps, str("c"), pblock(bs(0x11), u32(1)), str("w"), str("x")), MalformedPacket, 0},
	{"§3.1.2.11.10 authentication data without method", V5, conn5(0x02, pblock(bs(0x16), str("d")), str("c")), ProtocolError, 0},
	{"§3.1.2.11.3 receive maximum 0", V5, conn5(0x02, pblock(bs(0x21), u16(0)), str("c")), ProtocolError, 0},
	{"§3.1.2.11.4 maximum packet size 0", V5, conn5(0x02, pblock(bs(0x27), u32(0)), str("c")), ProtocolError, 0},
	{"§3.1.2.11.7 request problem information 2", V5, conn5(0x02, pblock(bs(0x17, 2)), str("c")), ProtocolError, 0},
	{"§3.1.2.11.6 request response information 2", V5, conn5(0x02, pblock(bs(0x19, 2)), str("c")), ProtocolError, 0},
	{"§3.1.2.11.2 session expiry twice", V5, conn5(0x02, pblock(bs(0x11), u32(1), bs(0x11), u32(2)), str("c")), ProtocolError, 0},
	{"§3.1.3.2.3 will payload format twice", V5, conn5(0x06, noProps, str("c"), pblock(bs(1, 0, 1, 0)), str("w"), str("x")), ProtocolError, 0},
	{"§2.2.2.2 unknown property 0x04", V5, conn5(0x02, pblock(bs(0x04, 0)), str("c")), MalformedPacket, 0},
	{"§2.2.2.2 property identifier with continuation bit", V5, conn5(0x02, pblock(bs(0x81, 0x00)), str("c")), MalformedPacket, 0},
	{"§2.2.2.1 property length exceeds packet", V5, conn5(0x02, bs(0x10, 0x11), str("c")), MalformedPacket, 0},
	{"MQTT-1.5.5-1 property length not minimal", V5, conn5(0x02, bs(0x80, 0x00), str("c")), MalformedPacket, 0},
	{"§2.2.2.2 property value truncated", V5, conn5(0x02, pblock(bs(0x11, 0, 0)), str("c")), MalformedPacket, 0},
	{"MQTT-1.5.7-1 user property value not UTF-8", V5, conn5(0x02, pblock(bs(0x26), str("k"), bs(0, 1, 0x80)), str("c")), MalformedPacket, 0},

	// CONNACK.
	{"MQTT-3.2.2-1 connack reserved flags", V311, bs(0x20, 2, 2, 0), MalformedPacket, 0},
	{"MQTT-3.2.2-8 connack reason code 0x10", V5, bs(0x20, 3, 0, 0x10, 0), MalformedPacket, 0},
	{"MQTT-3.2.2-6 session present with an error", V5, bs(0x20, 3, 1, 0x80, 0), ProtocolError, 0},
	{"MQTT-3.2.2-4 session present with an error 3.1.1", V311, bs(0x20, 2, 1, 4), ProtocolError, 0},
	{"§3.2.2.2 3.1.1 connack return code 6", V311, bs(0x20, 2, 0, 6), MalformedPacket, 0},
	{"§3.2.2.3.4 maximum qos 2", V5, pkt(0x20, bs(0, 0), pblock(bs(0x24, 2))), ProtocolError, 0},
	{"§3.2.2.3.5 retain available 2", V5, pkt(0x20, bs(0, 0), pblock(bs(0x25, 2))), ProtocolError, 0},
	{"§3.2.2.3.11 wildcard subscription available 2", V5, pkt(0x20, bs(0, 0), pblock(bs(0x28, 2))), ProtocolError, 0},
	{"§3.2.2.3.13 shared subscription available twice", V5, pkt(0x20, bs(0, 0), pblock(bs(0x2A, 1, 0x2A, 1))), ProtocolError, 0},
	{"§2.2.2.2 will delay in CONNACK", V5, pkt(0x20, bs(0, 0), pblock(bs(0x18), u32(1))), MalformedPacket, 0},
	{"§3.2.2 connack without property length", V5, bs(0x20, 2, 0, 0), MalformedPacket, 0},
	{"§3.2 connack trailing byte 3.1.1", V311, bs(0x20, 3, 0, 0, 0), MalformedPacket, 0},

	// PUBLISH.
	{"MQTT-3.3.2-2 publish topic with +", V5, pkt(0x30, str("a/+"), noProps), TopicNameInvalid, 0},
	{"MQTT-3.3.2-2 publish topic with # 3.1.1", V311, pkt(0x30, str("#")), TopicNameInvalid, 0},
	{"MQTT-3.3.2-2 long publish topic with #", V311, pkt(0x30, str(strings.Repeat("abc/", 40)+"#")), TopicNameInvalid, 0},
	{"MQTT-2.2.1-3 publish qos 1 packet id 0", V5, pkt(0x32, str("t"), u16(0), noProps), ProtocolError, 0},
	{"MQTT-2.3.1-1 publish qos 2 packet id 0 3.1.1", V311, pkt(0x34, str("t"), u16(0)), ProtocolError, 0},
	{"MQTT-4.7.3-1 publish empty topic 3.1.1", V311, pkt(0x30, str(""), []byte("x")), ProtocolError, 0},
	{"§3.3.2.1 publish empty topic without topic alias", V5, pkt(0x30, str(""), noProps), ProtocolError, 0},
	{"MQTT-3.3.2-8 topic alias 0", V5, pub5(pblock(bs(0x23), u16(0))), ProtocolError, 0},
	{"MQTT-1.5.4-1 topic with a surrogate", V311, pkt(0x30, bs(0, 3, 0xED, 0xA0, 0x80)), MalformedPacket, 0},
	{"MQTT-1.5.4-1 topic with an overlong encoding", V311, pkt(0x30, bs(0, 2, 0xC0, 0xAF)), MalformedPacket, 0},
	{"MQTT-1.5.4-1 topic above U+10FFFF", V311, pkt(0x30, bs(0, 4, 0xF4, 0x90, 0x80, 0x80)), MalformedPacket, 0},
	{"MQTT-1.5.4-2 topic with U+0000", V5, pkt(0x30, str("a\x00"), noProps), MalformedPacket, 0},
	{"MQTT-3.3.2-1 publish topic length beyond packet", V311, pkt(0x30, bs(0, 9), []byte("abc")), MalformedPacket, 0},
	{"MQTT-3.3.2-1 publish without packet identifier", V311, pkt(0x32, str("t"), bs(1)), MalformedPacket, 0},
	{"MQTT-3.3.2-14 response topic with wildcard", V5, pub5(pblock(bs(0x08), str("r/#"))), ProtocolError, 0},
	{"MQTT-3.3.2-13 response topic not UTF-8", V5, pub5(pblock(bs(0x08), bs(0, 1, 0xFE))), MalformedPacket, 0},
	{"MQTT-3.3.2-19 content type with U+0000", V5, pub5(pblock(bs(0x03), str("\x00"))), MalformedPacket, 0},
	{"§3.3.2.3.2 payload format 2", V5, pub5(pblock(bs(0x01, 2))), ProtocolError, 0},
	{"§3.3.2.3.2 payload format twice", V5, pub5(pblock(bs(0x01, 1, 0x01, 1))), ProtocolError, 0},
	{"§3.3.2.3.4 topic alias twice", V5, pub5(pblock(bs(0x23), u16(1), bs(0x23), u16(1))), ProtocolError, 0},
	{"§3.3.2.3.8 subscription identifier 0", V5, pub5(pblock(bs(0x0B, 0))), ProtocolError, 0},
	{"MQTT-1.5.5 subscription identifier of five bytes", V5, pub5(pblock(bs(0x0B, 0x80, 0x80, 0x80, 0x80, 0x01))), MalformedPacket, 0},
	{"§2.2.2.2 reason string in PUBLISH", V5, pub5(pblock(bs(0x1F), str("no"))), MalformedPacket, 0},

	// PUBACK, PUBREC, PUBREL, PUBCOMP.
	{"MQTT-3.4.2-1 puback reason code 0x92", V5, bs(0x40, 3, 0, 1, 0x92), MalformedPacket, 0},
	{"MQTT-3.5.2-1 pubrec reason code 0x01", V5, bs(0x50, 3, 0, 1, 0x01), MalformedPacket, 0},
	{"MQTT-3.6.2-1 pubrel reason code 0x10", V5, bs(0x62, 3, 0, 1, 0x10), MalformedPacket, 0},
	{"MQTT-3.7.2-1 pubcomp reason code 0x80", V5, bs(0x70, 3, 0, 1, 0x80), MalformedPacket, 0},
	{"§3.4 puback remaining length 3 in 3.1.1", V311, bs(0x40, 3, 0, 1, 0), MalformedPacket, 0},
	{"§3.4 puback truncated packet id", V311, bs(0x40, 1, 0), MalformedPacket, 0},
	{"§3.4.2.2 puback trailing bytes after properties", V5, bs(0x40, 5, 0, 1, 0, 0, 9), MalformedPacket, 0},
	{"§2.2.2.2 topic alias in PUBACK", V5, pkt(0x40, u16(1), bs(0), pblock(bs(0x23), u16(1))), MalformedPacket, 0},
	{"§3.4.2.2.2 reason string twice", V5, pkt(0x40, u16(1), bs(0), pblock(bs(0x1F), str("a"), bs(0x1F), str("b"))), ProtocolError, 0},

	// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK.
	{"MQTT-3.8.3-2 subscribe without filters", V5, pkt(0x82, u16(1), noProps), ProtocolError, 0},
	{"MQTT-3.8.3-3 subscribe without filters 3.1.1", V311, pkt(0x82, u16(1)), ProtocolError, 0},
	{"MQTT-3.8.3-5 subscription options reserved bits", V5, pkt(0x82, u16(1), noProps, str("a"), bs(0x40)), MalformedPacket, 0},
	{"MQTT-3.8.3-4 requested qos upper bits 3.1.1", V311, pkt(0x82, u16(1), str("a"), bs(0x04)), MalformedPacket, 0},
	{"MQTT-3.8.3-4 requested qos 3 3.1.1", V311, pkt(0x82, u16(1), str("a"), bs(0x03)), MalformedPacket, 0},
	{"§3.8.3.1 maximum qos 3", V5, pkt(0x82, u16(1), noProps, str("a"), bs(0x03)), ProtocolError, 0},
	{"§3.8.3.1 retain handling 3", V5, pkt(0x82, u16(1), noProps, str("a"), bs(0x30)), ProtocolError, 0},
	{"MQTT-2.2.1-3 subscribe packet id 0", V5, pkt(0x82, u16(0), noProps, str("a"), bs(0)), ProtocolError, 0},
	{"MQTT-4.7.3-1 subscribe empty filter", V311, pkt(0x82, u16(1), str(""), bs(0)), ProtocolError, 0},
	{"§3.8.2.1.2 two subscription identifiers", V5, pkt(0x82, u16(1), pblock(bs(0x0B, 1, 0x0B, 2)), str("a"), bs(0)), ProtocolError, 0},
	{"§3.8.2.1.2 subscription identifier 0 in SUBSCRIBE", V5, pkt(0x82, u16(1), pblock(bs(0x0B, 0)), str("a"), bs(0)), ProtocolError, 0},
	{"MQTT-3.8.3-1 subscribe filter not UTF-8", V311, pkt(0x82, u16(1), bs(0, 1, 0xC3), bs(0)), MalformedPacket, 0},
	{"§3.8.3 subscribe filter without options byte", V311, pkt(0x82, u16(1), str("a")), MalformedPacket, 0},
	{"§3.8.3 subscribe filter length beyond packet", V311, pkt(0x82, u16(1), bs(0, 200), []byte("ab")), MalformedPacket, 0},
	{"§3.8.3 subscribe half a length", V311, pkt(0x82, u16(1), str("a"), bs(0), bs(0)), MalformedPacket, 0},
	{"§2.2.2.2 reason string in SUBSCRIBE", V5, pkt(0x82, u16(1), pblock(bs(0x1F), str("x")), str("a"), bs(0)), MalformedPacket, 0},
	{"MQTT-3.9.3-2 suback return code 3 3.1.1", V311, bs(0x90, 3, 0, 1, 3), MalformedPacket, 0},
	{"MQTT-3.9.3-2 suback reason code 0x10", V5, bs(0x90, 4, 0, 1, 0, 0x10), MalformedPacket, 0},
	{"MQTT-3.8.4-6 suback without reason codes", V311, bs(0x90, 2, 0, 1), ProtocolError, 0},
	{"MQTT-3.10.3-2 unsubscribe without filters", V5, pkt(0xA2, u16(1), noProps), ProtocolError, 0},
	{"MQTT-2.2.1-3 unsubscribe packet id 0", V311, pkt(0xA2, u16(0), str("a")), ProtocolError, 0},
	{"MQTT-4.7.3-1 unsubscribe empty filter", V311, pkt(0xA2, u16(1), str("")), ProtocolError, 0},
	{"MQTT-3.10.3-1 unsubscribe filter with U+0000", V311, pkt(0xA2, u16(1), str("\x00")), MalformedPacket, 0},
	{"§3.10.3 unsubscribe filter length beyond packet", V5, pkt(0xA2, u16(1), noProps, bs(0, 5, 'a')), MalformedPacket, 0},
	{"MQTT-3.11.3-2 unsuback reason code 0x92", V5, bs(0xB0, 4, 0, 1, 0, 0x92), MalformedPacket, 0},
	{"§3.11.3 unsuback without reason codes", V5, bs(0xB0, 3, 0, 1, 0), ProtocolError, 0},
	{"§3.11 unsuback trailing bytes 3.1.1", V311, bs(0xB0, 3, 0, 1, 0), MalformedPacket, 0},

	// PINGREQ, PINGRESP, DISCONNECT, AUTH.
	{"§3.12 pingreq remaining length 1", V311, bs(0xC0, 1, 0), MalformedPacket, 0},
	{"§3.13 pingresp remaining length 1", V5, bs(0xD0, 1, 0), MalformedPacket, 0},
	{"MQTT-3.14.2-1 disconnect reason code 0x01", V5, bs(0xE0, 1, 0x01), MalformedPacket, 0},
	{"§3.14 disconnect with a body 3.1.1", V311, bs(0xE0, 1, 0), MalformedPacket, 0},
	{"§2.2.2.2 topic alias in DISCONNECT", V5, pkt(0xE0, bs(0), pblock(bs(0x23), u16(1))), MalformedPacket, 0},
	{"§3.14.2.2 disconnect property length exceeds packet", V5, bs(0xE0, 3, 0, 5, 0x11), MalformedPacket, 0},
	{"MQTT-3.15.2-1 auth reason code 0x01", V5, bs(0xF0, 1, 0x01), MalformedPacket, 0},
	{"§3.15.2.2.3 authentication data twice", V5, pkt(0xF0, bs(0x18), pblock(bs(0x16), str("a"), bs(0x16), str("b"))), ProtocolError, 0},
	{"MQTT-2.2.2-1 (3.1.1) auth is a reserved type", V311, bs(0xF0, 0), MalformedPacket, 0},
}
