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
// Parse does the same over a byte slice that may hold a partial packet (ErrIncomplete).
//
// # Writing
//
// Every packet has AppendTo(dst, version), which appends its encoding to dst and allocates nothing
// when dst has room. Publish also has AppendHeader, which encodes everything but the payload, so a
// large payload is written with net.Buffers and never copied. Size reports the encoded length, for
// checks against a peer's Maximum Packet Size.
//
// # Properties
//
// MQTT 5.0 properties live in one Properties struct. A bit set records which were present, so
// "absent" and "zero" stay different without pointers (and without allocations). The table
// propertyAllowed says which packet may carry which property [MQTT-2.2.2-2].
//
// # Errors
//
// Decoding errors are *Error values carrying the reason code the spec asks the receiver to answer
// with (0x81 Malformed Packet, 0x82 Protocol Error, 0x95 Packet Too Large, 0x84 Unsupported Protocol
// Version, ...). Each check cites its normative statement, as in // [MQTT-3.3.2-2].
package mqtt
