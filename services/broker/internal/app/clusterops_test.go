package app

import (
	"fmt"
	"os"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/metricstest"
)

// replicas starts n in-process replicas on one Redis and waits until each sees the others.
func replicas(t *testing.T, rs *redistest.Server, n int, mod func(i int, c *config.Config)) []Addrs {
	return replicasFrom(t, rs, 0, n, mod)
}

// replicasFrom starts replicas first .. first+n-1 (replica-a is 0).
func replicasFrom(t *testing.T, rs *redistest.Server, first, n int, mod func(i int, c *config.Config)) []Addrs {
	t.Helper()
	out := make([]Addrs, n)
	for i := range out {
		i := first + i
		out[i-first] = serve(t, func(c *config.Config) {
			c.ID = fmt.Sprintf("replica-%c", 'a'+i)
			c.RedisAddrs = []string{rs.Addr()}
			c.Env = rs.Env() // AUTH and TLS, where rs has them
			c.HeartbeatInterval = 100 * time.Millisecond
			c.PeerTimeout = 3 * time.Second
			c.HTTPAddr = "127.0.0.1:0"
			if mod != nil {
				mod(i, c)
			}
		})
	}
	for _, a := range out {
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, _ := get(t, "http://"+a.HTTP+"/readyz")
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("replica never ready")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out
}

type inbox chan pahov3.Message

func (in inbox) next(t *testing.T, within time.Duration) pahov3.Message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(within):
		t.Fatal("no message")
		return nil
	}
}

func (in inbox) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("unexpected message on %s: %q", m.Topic(), m.Payload())
	case <-time.After(within):
	}
}

func subscribe(t *testing.T, c pahov3.Client, filter string, qos byte) inbox {
	t.Helper()
	in := make(inbox, 1000)
	tok := c.Subscribe(filter, qos, func(_ pahov3.Client, m pahov3.Message) { in <- m })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return in
}

func publish(t *testing.T, c pahov3.Client, name string, qos byte, retain bool, payload string) {
	t.Helper()
	tok := c.Publish(name, qos, retain, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", name, tok.Error())
	}
}

func mustV3(t *testing.T, a Addrs, id string, mod func(*pahov3.ClientOptions)) pahov3.Client {
	t.Helper()
	c, err := v3(t, "tcp://"+a.MQTT, id, mod)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A message published on one replica reaches subscribers on the others, at every QoS and
// through wildcards, and only the replicas with a matching subscription receive it.
func TestClusterCrossReplicaDelivery(t *testing.T) {
	clusterCrossReplicaDelivery(t, redistest.Start(t))
}

func clusterCrossReplicaDelivery(t *testing.T, rs *redistest.Server) {
	rep := replicas(t, rs, 3, nil)
	pub := mustV3(t, rep[0], "pub", nil)
	subB := mustV3(t, rep[1], "sub-b", nil)
	subC := mustV3(t, rep[2], "sub-c", nil)
	inB := subscribe(t, subB, "sensors/+/temp", 2)
	inC := subscribe(t, subC, "sensors/#", 1)
	settled(t, rep...)
	for qos := byte(0); qos <= 2; qos++ {
		payload := fmt.Sprintf("q%d", qos)
		publish(t, pub, "sensors/dev1/temp", qos, false, payload)
		for _, in := range []inbox{inB, inC} {
			m := in.next(t, 5*time.Second)
			if string(m.Payload()) != payload || m.Topic() != "sensors/dev1/temp" {
				t.Fatalf("got %s %q", m.Topic(), m.Payload())
			}
		}
	}
	publish(t, pub, "sensors/dev1/humidity", 1, false, "h")
	if m := inC.next(t, 5*time.Second); string(m.Payload()) != "h" {
		t.Fatalf("got %q", m.Payload())
	}
	inB.none(t, 300*time.Millisecond)
}

// Retained messages are visible to a wildcard SUBSCRIBE on any replica, replaced and cleared
// cluster-wide, and kept in Redis for a replica that starts later.
func TestClusterRetained(t *testing.T) { clusterRetained(t, redistest.Start(t)) }

func clusterRetained(t *testing.T, rs *redistest.Server) {
	rep := replicas(t, rs, 2, nil)
	pub := mustV3(t, rep[0], "pub", nil)
	publish(t, pub, "home/kitchen/temp", 1, true, "21")
	publish(t, pub, "home/hall/temp", 1, true, "19")
	publish(t, pub, "home/hall/temp", 1, true, "20") // replaces
	time.Sleep(100 * time.Millisecond)               // forwarded asynchronously after the PUBACK
	sub := mustV3(t, rep[1], "sub", nil)
	in := subscribe(t, sub, "home/+/temp", 1)
	settled(t, rep...)
	got := map[string]string{}
	for range 2 {
		m := in.next(t, 5*time.Second)
		if !m.Retained() {
			t.Fatalf("%s not flagged retained", m.Topic())
		}
		got[m.Topic()] = string(m.Payload())
	}
	if got["home/kitchen/temp"] != "21" || got["home/hall/temp"] != "20" {
		t.Fatalf("retained %v", got)
	}
	in.none(t, 200*time.Millisecond)

	publish(t, pub, "home/kitchen/temp", 1, true, "") // clears
	if m := in.next(t, 5*time.Second); len(m.Payload()) != 0 {
		t.Fatalf("clear delivered as %q", m.Payload())
	}
	time.Sleep(100 * time.Millisecond)
	if n, err := rs.Do("HLEN", "mcloudtt:retained"); err != nil || n != "1" {
		t.Fatalf("retained hash holds %s (%v), want 1", n, err)
	}
	late := replicasFrom(t, rs, 2, 1, nil)[0] // a third replica joins: loads the retained set from Redis
	sub3 := mustV3(t, late, "sub3", nil)
	in3 := subscribe(t, sub3, "home/#", 0)
	if m := in3.next(t, 5*time.Second); m.Topic() != "home/hall/temp" || string(m.Payload()) != "20" {
		t.Fatalf("late replica: %s %q", m.Topic(), m.Payload())
	}
	in3.none(t, 200*time.Millisecond)
}

// A CONNECT on replica B closes the same client id on replica A; a persistent session resumes
// on another replica with the messages queued while it was offline.
func TestClusterTakeoverAndSessionResume(t *testing.T) {
	clusterTakeoverAndSessionResume(t, redistest.Start(t))
}

func clusterTakeoverAndSessionResume(t *testing.T, rs *redistest.Server) {
	rep := replicas(t, rs, 3, nil)
	lost := make(chan error, 1)
	persistent := func(o *pahov3.ClientOptions) {
		o.SetCleanSession(false)
		o.SetConnectionLostHandler(func(_ pahov3.Client, err error) { lost <- err })
	}
	a := mustV3(t, rep[0], "device-1", persistent)
	subscribe(t, a, "cmd/device-1/#", 1)

	// Takeover from another replica: the first connection is closed.
	b := mustV3(t, rep[1], "device-1", func(o *pahov3.ClientOptions) { o.SetCleanSession(false) })
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("connection on replica a not closed by the CONNECT on replica b")
	}
	// The session moved with its subscription: a publish on replica c reaches b.
	settled(t, rep...)
	got := make(inbox, 100)
	b.AddRoute("cmd/device-1/#", func(_ pahov3.Client, m pahov3.Message) { got <- m })
	pub := mustV3(t, rep[2], "pub", nil)
	publish(t, pub, "cmd/device-1/reboot", 1, false, "now")
	if m := got.next(t, 5*time.Second); string(m.Payload()) != "now" {
		t.Fatalf("got %q", m.Payload())
	}

	// Offline on b: messages are queued (in Redis too); the client comes back on c.
	b.Disconnect(100)
	time.Sleep(100 * time.Millisecond)
	for i := range 5 {
		publish(t, pub, "cmd/device-1/n", 1, false, fmt.Sprint(i))
	}
	time.Sleep(100 * time.Millisecond)
	resumed := make(inbox, 100)
	_, err := v3(t, "tcp://"+rep[2].MQTT, "device-1", func(o *pahov3.ClientOptions) {
		o.SetCleanSession(false)
		o.SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { resumed <- m })
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; {
		m := resumed.next(t, 5*time.Second)
		if i == 0 && string(m.Payload()) == "now" && m.Duplicate() {
			// paho may send DISCONNECT before the PUBACK of "now" (they leave through different
			// queues); the broker then redelivers it, flagged DUP, as QoS 1 requires.
			continue
		}
		if string(m.Payload()) != fmt.Sprint(i) {
			t.Fatalf("queued message %d: got %q (dup %v)", i, m.Payload(), m.Duplicate())
		}
		i++
	}
	resumed.none(t, 200*time.Millisecond)
	// And the subscription works live on c.
	settled(t, rep...)
	publish(t, pub, "cmd/device-1/live", 1, false, "live")
	if m := resumed.next(t, 5*time.Second); string(m.Payload()) != "live" {
		t.Fatalf("got %q", m.Payload())
	}
}

// Shared subscriptions are balanced over members on all replicas: each message reaches exactly
// one member of the group.
func TestClusterSharedSubscriptions(t *testing.T) {
	rs := redistest.Start(t)
	rep := replicas(t, rs, 3, nil)
	counts := make([]int, 3)
	var ins []inbox
	for i := range 3 {
		c := mustV3(t, rep[i], fmt.Sprint("worker-", i), nil)
		ins = append(ins, subscribe(t, c, "$share/workers/jobs/#", 1))
	}
	settled(t, rep...)
	pub := mustV3(t, rep[0], "pub", nil)
	const n = 60
	for i := range n {
		publish(t, pub, "jobs/x", 1, false, fmt.Sprint(i))
	}
	seen := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < n {
		select {
		case m := <-ins[0]:
			counts[0]++
			seen[string(m.Payload())] = true
		case m := <-ins[1]:
			counts[1]++
			seen[string(m.Payload())] = true
		case m := <-ins[2]:
			counts[2]++
			seen[string(m.Payload())] = true
		case <-deadline:
			t.Fatalf("only %d of %d messages arrived (%v)", len(seen), n, counts)
		}
	}
	time.Sleep(200 * time.Millisecond)
	total := counts[0] + counts[1] + counts[2] + len(ins[0]) + len(ins[1]) + len(ins[2])
	if total != n {
		t.Fatalf("%d deliveries for %d messages: a message reached more than one member (%v)", total, n, counts)
	}
	for i, c := range counts {
		if c == 0 {
			t.Fatalf("member on replica %d got nothing (%v)", i, counts)
		}
	}
}

// A will is delivered on every replica.
func TestClusterWill(t *testing.T) {
	rs := redistest.Start(t)
	rep := replicas(t, rs, 2, nil)
	sub := mustV3(t, rep[1], "watcher", nil)
	in := subscribe(t, sub, "status/#", 1)
	settled(t, rep...)
	dev := dialV3(t, rep[0].MQTT, &mqtt.Connect{ClientID: "dev-9", CleanStart: true, WillFlag: true,
		WillTopic: "status/dev-9", WillPayload: []byte("offline"), WillQoS: 1})
	dev.conn.Close() // no DISCONNECT: the will goes out
	if m := in.next(t, 10*time.Second); m.Topic() != "status/dev-9" || string(m.Payload()) != "offline" {
		t.Fatalf("got %s %q", m.Topic(), m.Payload())
	}
	// Its session ended with the connection: the client id has no owner in Redis any more.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := redistest.Do(rs.Addr(), "", "EXISTS", "mcloudtt:{s:dev-9}:owner")
		if err == nil && n == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("owner key of an ended session still there (%s, %v)", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Routing, not broadcast: four replicas with pairwise traffic (each publisher's only subscriber
// on the next replica). Each replica receives from Redis exactly the messages for its own
// subscribers, and forwards only its own publishers' messages, once.
func TestClusterPairwiseRoutesOnlyToSubscribers(t *testing.T) {
	rs := redistest.Start(t)
	rep := replicas(t, rs, 4, nil)
	const n = 300
	var ins []*counter
	for i := range 4 {
		c := newCounter()
		sub := mustV3(t, rep[(i+1)%4], fmt.Sprint("sub-", i), nil)
		if tok := sub.Subscribe(fmt.Sprintf("pair/%d", i), 1, c.handler); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		ins = append(ins, c)
	}
	settled(t, rep...)
	before := make([][2]float64, 4)
	for i, a := range rep {
		fams := scrape(t, a.HTTP)
		before[i] = [2]float64{value(t, fams, "mcloudtt_broker_cluster_received_total"), value(t, fams, "mcloudtt_broker_cluster_forwarded_total")}
	}
	// Replica i publishes 300 messages for its pair, plus 100 on a topic nobody subscribes to.
	for i := range 4 {
		pub := mustV3(t, rep[i], fmt.Sprint("pub-", i), nil)
		for j := range n {
			pub.Publish(fmt.Sprintf("pair/%d", i), 1, false, fmt.Sprint("m", j))
		}
		for j := range 100 {
			publish(t, pub, fmt.Sprintf("nobody/%d", i), 1, false, fmt.Sprint(j))
		}
	}
	for _, c := range ins {
		c.exactlyOnce(t, "m", n, 10*time.Second)
	}
	for i, a := range rep {
		fams := scrape(t, a.HTTP)
		recv := value(t, fams, "mcloudtt_broker_cluster_received_total") - before[i][0]
		fwd := value(t, fams, "mcloudtt_broker_cluster_forwarded_total") - before[i][1]
		t.Logf("replica %d: received %v from Redis, forwarded %v", i, recv, fwd)
		if recv != n || fwd != n {
			t.Errorf("replica %d received %v and forwarded %v messages through Redis; want %d each (its own pair only)", i, recv, fwd, n)
		}
	}
}

// testLogger is zerolog.Nop unless MCLOUDTT_TEST_LOG is set: then replicas log to stderr.
func testLogger(id string) zerolog.Logger {
	if os.Getenv("MCLOUDTT_TEST_LOG") == "" {
		return zerolog.Nop()
	}
	return zerolog.New(os.Stderr).With().Timestamp().Str("replica", id).Logger().Level(zerolog.DebugLevel)
}

// settled waits until every replica's route cache holds exactly the other replicas' route
// tables. Route notices travel asynchronously (typically well under a millisecond after the
// SUBACK), so a test that subscribes on one replica and at once publishes on another waits for
// this first.
func settled(t *testing.T, reps ...Addrs) {
	t.Helper()
	addrs := make([]string, len(reps))
	for i, r := range reps {
		addrs[i] = r.HTTP
	}
	metricstest.Settled(t, addrs...)
}
