package main

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/metricstest"
)

type replica struct {
	*proctest.Proc
	id, mqtt, http string
}

// startReplica runs a broker process in the cluster on redis and waits until it is ready.
func startReplica(t *testing.T, id string, redis []string, env ...string) *replica {
	t.Helper()
	r := &replica{id: id, mqtt: proctest.FreeAddr(t), http: proctest.FreeAddr(t)}
	r.Proc = proctest.Start(t, proctest.Build(t, "."), append([]string{"BROKER_ID=" + id,
		"BROKER_MQTT_ADDR=" + r.mqtt, "BROKER_HTTP_ADDR=" + r.http, "BROKER_LOG_FORMAT=json",
		"BROKER_REDIS_ADDRS=" + strings.Join(redis, ","), "BROKER_HEARTBEAT_INTERVAL=200ms",
		"BROKER_PEER_TIMEOUT=1500ms"}, env...))
	r.waitReady(t, true, 15*time.Second)
	return r
}

func (r *replica) ready() bool {
	resp, err := http.Get("http://" + r.http + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func (r *replica) waitReady(t *testing.T, want bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for r.ready() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: ready never %v\n%s", r.id, want, r.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func connectV3(t *testing.T, addr, id string, clean bool, h pahov3.MessageHandler) pahov3.Client {
	t.Helper()
	o := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetProtocolVersion(4).SetDefaultPublishHandler(h)
	c := pahov3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(20) })
	return c
}

func mustOK(t *testing.T, tok pahov3.Token) {
	t.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%v", tok.Error())
	}
}

func collect() (chan string, pahov3.MessageHandler) {
	ch := make(chan string, 1000)
	return ch, func(_ pahov3.Client, m pahov3.Message) { ch <- m.Topic() + "=" + string(m.Payload()) }
}

func expect(t *testing.T, ch chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("got %q, want %q", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no message; want %q", w)
		}
	}
}

// A replica SIGKILLed while holding offline persistent sessions: the messages queued for them
// survive in Redis and are delivered when the clients come back on another replica; the other
// replicas forget the dead one's routes.
func TestReplicaKilledHoldingOfflineSessions(t *testing.T) {
	rs := redistest.Start(t)
	a := startReplica(t, "replica-a", []string{rs.Addr()})
	b := startReplica(t, "replica-b", []string{rs.Addr()})
	c := startReplica(t, "replica-c", []string{rs.Addr()})

	for i := range 3 {
		dev := connectV3(t, a.mqtt, fmt.Sprint("device-", i), false, nil)
		mustOK(t, dev.Subscribe(fmt.Sprintf("cmd/%d/#", i), 1, nil))
		dev.Disconnect(20)
	}
	settled(t, a, b, c)
	pub := connectV3(t, b.mqtt, "pub", true, nil)
	for i := range 3 {
		for j := range 4 {
			mustOK(t, pub.Publish(fmt.Sprintf("cmd/%d/set", i), 1, false, fmt.Sprint(j)))
		}
	}
	time.Sleep(300 * time.Millisecond) // queued on replica-a and appended to Redis
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	for i := range 3 {
		ch, h := collect()
		connectV3(t, c.mqtt, fmt.Sprint("device-", i), false, h)
		expect(t, ch, fmt.Sprintf("cmd/%d/set=0", i), fmt.Sprintf("cmd/%d/set=1", i), fmt.Sprintf("cmd/%d/set=2", i), fmt.Sprintf("cmd/%d/set=3", i))
		// The resumed subscription is live on replica-c.
		settled(t, b, c)
		mustOK(t, pub.Publish(fmt.Sprintf("cmd/%d/set", i), 1, false, "live"))
		expect(t, ch, fmt.Sprintf("cmd/%d/set=live", i))
	}
	// replica-a's routes are gone from Redis once its heartbeats stopped for the peer timeout.
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := redistest.Do(rs.Addr(), "", "EXISTS", "mcloudtt:{replica-a}:routes")
		if out == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead replica's route table is still in Redis")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Past one Redis node: three masters; the replicas use sharded pub/sub, and the cluster
// semantics hold (cross-replica delivery, retained, a session resumed on another replica).
func TestRedisClusterOfThreeMasters(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	a := startReplica(t, "replica-a", rc.Addrs())
	b := startReplica(t, "replica-b", rc.Addrs())

	ch, h := collect()
	sub := connectV3(t, b.mqtt, "sub", false, h)
	mustOK(t, sub.Subscribe("site/+/temp", 1, nil))
	settled(t, a, b)
	pub := connectV3(t, a.mqtt, "pub", true, nil)
	want := map[string]bool{}
	for i := range 20 {
		mustOK(t, pub.Publish(fmt.Sprintf("site/%d/temp", i), byte(i%3), false, "x"))
		want[fmt.Sprintf("site/%d/temp=x", i)] = true
	}
	// Each on its own topic, at QoS 0, 1 and 2 in turn: MQTT orders messages per topic and QoS
	// only [MQTT-4.6.0-6] (a persistent session's QoS 1/2 messages come from its log, QoS 0
	// directly), so the set is what counts.
	for range 20 {
		select {
		case got := <-ch:
			if !want[got] {
				t.Fatalf("unexpected or repeated %q", got)
			}
			delete(want, got)
		case <-time.After(10 * time.Second):
			t.Fatalf("missing %v", want)
		}
	}
	mustOK(t, pub.Publish("site/9/temp", 1, true, "retained"))
	expect(t, ch, "site/9/temp=retained")
	sub.Disconnect(20)
	mustOK(t, pub.Publish("site/1/temp", 1, false, "queued"))
	time.Sleep(200 * time.Millisecond)
	// paho sends the PUBACK of "retained" after its handler returns, on its own channel, and
	// may put DISCONNECT on the wire first; the broker then resends "retained" with DUP set
	// when the session resumes [MQTT-4.4.0-1]. That resend is allowed; anything else is not.
	ch2 := make(chan string, 1000)
	h2 := func(_ pahov3.Client, m pahov3.Message) {
		if m.Duplicate() && m.Topic() == "site/9/temp" && string(m.Payload()) == "retained" {
			return
		}
		ch2 <- m.Topic() + "=" + string(m.Payload())
	}
	sub2 := connectV3(t, a.mqtt, "sub", false, h2) // resumes on the other replica
	expect(t, ch2, "site/1/temp=queued")
	ch3, h3 := collect()
	settled(t, a, b)
	late := connectV3(t, b.mqtt, "late", true, h3)
	mustOK(t, late.Subscribe("site/#", 0, nil))
	expect(t, ch3, "site/9/temp=retained")
	_ = sub2

	spublish, publish := 0, 0
	for _, n := range rc.Nodes {
		spublish += n.CommandCalls("spublish")
		publish += n.CommandCalls("publish")
	}
	if spublish == 0 || publish != 0 {
		t.Fatalf("sharded pub/sub expected: %d SPUBLISH, %d PUBLISH", spublish, publish)
	}
	// More than one node carries the traffic.
	busy := 0
	for _, n := range rc.Nodes {
		if n.CommandCalls("spublish") > 0 {
			busy++
		}
	}
	t.Logf("SPUBLISH on %d of %d nodes (%d in all)", busy, len(rc.Nodes), spublish)
	if busy < 2 {
		t.Fatalf("all sharded traffic on one node")
	}
}

// gauge reads one unlabelled sample from a replica's /metrics.
func (r *replica) gauge(t *testing.T, name string) float64 {
	t.Helper()
	return metricstest.Value(t, metricstest.Scrape(t, r.http), name)
}

// settled waits until every replica's route cache holds exactly the others' route tables.
func settled(t *testing.T, reps ...*replica) {
	t.Helper()
	addrs := make([]string, len(reps))
	for i, r := range reps {
		addrs[i] = r.http
	}
	metricstest.Settled(t, addrs...)
}
