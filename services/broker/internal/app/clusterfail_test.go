package app

import (
	"fmt"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// counter records the payloads a subscriber receives.
type counter struct {
	mu   sync.Mutex
	seen map[string]int
	ch   chan string
}

func newCounter() *counter { return &counter{seen: map[string]int{}, ch: make(chan string, 1<<16)} }

func (c *counter) handler(_ pahov3.Client, m pahov3.Message) {
	c.mu.Lock()
	c.seen[string(m.Payload())]++
	c.mu.Unlock()
	select {
	case c.ch <- string(m.Payload()):
	default:
	}
}

// exactlyOnce checks that payloads prefix0..prefix(n-1) each arrived once, waiting up to d.
func (c *counter) exactlyOnce(t *testing.T, prefix string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c.mu.Lock()
		missing, dup := 0, 0
		for i := range n {
			switch k := c.seen[fmt.Sprint(prefix, i)]; {
			case k == 0:
				missing++
			case k > 1:
				dup++
			}
		}
		c.mu.Unlock()
		if missing == 0 && dup == 0 {
			return
		}
		if dup > 0 || time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d missing, %d duplicated", prefix, missing, n, dup)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis (without persistence) killed and restarted mid-traffic: clean-session clients keep working
// locally meanwhile, and the cluster delivers across replicas again within 5 s of Redis being
// back, with no replica restarted; QoS 1 traffic while Redis is up is neither lost nor doubled.
// (Persistent sessions need Redis: see durable_test.go.)
func TestClusterSurvivesRedisRestart(t *testing.T) {
	rs := redistest.Start(t)
	// The subscriber's queue holds a whole burst: a full queue would drop (and count) messages,
	// which is not what this test is about.
	rep := replicas(t, rs, 2, func(_ int, c *config.Config) { c.MaxQueuedMessages = 100_000 })
	t.Cleanup(func() {
		if t.Failed() {
			for i, r := range rep {
				fams := scrape(t, r.HTTP)
				for _, cause := range []string{"queue_full", "slow_consumer", "cluster_unavailable"} {
					t.Logf("replica %d dropped %s: %v", i, cause, value(t, fams, "mcloudtt_broker_messages_dropped_total", "cause", cause))
				}
				t.Logf("replica %d forwarded %v received %v", i, value(t, fams, "mcloudtt_broker_cluster_forwarded_total"),
					value(t, fams, "mcloudtt_broker_cluster_received_total"))
			}
		}
	})
	pub := mustV3(t, rep[0], "pub", nil)
	localSub := mustV3(t, rep[0], "local-sub", nil)
	remote := newCounter()
	sub := mustV3(t, rep[1], "remote-sub", nil)
	if tok := sub.Subscribe("load/#", 1, remote.handler); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	local := subscribe(t, localSub, "load/#", 1)
	settled(t, rep...)

	const n = 2000
	for i := range n {
		pub.Publish("load/a", 1, false, fmt.Sprint("before-", i))
	}
	remote.exactlyOnce(t, "before-", n, 10*time.Second)
	for len(remote.ch) > 0 {
		<-remote.ch
	}

	rs.Kill()
	publish(t, pub, "load/outage", 1, false, "during")
	for string(local.next(t, 5*time.Second).Payload()) != "during" {
		// the earlier messages first
	}

	rs.Start() // empty: no persistence
	back := time.Now()
	for i := 0; ; i++ {
		pub.Publish("load/probe", 1, false, fmt.Sprint("probe-", i))
		got := false
		select {
		case p := <-remote.ch:
			got = len(p) > 6 && p[:6] == "probe-"
		case <-time.After(50 * time.Millisecond):
		}
		if got {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatal("no cross-replica delivery within 5 s of Redis coming back")
		}
	}
	t.Logf("cross-replica delivery again %v after Redis restarted", time.Since(back).Round(time.Millisecond))

	for i := range n {
		pub.Publish("load/a", 1, false, fmt.Sprint("after-", i))
	}
	remote.exactlyOnce(t, "after-", n, 10*time.Second)
}
