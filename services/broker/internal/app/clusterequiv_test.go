package app

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// The cluster behaves as one broker: a random script of connects (clean and persistent, each
// reconnect on another replica), subscribes, unsubscribes, publishes (retained among them) and
// disconnects delivers exactly the same messages to the same clients on a three-replica cluster
// as on a single broker. MCLOUDTT_EQUIV_SEED replays a seed; the seed is logged.
func TestClusterEquivalentToSingleBroker(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MCLOUDTT_EQUIV_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (MCLOUDTT_EQUIV_SEED=%d replays it)", seed, seed)
	script := equivScript(rand.New(rand.NewPCG(seed, 7)), 140)

	single := serve(t, func(*config.Config) {})
	want := runEquivScript(t, script, func(int, int) string { return single.MQTT }, func() {})

	rs := redistest.Start(t)
	rep := replicas(t, rs, 3, nil)
	got := runEquivScript(t, script, func(client, nth int) string { return rep[(client+nth)%3].MQTT },
		func() { settled(t, rep...) })

	total := 0
	for c := range want {
		total += len(want[c])
		if !slices.Equal(want[c], got[c]) {
			t.Errorf("client %d:\n single broker: %v\n cluster:       %v", c, want[c], got[c])
		}
	}
	if total == 0 {
		t.Fatal("the script delivered nothing: it tests nothing")
	}
	t.Logf("%d steps, %d deliveries compared", len(script), total)
}

type equivStep struct {
	op     byte // c connect, d disconnect, s subscribe, u unsubscribe, p publish
	client int
	clean  bool
	filter string
	topic  string
	qos    byte
	retain bool
}

const equivClients = 5

var (
	equivTopics  = []string{"t/a", "t/b", "t/a/x", "u/a", "u/b/c"}
	equivFilters = []string{"t/+", "t/#", "#", "t/a", "+/a", "u/+/c", "t/a/x"}
)

func equivScript(r *rand.Rand, n int) []equivStep {
	connected := make([]bool, equivClients)
	var out []equivStep
	for len(out) < n {
		c := r.IntN(equivClients)
		if !connected[c] {
			out = append(out, equivStep{op: 'c', client: c, clean: c < 2}) // clients 0, 1 clean; the rest persistent
			connected[c] = true
			continue
		}
		switch k := r.IntN(10); {
		case k == 0:
			out = append(out, equivStep{op: 'd', client: c})
			connected[c] = false
		case k <= 2:
			out = append(out, equivStep{op: 's', client: c, filter: equivFilters[r.IntN(len(equivFilters))], qos: byte(r.IntN(3))})
		case k == 3:
			out = append(out, equivStep{op: 'u', client: c, filter: equivFilters[r.IntN(len(equivFilters))]})
		default:
			out = append(out, equivStep{op: 'p', client: c, topic: equivTopics[r.IntN(len(equivTopics))], qos: byte(r.IntN(3)), retain: r.IntN(6) == 0})
		}
	}
	// End with everyone disconnected cleanly, after a last round of publishes to offline
	// persistent sessions being delivered on reconnect.
	for c := range equivClients {
		if connected[c] {
			out = append(out, equivStep{op: 'd', client: c})
		}
	}
	for c := 2; c < equivClients; c++ {
		out = append(out, equivStep{op: 'c', client: c, clean: false}, equivStep{op: 'd', client: c})
	}
	return out
}

// runEquivScript runs the script; addr says where a client's nth connection goes. It returns
// what each client received, as "topic=payload[r]" in arrival order.
// afterStep waits until the broker has settled after a step that changes subscriptions.
func runEquivScript(t *testing.T, script []equivStep, addr func(client, nth int) string, afterStep func()) [][]string {
	t.Helper()
	var mu sync.Mutex
	got := make([][]string, equivClients)
	clients := make([]pahov3.Client, equivClients)
	nth := make([]int, equivClients)
	run := fmt.Sprint(time.Now().UnixNano())
	settle := func() { time.Sleep(25 * time.Millisecond) }
	for i, s := range script {
		c := s.client
		switch s.op {
		case 'c':
			id := fmt.Sprintf("equiv-%s-%d", run, c)
			cl, err := v3(t, "tcp://"+addr(c, nth[c]), id, func(o *pahov3.ClientOptions) {
				o.SetCleanSession(s.clean)
				o.SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) {
					r := ""
					if m.Retained() {
						r = "[r]"
					}
					mu.Lock()
					got[c] = append(got[c], m.Topic()+"="+string(m.Payload())+r)
					mu.Unlock()
				})
			})
			if err != nil {
				t.Fatalf("step %d: connect: %v", i, err)
			}
			clients[c] = cl
			nth[c]++
			afterStep()
		case 'd':
			settle()
			clients[c].Disconnect(20)
			clients[c] = nil
			settle()
			afterStep()
		case 's':
			tok := clients[c].Subscribe(s.filter, s.qos, nil)
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("step %d: subscribe: %v", i, tok.Error())
			}
			afterStep()
		case 'u':
			settle()
			tok := clients[c].Unsubscribe(s.filter)
			if !tok.WaitTimeout(5 * time.Second) {
				t.Fatalf("step %d: unsubscribe timed out", i)
			}
			afterStep()
		case 'p':
			tok := clients[c].Publish(s.topic, s.qos, s.retain, fmt.Sprintf("m%d", i))
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("step %d: publish: %v", i, tok.Error())
			}
		}
		settle()
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for c := range got {
		// Arrival order across publishers is not defined between replicas; per client the
		// multiset of messages must match.
		slices.Sort(got[c])
	}
	return got
}
