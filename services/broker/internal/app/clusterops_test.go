package app

import (
	"fmt"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// replicas starts n in-process replicas on one Redis and waits until each sees the others.
func replicas(t *testing.T, rs *redistest.Server, n int, mod func(i int, c *config.Config)) []Addrs {
	t.Helper()
	out := make([]Addrs, n)
	for i := range out {
		out[i] = serve(t, func(c *config.Config) {
			c.ID = fmt.Sprintf("replica-%c", 'a'+i)
			c.RedisAddrs = []string{rs.Addr()}
			c.HeartbeatInterval = 100 * time.Millisecond
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
	rs := redistest.Start(t)
	rep := replicas(t, rs, 3, nil)
	pub := mustV3(t, rep[0], "pub", nil)
	subB := mustV3(t, rep[1], "sub-b", nil)
	subC := mustV3(t, rep[2], "sub-c", nil)
	inB := subscribe(t, subB, "sensors/+/temp", 2)
	inC := subscribe(t, subC, "sensors/#", 1)
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
