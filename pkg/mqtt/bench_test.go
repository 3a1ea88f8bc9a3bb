package mqtt

import "testing"

// BenchmarkDecodePublish decodes into a caller's struct from a caller's body: no allocation.
func BenchmarkDecodePublish(b *testing.B) {
	for _, bv := range benchVersions {
		for _, ps := range payloadSizes {
			b.Run(bv.name+"/"+ps.name, func(b *testing.B) {
				raw := mustEncode(b, benchPublish(bv.v, ps.n), bv.v)
				fh, hl, err := parseFixedHeader(raw, 0)
				if err != nil {
					b.Fatal(err)
				}
				body := raw[hl:]
				var p Publish
				b.ReportAllocs()
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					if err := p.Decode(fh.Flags, body, bv.v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkReadPublish reads from a stream through Reader: one allocation (struct and body).
func BenchmarkReadPublish(b *testing.B) {
	for _, bv := range benchVersions {
		for _, ps := range payloadSizes {
			b.Run(bv.name+"/"+ps.name, func(b *testing.B) {
				raw := mustEncode(b, benchPublish(bv.v, ps.n), bv.v)
				rd := NewReader(&loopReader{data: raw}, 1<<20)
				rd.SetVersion(bv.v)
				b.ReportAllocs()
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					if _, err := rd.ReadPacket(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEncodePublish encodes into a reused buffer: no allocation.
func BenchmarkEncodePublish(b *testing.B) {
	for _, bv := range benchVersions {
		for _, ps := range payloadSizes {
			b.Run(bv.name+"/"+ps.name, func(b *testing.B) {
				p := benchPublish(bv.v, ps.n)
				buf := make([]byte, 0, p.Size(bv.v))
				b.ReportAllocs()
				b.SetBytes(int64(cap(buf)))
				for b.Loop() {
					var err error
					if buf, err = p.AppendTo(buf[:0], bv.v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEncodePublishHeader encodes everything but the payload, for net.Buffers writes.
func BenchmarkEncodePublishHeader(b *testing.B) {
	for _, bv := range benchVersions {
		b.Run(bv.name, func(b *testing.B) {
			p := benchPublish(bv.v, 64<<10)
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				buf = p.AppendHeader(buf[:0], bv.v)
			}
		})
	}
}

// BenchmarkDecodePublishUserProperties shows the cost of the one allocation User Properties need.
func BenchmarkDecodePublishUserProperties(b *testing.B) {
	p := benchPublish(V5, 64)
	p.Properties.User = []UserProperty{{"trace-id", "4bf92f3577b34da6"}, {"source", "gateway-7"}}
	raw := mustEncode(b, p, V5)
	fh, hl, _ := parseFixedHeader(raw, 0)
	var d Publish
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := d.Decode(fh.Flags, raw[hl:], V5); err != nil {
			b.Fatal(err)
		}
	}
}

func benchConnect(v Version) *Connect {
	c := &Connect{CleanStart: true, KeepAlive: 60, ClientID: "sensor-00042", UsernameFlag: true,
		Username: "device", PasswordFlag: true, Password: []byte("correct horse battery staple"),
		WillFlag: true, WillQoS: 1, WillTopic: "devices/sensor-00042/status", WillPayload: []byte("offline")}
	if v == V5 {
		c.Properties.SessionExpiry = 3600
		c.Properties.Set(PropSessionExpiry)
		c.Properties.ReceiveMaximum = 100
		c.Properties.Set(PropReceiveMaximum)
		c.WillProperties.WillDelay = 10
		c.WillProperties.Set(PropWillDelay)
	}
	return c
}

func BenchmarkDecodeConnect(b *testing.B) {
	for _, bv := range benchVersions {
		b.Run(bv.name, func(b *testing.B) {
			raw := mustEncode(b, benchConnect(bv.v), bv.v)
			fh, hl, _ := parseFixedHeader(raw, 0)
			var c Connect
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if err := c.Decode(fh.Flags, raw[hl:], 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeConnect(b *testing.B) {
	for _, bv := range benchVersions {
		b.Run(bv.name, func(b *testing.B) {
			c := benchConnect(bv.v)
			buf := make([]byte, 0, c.Size(bv.v))
			b.ReportAllocs()
			b.SetBytes(int64(cap(buf)))
			for b.Loop() {
				var err error
				if buf, err = c.AppendTo(buf[:0], bv.v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse decodes a buffer holding many packets, as a reader of a whole read buffer would.
func BenchmarkParse(b *testing.B) {
	var buf []byte
	for i := 0; i < 100; i++ {
		buf = append(buf, mustEncode(b, benchPublish(V311, 64), V311)...)
		buf = append(buf, mustEncode(b, &Puback{PacketID: uint16(i + 1)}, V311)...)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		for rest := buf; len(rest) > 0; {
			_, n, err := Parse(rest, V311, 0)
			if err != nil {
				b.Fatal(err)
			}
			rest = rest[n:]
		}
	}
}
