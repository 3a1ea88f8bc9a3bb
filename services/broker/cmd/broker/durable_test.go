package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// Redis as the durable-session tests run it: an append-only file written and fsynced before
// Redis answers (appendfsync always: see the chaos test), and a pub/sub output limit that a busy
// replica does not hit.
func startDurableRedis(t *testing.T) *redistest.Server {
	return redistest.Start(t, redistest.WithArgs("--appendonly", "yes", "--appendfsync", "always",
		"--client-output-buffer-limit", "pubsub 256mb 64mb 60"))
}

// tally records what one subscriber received: every payload "<publisher>/<n>", in arrival
// order, with its QoS and DUP flag.
type tally struct {
	mu   sync.Mutex
	got  []string
	seen map[string]int
	dups int // received again (QoS 1 allows it; counted)
	more chan struct{}
}

func newTally() *tally { return &tally{seen: make(map[string]int), more: make(chan struct{}, 1)} }

func (t *tally) add(payload string) {
	t.mu.Lock()
	t.seen[payload]++
	if t.seen[payload] > 1 {
		t.dups++
	} else {
		t.got = append(t.got, payload)
	}
	t.mu.Unlock()
	select {
	case t.more <- struct{}{}:
	default:
	}
}

func (t *tally) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.got)
}

// waitFor waits until n distinct payloads arrived.
func (t *tally) waitFor(tb testing.TB, n int, d time.Duration) {
	tb.Helper()
	deadline := time.After(d)
	for t.count() < n {
		select {
		case <-t.more:
		case <-deadline:
			tb.Fatalf("received %d distinct messages, want %d", t.count(), n)
		}
	}
}

// check compares what arrived with what the publishers had acknowledged: nothing missing, and in
// order per publisher. It returns missing, duplicates, out-of-order.
func (t *tally) check(acked map[string][]int) (missing, dups, disorder int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pub, ns := range acked {
		for _, n := range ns {
			if t.seen[pub+"/"+strconv.Itoa(n)] == 0 {
				missing++
			}
		}
	}
	disorder = len(t.disorderLocked())
	return missing, t.dups, disorder
}

// disorderLocked lists the messages that arrived after a later one of the same publisher.
func (t *tally) disorderLocked() []string {
	var out []string
	last := map[string]int{}
	for _, p := range t.got {
		pub, ns, _ := strings.Cut(p, "/")
		n, _ := strconv.Atoi(ns)
		if l, ok := last[pub]; ok && n < l {
			out = append(out, fmt.Sprintf("%s after %s/%d", p, pub, l))
		}
		last[pub] = n
	}
	return out
}

// durableSub is a persistent-session subscriber that can reconnect to any replica: 3.1.1 (paho,
// clean session 0, its store kept across connections) or 5.0 (paho.golang, session expiry,
// its session state kept across connections).
type durableSub struct {
	t      testing.TB
	id     string
	v5     bool
	filter string
	qos    byte
	tally  *tally
	store  pahov3.Store
	state  *state.State
	c3     pahov3.Client
	c5     *paho.Client
}

func newDurableSub(t testing.TB, id string, v5 bool, filter string, qos byte) *durableSub {
	s := &durableSub{t: t, id: id, v5: v5, filter: filter, qos: qos, tally: newTally()}
	if v5 {
		s.state = state.NewInMemory()
	} else {
		s.store = pahov3.NewOrderedMemoryStore()
	}
	return s
}

// connect connects to addr (resuming the session) and, with subscribe, subscribes.
func (s *durableSub) connect(addr string, subscribe bool) error {
	if s.v5 {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn, Session: s.state,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				s.tally.add(string(pr.Packet.Payload))
				return true, nil
			}}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		expiry := uint32(3600)
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: s.id, KeepAlive: 30, CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		if err != nil {
			return fmt.Errorf("connect %s: %w", s.id, err)
		}
		if ca.ReasonCode != 0 {
			return fmt.Errorf("connect %s: reason %#x", s.id, ca.ReasonCode)
		}
		s.c5 = c
		if subscribe {
			if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: s.filter, QoS: s.qos}}}); err != nil {
				return fmt.Errorf("subscribe %s: %w", s.id, err)
			}
		}
		return nil
	}
	o := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(s.id).SetCleanSession(false).
		SetAutoReconnect(false).SetProtocolVersion(4).SetStore(s.store).SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { s.tally.add(string(m.Payload())) })
	c := pahov3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect %s: %v", s.id, tok.Error())
	}
	s.c3 = c
	if subscribe {
		if tok := c.Subscribe(s.filter, s.qos, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("subscribe %s: %v", s.id, tok.Error())
		}
	}
	return nil
}

func (s *durableSub) mustConnect(addr string, subscribe bool) {
	s.t.Helper()
	if err := s.connect(addr, subscribe); err != nil {
		s.t.Fatal(err)
	}
}

// disconnect leaves with DISCONNECT (the session stays).
func (s *durableSub) disconnect() {
	if s.c5 != nil {
		_ = s.c5.Disconnect(&paho.Disconnect{})
		s.c5 = nil
	}
	if s.c3 != nil {
		s.c3.Disconnect(100)
		s.c3 = nil
	}
}

// publishNumbered publishes count QoS q messages "<pub>/<n>" on topic from n = first and returns
// the numbers acknowledged (PUBACK, or PUBREC then PUBCOMP).
func publishNumbered(t testing.TB, c pahov3.Client, pub, topic string, q byte, first, count int) []int {
	t.Helper()
	var acked []int
	for n := first; n < first+count; n++ {
		tok := c.Publish(topic, q, false, pub+"/"+strconv.Itoa(n))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s/%d: %v", pub, n, tok.Error())
		}
		acked = append(acked, n)
	}
	return acked
}

// The issue this guards against: a subscriber's persistent session lives on replica A and is
// offline; a publisher on B sends messages (acknowledged); A is stopped (a rolling update) or
// killed; more messages are acknowledged; the subscriber comes back on B and must get all of
// them, in order.
func TestOfflineSessionSurvivesItsReplica(t *testing.T) {
	for _, v5 := range []bool{false, true} {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			name := fmt.Sprintf("v3.1.1-clean0/%v", sig)
			if v5 {
				name = fmt.Sprintf("v5-expiry3600/%v", sig)
			}
			t.Run(name, func(t *testing.T) {
				rs := startDurableRedis(t)
				a := startReplica(t, "replica-a", []string{rs.Addr()})
				b := startReplica(t, "replica-b", []string{rs.Addr()})
				sub := newDurableSub(t, "sleeper", v5, "dur/#", 1)
				sub.mustConnect(a.mqtt, true)
				sub.disconnect()

				pub := connectV3(t, b.mqtt, "pub", true, nil)
				acked := publishNumbered(t, pub, "p", "dur/x", 1, 0, 100)
				if err := a.Signal(sig); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				_, exited := a.Wait(ctx)
				cancel()
				if !exited {
					t.Fatalf("replica-a did not exit after %v", sig)
				}
				acked = append(acked, publishNumbered(t, pub, "p", "dur/x", 1, 100, 100)...)

				sub.mustConnect(b.mqtt, false)
				defer sub.disconnect()
				sub.tally.waitFor(t, 200, 20*time.Second)
				missing, dups, disorder := sub.tally.check(map[string][]int{"p": acked})
				t.Logf("acknowledged %d, received %d distinct, missing %d, duplicates %d, out of order %d",
					len(acked), sub.tally.count(), missing, dups, disorder)
				if missing != 0 || disorder != 0 {
					t.Fatalf("missing %d, out of order %d", missing, disorder)
				}
			})
		}
	}
}

// An online persistent subscriber whose replica is killed in the middle of a stream: it
// reconnects to another replica and gets every message the publisher had acknowledged; a QoS 2
// subscriber gets none twice (what it had PUBREC'd comes back as PUBREL, or as a PUBLISH with
// DUP and the same packet id, which its session state recognises).
func TestOnlineSubscriberSurvivesReplicaKill(t *testing.T) {
	for _, tc := range []struct {
		name string
		v5   bool
		qos  byte
	}{{"v3.1.1-qos1", false, 1}, {"v5-qos2", true, 2}, {"v5-qos1", true, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			rs := startDurableRedis(t)
			a := startReplica(t, "replica-a", []string{rs.Addr()})
			b := startReplica(t, "replica-b", []string{rs.Addr()})
			sub := newDurableSub(t, "watcher", tc.v5, "live/#", tc.qos)
			sub.mustConnect(a.mqtt, true)

			pub := connectV3(t, b.mqtt, "pub", true, nil)
			const n = 600
			var acked []int
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < n; i++ {
					tok := pub.Publish("live/x", tc.qos, false, "p/"+strconv.Itoa(i))
					if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
						acked = append(acked, i)
					}
					if i%50 == 0 {
						time.Sleep(10 * time.Millisecond)
					}
				}
			}()
			sub.tally.waitFor(t, n/3, 20*time.Second)
			if err := a.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			before := sub.tally.count()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			a.Wait(ctx)
			cancel()
			sub.disconnect() // the client notices its connection died (paho would reconnect)
			sub.mustConnect(b.mqtt, false)
			defer sub.disconnect()
			<-done
			sub.tally.waitFor(t, len(acked), 30*time.Second)
			time.Sleep(300 * time.Millisecond) // late duplicates, if any
			missing, dups, disorder := sub.tally.check(map[string][]int{"p": acked})
			t.Logf("killed after %d received; acknowledged %d, received %d distinct, missing %d, duplicates %d, out of order %d",
				before, len(acked), sub.tally.count(), missing, dups, disorder)
			if missing != 0 || disorder != 0 {
				t.Fatalf("missing %d, out of order %d", missing, disorder)
			}
			if tc.qos == 2 && dups != 0 {
				t.Fatalf("QoS 2 delivered %d messages twice", dups)
			}
		})
	}
}

// An expired session leaves Redis. Its owner alive, the session ends at its expiry: its keys,
// its index entry and its owner record go, later messages are not stored for it, and the client
// comes back to no session. Its owner killed while it sleeps, its keys still expire by
// themselves: every key of it carries a TTL of at most its expiry plus bus.OfflineMargin.
func TestExpiredSessionLeavesRedis(t *testing.T) {
	const expiry = 2 // seconds
	names := bus.NewNames("")
	connectV5 := func(t *testing.T, addr, id string, clean bool) (*paho.Client, *paho.Connack) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e := uint32(expiry)
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &e}})
		if err != nil {
			t.Fatalf("connect %s: %v", id, err)
		}
		return c, ca
	}
	sleeper := func(t *testing.T, addr, id string) {
		t.Helper()
		c, _ := connectV5(t, addr, id, true)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "exp/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}
	keys := func(id string) []string { return []string{names.Session(id), names.SessionLog(id)} }
	exists := func(t *testing.T, rs *redistest.Server, key string) bool {
		t.Helper()
		n, err := rs.Do("EXISTS", key)
		if err != nil {
			t.Fatal(err)
		}
		return n == "1"
	}
	indexed := func(t *testing.T, rs *redistest.Server, id string) bool {
		t.Helper()
		n, err := rs.Do("HEXISTS", names.DurableSubs(), id)
		if err != nil {
			t.Fatal(err)
		}
		return n == "1"
	}

	t.Run("owner alive", func(t *testing.T) {
		rs := startDurableRedis(t)
		a := startReplica(t, "replica-a", []string{rs.Addr()})
		b := startReplica(t, "replica-b", []string{rs.Addr()})
		sleeper(t, a.mqtt, "short-lived")
		pub := connectV3(t, b.mqtt, "pub", true, nil)
		publishNumbered(t, pub, "p", "exp/x", 1, 0, 10)
		for _, k := range keys("short-lived") {
			if !exists(t, rs, k) {
				t.Fatalf("%s missing while the session lives", k)
			}
		}
		if !indexed(t, rs, "short-lived") {
			t.Fatal("the session's subscriptions are not indexed while it lives")
		}
		deadline := time.Now().Add(expiry*time.Second + 10*time.Second)
		for {
			left := []string{}
			for _, k := range append(keys("short-lived"), names.SessionOwner("short-lived")) {
				if exists(t, rs, k) {
					left = append(left, k)
				}
			}
			if indexed(t, rs, "short-lived") {
				left = append(left, names.DurableSubs()+" entry")
			}
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v still in Redis %v after the session expired", left, 10*time.Second)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Nothing is stored for it any more, and it comes back to no session.
		publishNumbered(t, pub, "p", "exp/x", 1, 10, 10)
		time.Sleep(500 * time.Millisecond)
		if exists(t, rs, names.SessionLog("short-lived")) {
			t.Fatal("messages were stored for an expired session")
		}
		got := make(chan string, 20)
		c, ca, err := resumeV5(b.mqtt, "short-lived", func(p string) { got <- p })
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
		if ca.SessionPresent {
			t.Fatal("session present after it expired")
		}
		select {
		case m := <-got:
			t.Fatalf("an expired session delivered %q", m)
		case <-time.After(time.Second):
		}
	})

	t.Run("owner killed", func(t *testing.T) {
		rs := startDurableRedis(t)
		a := startReplica(t, "replica-a", []string{rs.Addr()})
		b := startReplica(t, "replica-b", []string{rs.Addr()})
		sleeper(t, a.mqtt, "orphan")
		if err := a.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		a.Wait(ctx)
		cancel()
		pub := connectV3(t, b.mqtt, "pub", true, nil)
		publishNumbered(t, pub, "p", "exp/x", 1, 0, 10) // the orphan's log gets them
		// Once replica-b has judged replica-a dead and released its sessions, every key of the
		// orphan has a TTL bounded by its expiry plus the margin.
		limit := (expiry*time.Second + bus.OfflineMargin).Milliseconds()
		deadline := time.Now().Add(15 * time.Second)
		for _, k := range append(keys("orphan"), names.SessionOwner("orphan")) {
			for {
				v, err := rs.Do("PTTL", k)
				if err != nil {
					t.Fatal(err)
				}
				ms, _ := strconv.ParseInt(v, 10, 64)
				if ms == -2 && k == names.SessionOwner("orphan") {
					break // no owner record left: nothing to expire
				}
				if ms > 0 && ms <= limit {
					t.Logf("%s expires in %d ms (limit %d)", k, ms, limit)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: PTTL %d ms, want 0 < TTL <= %d", k, ms, limit)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
}

// Across replicas, the same: a v5 session stored with an expiry is resumed on another replica by
// a CONNECT with Clean Start 0 and no expiry; its log is delivered, and when that connection
// ends the session leaves Redis.
func TestV5ResumeWithoutExpiryAcrossReplicas(t *testing.T) {
	names := bus.NewNames("")
	rs := startDurableRedis(t)
	a := startReplica(t, "replica-a", []string{rs.Addr()})
	b := startReplica(t, "replica-b", []string{rs.Addr()})
	sub := newDurableSub(t, "resumer", true, "rz/#", 1)
	sub.mustConnect(a.mqtt, true)
	sub.disconnect()
	pub := connectV3(t, b.mqtt, "pub", true, nil)
	acked := publishNumbered(t, pub, "p", "rz/x", 1, 0, 20)

	got := newTally()
	c, ca, err := resumeV5(b.mqtt, "resumer", got.add)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.SessionPresent {
		t.Fatal("Clean Start 0 without an expiry did not resume the stored session")
	}
	got.waitFor(t, len(acked), 10*time.Second)
	if missing, _, disorder := got.check(map[string][]int{"p": acked}); missing != 0 || disorder != 0 {
		t.Fatalf("missing %d, out of order %d", missing, disorder)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := rs.Do("EXISTS", names.Session("resumer"), names.SessionLog("resumer"))
		if err != nil {
			t.Fatal(err)
		}
		if n == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s keys of the session still in Redis after its expiry-0 connection ended", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A persistent session's QoS 1/2 subscription is a durable route: its QoS 1/2 messages reach it
// through its log, so the other replicas forward it only QoS 0 messages. The test counts what
// the publisher's replica forwards while the subscription changes kind: QoS 1 (durable), QoS 0
// (plain: everything is forwarded), QoS 1 again, and a takeover by a v5 connection without
// session expiry, which resumes the session in memory as a clean one (plain again). Every
// message must arrive whatever the kind.
func TestDurableRouteForwardsOnlyQoS0(t *testing.T) {
	rs := startDurableRedis(t)
	a := startReplica(t, "replica-a", []string{rs.Addr()})
	b := startReplica(t, "replica-b", []string{rs.Addr()})
	sub := newDurableSub(t, "durable-route", false, "dr/#", 1)
	sub.mustConnect(a.mqtt, true)
	settled(t, a, b)
	pub := connectV3(t, b.mqtt, "pub", true, nil)

	const forwarded = "mcloudtt_broker_cluster_forwarded_total"
	next := 0
	// round publishes n messages at each QoS in qs, alternating, and checks that every one
	// arrives at got and that b forwarded wantFwd of them.
	round := func(name string, got *tally, qs []byte, n, wantFwd int) {
		t.Helper()
		before := b.gauge(t, forwarded)
		want := got.count() + n*len(qs)
		var acked []int
		for i := 0; i < n; i++ {
			for _, q := range qs {
				acked = append(acked, publishNumbered(t, pub, "p", "dr/x", q, next, 1)...)
				next++
			}
		}
		got.waitFor(t, want, 10*time.Second)
		fwd := int(b.gauge(t, forwarded) - before)
		t.Logf("%s: published %d, received %d in all, forwarded %d", name, len(acked), got.count(), fwd)
		if fwd != wantFwd {
			t.Fatalf("%s: replica-b forwarded %d messages to replica-a, want %d", name, fwd, wantFwd)
		}
	}
	round("QoS 1 subscription (durable)", sub.tally, []byte{0, 1}, 25, 25)

	if tok := sub.c3.Subscribe("dr/#", 0, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	settled(t, a, b)
	round("QoS 0 subscription (plain)", sub.tally, []byte{1}, 20, 20)

	if tok := sub.c3.Subscribe("dr/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	settled(t, a, b)
	round("QoS 1 subscription again (durable)", sub.tally, []byte{1}, 20, 0)

	// Redis loses the session (a restart without persistence), then a v5 client without session
	// expiry takes it over on replica-a: the session in memory is resumed as a clean one, not
	// stored any more, and its QoS 1 messages come over the bus.
	names := bus.NewNames("")
	// replica-a's last commits (acknowledgements of round 3) first: a commit that reached Redis
	// after the delete would find the session gone and make replica-a let go of it.
	var last string
	for stable, deadline := 0, time.Now().Add(10*time.Second); stable < 3; time.Sleep(100 * time.Millisecond) {
		now, err := rs.Do("HGETALL", names.Session("durable-route"))
		if err != nil {
			t.Fatal(err)
		}
		if now == last {
			stable++
		} else {
			stable, last = 0, now
		}
		if time.Now().After(deadline) {
			t.Fatal("the session's state in Redis never settled")
		}
	}
	if _, err := rs.Do("DEL", names.Session("durable-route"), names.SessionLog("durable-route")); err != nil {
		t.Fatal(err)
	}
	got := newTally()
	c, ca, err := resumeV5(a.mqtt, "durable-route", got.add)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("takeover: %v, session present %v", err, ca != nil && ca.SessionPresent)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	// The route turns plain asynchronously (the counts settled() compares do not change): a
	// probe goes until one arrives, then the round counts.
	probe := connectV3(t, b.mqtt, "probe", true, nil)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; got.count() == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the resumed clean session never got a message over the bus")
		}
		publishNumbered(t, probe, "q", "dr/probe", 1, i, 1)
		time.Sleep(50 * time.Millisecond)
	}
	round("resumed from memory as a clean session (plain)", got, []byte{1}, 20, 20)
}

// resumeV5 connects a v5 client to addr with Clean Start 0 and no session expiry; every payload
// it receives goes to got.
func resumeV5(addr, id string, got func(string)) (*paho.Client, *paho.Connack, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { got(string(pr.Packet.Payload)); return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: false})
	return c, ca, err
}
