package broker_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

func TestLimitMaxConnections(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.MaxConnections = 2 })
	for i := 0; i < 2; i++ {
		dialRaw(t, b.Addr, mqtt.V5).connect(&mqtt.Connect{ClientID: fmt.Sprint("c", i), CleanStart: true, KeepAlive: 30})
	}
	r := dialRaw(t, b.Addr, mqtt.V5)
	r.send(&mqtt.Connect{ProtocolName: "MQTT", Version: mqtt.V5, ClientID: "v5", CleanStart: true, KeepAlive: 30})
	if got := r.expectClosed(5 * time.Second); len(got) != 1 || got[0].(*mqtt.Connack).ReasonCode != mqtt.ServerBusy {
		t.Fatalf("v5 over the limit: %v", describe(got))
	}
	r = dialRaw(t, b.Addr, mqtt.V311)
	r.send(&mqtt.Connect{ProtocolName: "MQTT", Version: mqtt.V311, ClientID: "v3", CleanStart: true, KeepAlive: 30})
	if got := r.expectClosed(5 * time.Second); len(got) != 1 || got[0].(*mqtt.Connack).ReasonCode != mqtt.V3ServerUnavailable {
		t.Fatalf("3.1.1 over the limit: %v", describe(got))
	}
}

func TestLimitTopicLengthAndLevels(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.MaxTopicLevels = 3; c.MaxTopicLength = 20 })
	r := dialRaw(t, b.Addr, mqtt.V5)
	r.connect(&mqtt.Connect{ClientID: "v5", CleanStart: true, KeepAlive: 30})
	for i, name := range []string{"a/b/c/d", "this/topic/is/too-long"} {
		r.send(&mqtt.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: name, Payload: []byte("x")})
		if ack := r.read().(*mqtt.Puback); ack.ReasonCode != mqtt.TopicNameInvalid {
			t.Fatalf("publish %q: PUBACK 0x%02X, want 0x90", name, byte(ack.ReasonCode))
		}
	}
	r.send(&mqtt.Subscribe{PacketID: 9, Subscriptions: []mqtt.Subscription{{Filter: "a/b/c/#"}, {Filter: "a/+/c"}}})
	if sa := r.read().(*mqtt.Suback); sa.ReasonCodes[0] != mqtt.TopicFilterInvalid || sa.ReasonCodes[1] != 0 {
		t.Fatalf("SUBACK %v", sa.ReasonCodes)
	}
	// 3.x cannot be told: the connection is closed.
	r3 := dialRaw(t, b.Addr, mqtt.V311)
	r3.connect(&mqtt.Connect{ClientID: "v3", CleanStart: true, KeepAlive: 30})
	r3.send(&mqtt.Publish{Topic: "a/b/c/d", Payload: []byte("x")})
	if got := r3.expectClosed(5 * time.Second); len(got) != 0 {
		t.Fatalf("3.1.1: %v", describe(got))
	}
	if b.Server.Stats().Dropped.TopicLimit != 2 {
		t.Fatalf("drops not counted: %+v", b.Server.Stats())
	}
}

func TestLimitSubscriptionsPerSession(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.MaxSubscriptions = 2 })
	for _, v := range []mqtt.Version{mqtt.V5, mqtt.V311} {
		r := dialRaw(t, b.Addr, v)
		r.connect(&mqtt.Connect{ClientID: fmt.Sprint("s", v), CleanStart: true, KeepAlive: 30})
		r.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "a"}, {Filter: "b"}, {Filter: "c"}, {Filter: "a", QoS: 1}}})
		want := mqtt.QuotaExceeded
		if v != mqtt.V5 {
			want = mqtt.V3SubackFailure
		}
		sa := r.read().(*mqtt.Suback)
		if sa.ReasonCodes[0] != 0 || sa.ReasonCodes[1] != 0 || sa.ReasonCodes[2] != want || sa.ReasonCodes[3] != 1 {
			t.Fatalf("%s: SUBACK %v (re-subscribing an existing filter must still work)", v, sa.ReasonCodes)
		}
	}
}

func TestLimitPublishRate(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.MaxPublishRate = 20; c.PublishBurst = 5 })
	// v5: a client beyond its burst is disconnected with 0x96 Message Rate Too High.
	r := dialRaw(t, b.Addr, mqtt.V5)
	r.connect(&mqtt.Connect{ClientID: "fast5", CleanStart: true, KeepAlive: 30})
	for i := 1; i <= 10; i++ {
		r.send(&mqtt.Publish{QoS: 1, PacketID: uint16(i), Topic: "rate", Payload: []byte("x")})
	}
	got := r.expectClosed(5 * time.Second)
	last, ok := got[len(got)-1].(*mqtt.Disconnect)
	if !ok || last.ReasonCode != mqtt.MessageRateTooHigh || len(got) < 5 || len(got) > 6 {
		t.Fatalf("want about 5 PUBACKs then DISCONNECT 0x96, got %v", describe(got))
	}
	// 3.1.1: nothing is refused, the publisher is slowed to the rate.
	r3 := dialRaw(t, b.Addr, mqtt.V311)
	r3.connect(&mqtt.Connect{ClientID: "fast3", CleanStart: true, KeepAlive: 30})
	start := time.Now()
	for i := 1; i <= 15; i++ {
		r3.send(&mqtt.Publish{QoS: 1, PacketID: uint16(i), Topic: "rate", Payload: []byte("x")})
	}
	for i := 0; i < 15; i++ {
		r3.read()
	}
	// 5 at once, 10 more at 20/s: about half a second.
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("3.1.1 publisher not slowed down: 15 acks in %v", d)
	}
}

func TestLimitQueuedMessagesAndInflight(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.MaxQueuedMessages = 3; c.MaxInflight = 2 })
	sub := dialRaw(t, b.Addr, mqtt.V311)
	sub.connect(&mqtt.Connect{ClientID: "q", KeepAlive: 30})
	sub.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "q/#", QoS: 1}}})
	sub.read()
	pub := dialRaw(t, b.Addr, mqtt.V311)
	pub.connect(&mqtt.Connect{ClientID: "p", CleanStart: true, KeepAlive: 30})
	for i := 1; i <= 8; i++ {
		pub.send(&mqtt.Publish{QoS: 1, PacketID: uint16(i), Topic: "q/x", Payload: []byte(fmt.Sprint(i))})
		pub.read()
	}
	// 2 in flight (MaxInflight), 3 queued, 3 dropped.
	got := []string{string(sub.read().(*mqtt.Publish).Payload), string(sub.read().(*mqtt.Publish).Payload)}
	if pk, err := sub.readErr(200 * time.Millisecond); err == nil {
		t.Fatalf("more than MaxInflight in flight: %v", pk.Type())
	}
	if got[0] != "1" || got[1] != "2" {
		t.Fatalf("got %v", got)
	}
	if n := b.Server.Stats().Dropped.QueueFull; n != 3 {
		t.Fatalf("dropped_queue_full = %d, want 3", n)
	}
	sub.send(&mqtt.Puback{PacketID: 1}, &mqtt.Puback{PacketID: 2})
	for _, want := range []string{"3", "4", "5"} {
		p := sub.read().(*mqtt.Publish)
		if string(p.Payload) != want {
			t.Fatalf("got %q, want %q", p.Payload, want)
		}
		sub.send(&mqtt.Puback{PacketID: p.PacketID})
	}
}

// A subscriber that never reads while a publisher floods it is cut off; the broker's memory stays
// bounded, and other clients keep their latency meanwhile.
func TestSlowConsumerCutOffWithBoundedMemory(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.MaxPendingBytes = 256 << 10; c.WriteTimeout = time.Second })
	stuck := dialRaw(t, b.Addr, mqtt.V311)
	stuck.connect(&mqtt.Connect{ClientID: "stuck", CleanStart: true, KeepAlive: 60})
	stuck.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "flood/#", QoS: 1}}})
	stuck.read()
	// A healthy pair on another topic measures latency during the flood.
	probeSub := dialRaw(t, b.Addr, mqtt.V311)
	probeSub.connect(&mqtt.Connect{ClientID: "probe-sub", CleanStart: true, KeepAlive: 60})
	probeSub.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "probe"}}})
	probeSub.read()
	probePub := dialRaw(t, b.Addr, mqtt.V311)
	probePub.connect(&mqtt.Connect{ClientID: "probe-pub", CleanStart: true, KeepAlive: 60})

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rssBefore := vmRSS()
	flood := dialRaw(t, b.Addr, mqtt.V311)
	flood.connect(&mqtt.Connect{ClientID: "flood", CleanStart: true, KeepAlive: 60})
	payload := make([]byte, 16<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := []byte{}
		for i := 0; i < 2000; i++ {
			buf, _ = (&mqtt.Publish{QoS: 0, Topic: "flood/x", Payload: payload}).AppendTo(buf[:0], mqtt.V311)
			_ = flood.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := flood.conn.Write(buf); err != nil {
				return
			}
		}
	}()
	var worst time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		probePub.send(&mqtt.Publish{Topic: "probe", Payload: []byte("ping")})
		probeSub.read()
		worst = max(worst, time.Since(start))
		time.Sleep(20 * time.Millisecond)
	}
	<-done
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("RSS %d KiB before, %d KiB after a 32 MiB QoS 0 flood to a stuck subscriber; heap in use %d -> %d KiB; worst probe latency %v",
		rssBefore, vmRSS(), before.HeapInuse>>10, after.HeapInuse>>10, worst)
	if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 16<<20 {
		t.Errorf("heap grew by %d MiB during a 32 MiB flood to a stuck subscriber", grow>>20)
	}
	if worst > 500*time.Millisecond {
		t.Errorf("other clients' latency reached %v during the flood", worst)
	}
	// QoS 0 to the stuck subscriber was dropped, and the subscriber was cut off after its write
	// deadline passed.
	waitFor(t, func() bool { return b.Server.Stats().Dropped.SlowConsumer > 0 })
	deadline := time.Now().Add(10 * time.Second)
	for b.Server.Stats().Disconnects.ConnectionLost+b.Server.Stats().Disconnects.SlowConsumer == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stuck subscriber never cut off: %+v", b.Server.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
