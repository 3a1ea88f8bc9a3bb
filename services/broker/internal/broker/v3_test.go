package broker_test

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"

	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// v3Client connects a paho.mqtt.golang (MQTT 3.1.1) client.
func v3Client(t testing.TB, addr, id string, clean bool, mod ...func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(30 * time.Second).
		SetOrderMatters(false)
	for _, m := range mod {
		m(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() {
		if c.IsConnected() {
			c.Disconnect(50)
		}
	})
	return c
}

func wait(t testing.TB, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("token timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

func subscribe(t testing.TB, c paho.Client, filter string, qos byte, col *collector) {
	t.Helper()
	wait(t, c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) {
		col.add(received{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos(), Retain: m.Retained(), Dup: m.Duplicate()})
	}))
}

func TestV3PublishSubscribeAllQoS(t *testing.T) {
	b := startBroker(t)
	sub := v3Client(t, b.Addr, "sub", true)
	pub := v3Client(t, b.Addr, "pub", true)
	for subQoS := byte(0); subQoS <= 2; subQoS++ {
		col := newCollector()
		filter := fmt.Sprintf("qos/%d/#", subQoS)
		subscribe(t, sub, filter, subQoS, col)
		for pubQoS := byte(0); pubQoS <= 2; pubQoS++ {
			wait(t, pub.Publish(fmt.Sprintf("qos/%d/p%d", subQoS, pubQoS), pubQoS, false, fmt.Sprintf("m%d", pubQoS)))
		}
		got := col.wait(t, 3, 5*time.Second)
		for _, m := range got {
			var pq byte
			fmt.Sscanf(m.Payload, "m%d", &pq)
			if want := min(pq, subQoS); m.QoS != want {
				t.Errorf("sub qos %d, pub qos %d: delivered at qos %d, want %d", subQoS, pq, m.QoS, want)
			}
		}
		col.none(t, 3, 100*time.Millisecond)
	}
}

func TestV3WildcardsAndSysTopics(t *testing.T) {
	b := startBroker(t)
	// One client per filter: paho dispatches by matching filters itself, so a shared client would
	// hide what the broker sent.
	all, plus, sys := newCollector(), newCollector(), newCollector()
	subscribe(t, v3Client(t, b.Addr, "all", true), "#", 0, all)
	subscribe(t, v3Client(t, b.Addr, "plus", true), "+/b/+", 0, plus)
	subscribe(t, v3Client(t, b.Addr, "sys", true), "$SYS/#", 0, sys)
	pub := v3Client(t, b.Addr, "pub", true)
	for _, tp := range []string{"a/b/c", "a/b", "x/b/y/z", "/b/"} {
		wait(t, pub.Publish(tp, 0, false, tp))
	}
	all.wait(t, 4, 5*time.Second)
	got := plus.wait(t, 2, 5*time.Second)
	plus.none(t, 2, 100*time.Millisecond)
	seen := map[string]bool{}
	for _, m := range got {
		seen[m.Topic] = true
	}
	if !seen["a/b/c"] || !seen["/b/"] {
		t.Fatalf("+/b/+ got %v", got)
	}
	// $-topics are not matched by a leading wildcard [MQTT-4.7.2-1]: the broker's own $SYS messages
	// reach "$SYS/#" but not "#".
	b.Server.PublishSys()
	sys.wait(t, 1, 5*time.Second)
	all.none(t, 4, 200*time.Millisecond)
}

func TestV3RetainedSetReplaceClear(t *testing.T) {
	b := startBroker(t)
	pub := v3Client(t, b.Addr, "pub", true)
	wait(t, pub.Publish("ret/a", 1, true, "one"))
	wait(t, pub.Publish("ret/a", 1, true, "two"))
	wait(t, pub.Publish("ret/b", 0, true, "b"))
	sub := v3Client(t, b.Addr, "sub", true)
	col := newCollector()
	subscribe(t, sub, "ret/+", 1, col)
	got := col.wait(t, 2, 5*time.Second)
	col.none(t, 2, 100*time.Millisecond)
	for _, m := range got {
		if !m.Retain {
			t.Errorf("retained delivery without RETAIN flag: %+v", m)
		}
		if m.Topic == "ret/a" && m.Payload != "two" {
			t.Errorf("ret/a = %q, want the replacement", m.Payload)
		}
	}
	// Live messages reach existing subscribers with RETAIN 0 [MQTT-3.3.1-9].
	wait(t, pub.Publish("ret/a", 1, true, "three"))
	if m := col.wait(t, 3, 5*time.Second)[2]; m.Retain || m.Payload != "three" {
		t.Errorf("live retained publish delivered as %+v", m)
	}
	// An empty payload clears it.
	wait(t, pub.Publish("ret/a", 1, true, ""))
	sub2 := v3Client(t, b.Addr, "sub2", true)
	col2 := newCollector()
	subscribe(t, sub2, "ret/#", 1, col2)
	got = col2.wait(t, 1, 5*time.Second)
	col2.none(t, 1, 200*time.Millisecond)
	if got[0].Topic != "ret/b" {
		t.Fatalf("after clear got %v", got)
	}
}

func TestV3WillOnAbnormalCloseOnly(t *testing.T) {
	b := startBroker(t)
	watcher := v3Client(t, b.Addr, "watcher", true)
	col := newCollector()
	subscribe(t, watcher, "will/#", 1, col)

	// Normal DISCONNECT: no will [MQTT-3.1.2-10].
	polite := v3Client(t, b.Addr, "polite", true, func(o *paho.ClientOptions) { o.SetWill("will/polite", "gone", 1, false) })
	polite.Disconnect(100)
	// Abnormal close: the will is published.
	r := dialRaw(t, b.Addr, 4)
	r.connect(rawConnectWithWill("rude", "will/rude", "dead", 1))
	_ = r.conn.Close()
	got := col.wait(t, 1, 5*time.Second)
	col.none(t, 1, 200*time.Millisecond)
	if got[0].Topic != "will/rude" || got[0].Payload != "dead" || got[0].QoS != 1 {
		t.Fatalf("got %v", got)
	}
}

func TestV3PersistentSessionQueuesWhileOffline(t *testing.T) {
	b := startBroker(t)
	col := newCollector()
	handler := func(_ paho.Client, m paho.Message) {
		col.add(received{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos()})
	}
	ordered := func(o *paho.ClientOptions) { o.SetOrderMatters(true) }
	sub := v3Client(t, b.Addr, "durable", false, ordered)
	wait(t, sub.Subscribe("queue/#", 1, handler))
	sub.Disconnect(50)

	pub := v3Client(t, b.Addr, "pub", true)
	// QoS 0 first: the QoS 1 acks that follow prove it was handled before the subscriber returns.
	wait(t, pub.Publish("queue/x", 0, false, "qos0-not-queued"))
	for i := 0; i < 5; i++ {
		wait(t, pub.Publish("queue/x", 1, false, fmt.Sprint(i)))
	}
	sub = v3Client(t, b.Addr, "durable", false, ordered, func(o *paho.ClientOptions) {
		o.SetDefaultPublishHandler(handler)
	})
	if !sub.IsConnected() {
		t.Fatal("not connected")
	}
	got := col.wait(t, 5, 5*time.Second)
	col.none(t, 5, 200*time.Millisecond)
	for i, m := range got {
		if m.Payload != fmt.Sprint(i) {
			t.Fatalf("queued messages out of order: %v", got)
		}
	}
}

func TestV3TakeoverClosesOldConnection(t *testing.T) {
	b := startBroker(t)
	lost := make(chan error, 1)
	first := v3Client(t, b.Addr, "same", true, func(o *paho.ClientOptions) {
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	})
	_ = first
	second := v3Client(t, b.Addr, "same", true)
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("old connection not closed on takeover")
	}
	if !second.IsConnected() {
		t.Fatal("new connection lost")
	}
}

func TestV3SharedSubscriptionSplitsMessages(t *testing.T) {
	b := startBroker(t)
	c1, c2 := newCollector(), newCollector()
	s1 := v3Client(t, b.Addr, "m1", true)
	s2 := v3Client(t, b.Addr, "m2", true)
	subscribe(t, s1, "$share/g/jobs/#", 1, c1)
	subscribe(t, s2, "$share/g/jobs/#", 1, c2)
	pub := v3Client(t, b.Addr, "pub", true)
	const n = 20
	for i := 0; i < n; i++ {
		wait(t, pub.Publish("jobs/x", 1, false, fmt.Sprint(i)))
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c1.mu.Lock()
		c2.mu.Lock()
		total, a, bb := len(c1.msgs)+len(c2.msgs), len(c1.msgs), len(c2.msgs)
		c2.mu.Unlock()
		c1.mu.Unlock()
		if total == n {
			if a == 0 || bb == 0 {
				t.Fatalf("one member got everything: %d/%d", a, bb)
			}
			return
		}
		if total > n {
			t.Fatalf("duplicates across the group: %d + %d", a, bb)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("messages missing")
}

func TestV3KeepAliveTimeoutSendsWill(t *testing.T) {
	b := startBroker(t)
	watcher := v3Client(t, b.Addr, "watcher", true)
	col := newCollector()
	subscribe(t, watcher, "ka/#", 0, col)
	r := dialRaw(t, b.Addr, 4)
	p := rawConnectWithWill("sleepy", "ka/will", "timeout", 0)
	p.KeepAlive = 1
	r.connect(p)
	start := time.Now()
	// Silence: the broker closes after 1.5 x keep alive [MQTT-3.1.2-24].
	r.expectClosed(5 * time.Second)
	if d := time.Since(start); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 1.5 s", d)
	}
	col.wait(t, 1, 5*time.Second)
}

func TestConnectTimeout(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.ConnectTimeout = 300 * time.Millisecond })
	r := dialRaw(t, b.Addr, 4)
	start := time.Now()
	r.expectClosed(5 * time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

// Many CONNECTs with one client id at once: exactly one connection owns the session afterwards.
func TestConcurrentTakeoversLeaveOneOwner(t *testing.T) {
	b := startBroker(t)
	const n = 20
	conns := make([]*rawConn, n)
	done := make(chan int, n)
	for i := range conns {
		conns[i] = dialRaw(t, b.Addr, mqtt.V5)
		go func(i int) {
			conns[i].send(&mqtt.Connect{ProtocolName: "MQTT", Version: mqtt.V5, ClientID: "contested", KeepAlive: 30})
			done <- i
		}(i)
	}
	for range conns {
		<-done
	}
	waitFor(t, func() bool { return b.Server.Stats().Clients == 1 })
	time.Sleep(200 * time.Millisecond)
	if c := b.Server.Stats().Clients; c != 1 {
		t.Fatalf("%d clients connected with one client id", c)
	}
	// The survivor works: it can subscribe and receive.
	alive := 0
	for _, r := range conns {
		r.send(&mqtt.Pingreq{})
		for {
			pk, err := r.readErr(300 * time.Millisecond)
			if err != nil {
				break
			}
			if pk.Type() == mqtt.PINGRESP {
				alive++
				break
			}
		}
	}
	if alive != 1 {
		t.Fatalf("%d connections answer PINGREQ, want 1", alive)
	}
}
