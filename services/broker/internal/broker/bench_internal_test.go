package broker

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// discardConn is a net.Conn whose writes succeed at once, so benchmarks measure the broker's own
// work on the publish path and not the kernel's.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) Read([]byte) (int, error)         { select {} }
func (discardConn) Close() error                     { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (discardConn) SetDeadline(t time.Time) error    { return nil }

func benchServer(b *testing.B) *Server {
	cfg := config.Default()
	cfg.SysInterval = 0
	return New(cfg, zerolog.Nop())
}

// benchClient is a connected client on a discardConn with its own session.
func benchClient(s *Server, id string, v mqtt.Version) *client {
	c := newClient(s, discardConn{})
	c.id, c.version, c.sendQuota = id, v, 65535
	c.sess = newSession(s, id)
	c.sess.client.Store(c)
	s.sessions[id] = c.sess
	return c
}

// BenchmarkRouteFanOut routes one QoS 0 message to N subscribers of one filter (S2's shape).
func BenchmarkRouteFanOut(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			s := benchServer(b)
			for i := 0; i < n; i++ {
				c := benchClient(s, fmt.Sprint("sub", i), mqtt.V311)
				_, _, _ = s.subscribe(c.sess, "bench/+/x", subOpts{})
			}
			pub := benchClient(s, "pub", mqtt.V311)
			m := &message{Topic: "bench/1/x", Payload: make([]byte, 64)}
			now := time.Now()
			b.ReportAllocs()
			b.SetBytes(int64(len(m.Payload) * n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.router.route(m, now, pub, nil, nil)
				if len(pub.kicks) > 0 {
					pub.flushKicks()
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkRouteFanIn is S1's shape: many topics, one wildcard subscriber.
func BenchmarkRouteFanIn(b *testing.B) {
	s := benchServer(b)
	sub := benchClient(s, "sub", mqtt.V311)
	_, _, _ = s.subscribe(sub.sess, "fanin/#", subOpts{})
	for i := 0; i < 1000; i++ {
		c := benchClient(s, fmt.Sprint("other", i), mqtt.V311)
		_, _, _ = s.subscribe(c.sess, fmt.Sprintf("other/%d/#", i), subOpts{})
	}
	pub := benchClient(s, "pub", mqtt.V311)
	m := &message{Topic: "fanin/device/17/temp", Payload: make([]byte, 64)}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.router.route(m, now, pub, nil, nil)
		if len(pub.kicks) > 0 {
			pub.flushKicks()
		}
	}
}

// BenchmarkSessionQoS1 is one QoS 1 message through a session's inflight window: deliver, then
// the subscriber's PUBACK.
func BenchmarkSessionQoS1(b *testing.B) {
	for _, v := range []mqtt.Version{mqtt.V311, mqtt.V5} {
		b.Run(v.String(), func(b *testing.B) {
			s := benchServer(b)
			c := benchClient(s, "sub", v)
			m := &message{Topic: "q/1", Payload: make([]byte, 64), QoS: 1}
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.sess.deliver(delivery{msg: m, qos: 1}, now, c)
				c.sess.ack(c.sess.nextID, false, c)
				if len(c.kicks) > 0 {
					c.flushKicks()
				}
			}
		})
	}
}

// BenchmarkSessionQueue fills an offline session's queue and drains it through the window.
func BenchmarkSessionQueue(b *testing.B) {
	s := benchServer(b)
	c := benchClient(s, "sub", mqtt.V311)
	c.sendQuota = 16
	m := &message{Topic: "q/1", Payload: make([]byte, 64), QoS: 1}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// 16 in flight, the rest queued, then acknowledged one by one.
		for j := 0; j < 64; j++ {
			c.sess.deliver(delivery{msg: m, qos: 1}, now, c)
		}
		for len(c.sess.inflight) > 0 {
			c.sess.ack(c.sess.inflight[0].id, false, c)
		}
		c.flushKicks()
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "msgs/s")
}
