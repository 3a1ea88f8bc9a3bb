// Package mqtt is MCloudTT's codec for every control packet of MQTT 3.1, 3.1.1 and 5.0.
//
// It is pure: bytes or an io.Reader in, packets out; no sockets, goroutines or logging. The broker,
// the adapter, the gateway and the tests all use it.
//
// # Reading
//
// ReadFixedHeader reads the first byte and the remaining length, and rejects a remaining length
// above the caller's maximum packet size before anything is allocated [MQTT-3.2.2-15] (CVE-2023-0809
// was a broker allocating first). The caller then supplies the body, and Decode (or a packet's own
// Decode method) parses it. Decoded packets alias the body: strings and byte slices point into it,
// so a body must not be reused while a packet decoded from it is alive. That makes decoding a
// PUBLISH free of allocations once the body exists; a broker allocates one body per PUBLISH and
// shares it with every subscriber.
//
// Reader wraps the two steps for callers that want one packet at a time from an io.Reader, and
// Parse does the same over a byte slice that may hold a partial packet (ErrIncomplete). Reader
// allocates a PUBLISH's struct and body together (one allocation up to 256 KiB), and a body
// above 256 KiB only as its bytes arrive, so a peer announcing a large packet and sending
// nothing cannot make it allocate much whatever the size limit.
//
// On a decoding error the packet decoded so far is returned with the error, so a server can
// answer in the client's protocol version (a *Connect's Version) or acknowledge by packet
// identifier (a *Publish with a wildcard in its topic).
//
// # Writing
//
// Every packet has AppendTo(dst, version), which appends its encoding to dst and allocates nothing
// when dst has room. It refuses (ErrInvalidPacket) what cannot be framed or that a receiver would
// reject as malformed: QoS 3, a missing packet identifier, a string over 65,535 bytes, a property
// the packet may not carry, AUTH in 3.x. It does not re-check string contents. In 3.x the 5.0-only
// fields (properties, most reason codes, subscription options) are dropped, SUBACK failures are
// sent as 0x80 and CONNACK reason codes are translated (V3ConnackCode). Publish also has
// AppendHeader, which encodes everything but the payload, so a large payload is written with
// net.Buffers and never copied. Size reports the encoded length, for checks against a peer's
// Maximum Packet Size (-1 when AppendTo would fail).
//
// # Properties
//
// MQTT 5.0 properties live in one Properties struct. A bit set records which were present, so
// "absent" and "zero" stay different without pointers (and without allocations). The table
// propertyAllowed says which packet may carry which property (§2.2.2.2: any other is a Malformed
// Packet); a single-valued property repeated, or a value out of its range, is a Protocol Error.
//
// # Errors
//
// Decoding errors are *Error values carrying the reason code the spec asks the receiver to answer
// with (0x81 Malformed Packet, 0x82 Protocol Error, 0x95 Packet Too Large, 0x84 Unsupported Protocol
// Version, ...). Each check cites its normative statement, as in // [MQTT-3.3.2-2], or the section
// (§3.8.3.1) where the rule has no identifier. Where 3.1.1 and 5.0 number a rule differently both
// are given.
//
// # Allocation
//
// Decoding never allocates from a length it has not checked against the bytes actually present.
// Besides the packet struct (when Decode or Reader makes it), the only allocations are exactly
// sized slices for lists (User Properties, Subscription Identifiers, SUBSCRIBE's subscriptions,
// UNSUBSCRIBE's filters), each element of which takes at least 2 wire bytes per 4 bytes of slice
// (Subscription Identifier), or 3 per 16, 4 per 24 or 5 per 32: so Decode allocates at most
// 8 bytes per body byte plus the struct (see TestDecodeAllocationBound).
package mqtt
