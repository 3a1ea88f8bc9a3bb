package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// The fault-injection test of the durable-session guarantee, in the spirit of Jepsen: three
// replicas on one Redis with an append-only file; persistent subscribers at QoS 1 and 2, some
// always online, some sleeping and waking on random replicas; publishers sending numbered
// messages at QoS 1 and 2 and recording every acknowledgement. Meanwhile, at random (seeded):
// SIGTERM and restart of a replica, SIGKILL and restart of a replica, SIGKILL and restart of
// Redis, and a partition of one replica from Redis (a network namespace whose link is cut, when
// the test runs as root with iproute2). Then everything heals, every session reconnects and
// drains, and for every session: acknowledged minus received must be 0, no QoS 2 message twice,
// and each publisher's messages in order.
//
// Environment: MCLOUDTT_CHAOS_SEED replays a run; MCLOUDTT_CHAOS_DURATION (default 20s) and
// MCLOUDTT_CHAOS_FAULT_EVERY (default 4s) set its length and fault rate; MCLOUDTT_CHAOS_SESSIONS
// (default 50) the subscribers. `make chaos` runs it long.
func TestChaosDurableSessions(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MCLOUDTT_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	duration := envDuration("MCLOUDTT_CHAOS_DURATION", 20*time.Second)
	every := envDuration("MCLOUDTT_CHAOS_FAULT_EVERY", 4*time.Second)
	nsubs := 50
	if s := os.Getenv("MCLOUDTT_CHAOS_SESSIONS"); s != "" {
		nsubs, _ = strconv.Atoi(s)
	}
	t.Logf("chaos seed %d (MCLOUDTT_CHAOS_SEED=%d replays the fault schedule), %v of traffic, a fault every %v, %d sessions, appendfsync %s",
		seed, seed, duration, every, nsubs, envOr("MCLOUDTT_CHAOS_FSYNC", "always"))
	// The fault schedule has a generator of its own, so that a seed replays it; the clients'
	// jitter and replica choices another.
	faultRng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	randFault := func(n int) int { return faultRng.IntN(n) }
	rng := rand.New(rand.NewPCG(seed^0x5bd1e995, seed))
	var rngMu sync.Mutex
	randN := func(n int) int { rngMu.Lock(); defer rngMu.Unlock(); return rng.IntN(n) }

	// Redis, reachable from the network namespace too when there is one.
	ns, nsErr := newNetns(t)
	// appendfsync always: Redis writes and fsyncs the append-only file before it answers, so a
	// SIGKILL loses nothing it acknowledged. With everysec a SIGKILL loses the writes of the last
	// moments whenever a background fsync is still running (Redis then postpones its write of the
	// file by up to 2 s and answers meanwhile); MCLOUDTT_CHAOS_FSYNC=everysec shows it.
	fsync := "always"
	if s := os.Getenv("MCLOUDTT_CHAOS_FSYNC"); s != "" {
		fsync = s
	}
	redisArgs := []string{"--appendonly", "yes", "--appendfsync", fsync, "--client-output-buffer-limit", "pubsub 256mb 64mb 60"}
	if nsErr == nil {
		redisArgs = append(redisArgs, "--bind", "127.0.0.1 "+ns.dataRootIP, "--protected-mode", "no")
	} else {
		t.Logf("no partition faults: %v", nsErr)
	}
	rs := redistest.Start(t, redistest.WithArgs(redisArgs...))
	port := strings.TrimPrefix(rs.Addr(), "127.0.0.1:")

	reps := []*chaosReplica{
		{id: "replica-0", mqtt: proctest.FreeAddr(t), http: proctest.FreeAddr(t), redis: rs.Addr()},
		{id: "replica-1", mqtt: proctest.FreeAddr(t), http: proctest.FreeAddr(t), redis: rs.Addr()},
		{id: "replica-2", mqtt: proctest.FreeAddr(t), http: proctest.FreeAddr(t), redis: rs.Addr()},
	}
	if ns != nil {
		reps[2].mqtt, reps[2].http = ns.mgmtIP+":1883", ns.mgmtIP+":8080"
		reps[2].redis, reps[2].ns = ns.dataRootIP+":"+port, ns
	}
	for _, r := range reps {
		r.start(t)
	}
	for _, r := range reps {
		r.waitReady(t)
	}

	// Publishers, persistent sessions reconnecting to any replica: two at QoS 1 (paho, 3.1.1),
	// two at QoS 2 (3.1.1 and 5.0). The QoS 2 ones are the test's own minimal clients, because
	// paho.mqtt.golang does not keep its PUBREL across a reconnect: it sends the PUBLISH again
	// after the broker completed the exchange, which any broker then takes for a new message.
	pubs := []*chaosPub{{name: "p0", qos: 1, acked: map[int]bool{}}, {name: "p1", qos: 1, acked: map[int]bool{}}}
	qos2Pubs := []*rawQoS2Pub{{name: "p2", v: mqtt.V311, acked: map[int]bool{}}, {name: "p3", v: mqtt.V5, acked: map[int]bool{}}}
	// Subscribers: even ones 3.1.1 at QoS 1 (paho), odd ones 5.0 at QoS 2 (paho.golang); every
	// third sleeps now and then.
	subs := make([]*chaosSub, nsubs)
	for i := range subs {
		v5 := i%2 == 1
		q := byte(1)
		if v5 {
			q = 2
		}
		subs[i] = &chaosSub{durableSub: newDurableSub(t, fmt.Sprintf("sess-%02d", i), v5, "chaos/#", q), sleeper: i%3 == 0}
	}
	live := func() []*chaosReplica {
		var out []*chaosReplica
		for _, r := range reps {
			if r.up.Load() {
				out = append(out, r)
			}
		}
		return out
	}
	pick := func() *chaosReplica {
		l := live()
		if len(l) == 0 {
			return reps[0]
		}
		return l[randN(len(l))]
	}
	for i, s := range subs {
		if err := s.connect(reps[i%3].mqtt, true); err != nil {
			t.Fatal(err)
		}
	}
	settled(t, reps[0].asReplica(), reps[1].asReplica(), reps[2].asReplica())
	for _, p := range pubs {
		p.connect(t, reps)
	}
	addrOf := func() string { return pick().mqtt }

	stop, stopSubs := make(chan struct{}), make(chan struct{})
	var draining atomic.Bool // sleepers stay awake; everyone keeps reconnecting until drained
	var wg, wgSubs sync.WaitGroup
	for _, p := range pubs {
		wg.Add(1)
		go func() { defer wg.Done(); p.run(stop) }()
	}
	for _, p := range qos2Pubs {
		wg.Add(1)
		go func() { defer wg.Done(); p.run(stop, addrOf) }()
	}
	for _, s := range subs {
		wgSubs.Add(1)
		go func() {
			defer wgSubs.Done()
			s.run(stopSubs, &draining, pick, func(n int) time.Duration { return time.Duration(randN(n)) * time.Millisecond })
		}()
	}

	// The faults, one at a time.
	var faults []string
	end := time.Now().Add(duration)
	for time.Now().Add(every).Before(end) {
		time.Sleep(every / 2)
		kinds := []string{"sigterm", "sigkill", "redis-kill"}
		if ns != nil {
			kinds = append(kinds, "partition")
		}
		kind := kinds[randFault(len(kinds))]
		switch kind {
		case "sigterm", "sigkill":
			r := reps[randFault(len(reps))]
			sig := syscall.SIGTERM
			if kind == "sigkill" {
				sig = syscall.SIGKILL
			}
			faults = append(faults, kind+" "+r.id)
			r.stop(t, sig)
			time.Sleep(time.Duration(500+randFault(1500)) * time.Millisecond)
			r.start(t)
		case "redis-kill":
			faults = append(faults, "redis sigkill")
			rs.Kill()
			time.Sleep(time.Duration(300+randFault(1000)) * time.Millisecond)
			rs.Start()
		case "partition":
			faults = append(faults, "partition "+reps[2].id)
			if err := ipCmd("link", "set", ns.dataRoot, "down"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(2000+randFault(3000)) * time.Millisecond)
			if err := ipCmd("link", "set", ns.dataRoot, "up"); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(every / 2)
	}
	t.Logf("faults: %s", strings.Join(faults, ", "))

	// Heal: every replica up and ready; publishers finish (their unacknowledged messages are
	// resent until acknowledged), then stop; every session connects and drains.
	for _, r := range reps {
		if !r.up.Load() {
			r.start(t)
		}
	}
	for _, r := range reps {
		r.waitReady(t)
	}
	draining.Store(true)
	close(stop)
	wg.Wait()
	for _, p := range pubs {
		p.settle(t, 60*time.Second)
	}
	acked := map[string][]int{}
	total := 0
	for _, p := range pubs {
		for n := range p.acked {
			acked[p.name] = append(acked[p.name], n)
		}
		sort.Ints(acked[p.name])
		total += len(acked[p.name])
		t.Logf("publisher %s (paho 3.1.1, QoS 1): %d acknowledged, %d failed", p.name, len(p.acked), p.failed.Load())
	}
	for _, p := range qos2Pubs {
		for n := range p.acked {
			acked[p.name] = append(acked[p.name], n)
		}
		sort.Ints(acked[p.name])
		total += len(acked[p.name])
		t.Logf("publisher %s (%v, QoS 2): %d acknowledged (PUBREC), %d reconnects, %d resent", p.name, p.v, len(p.acked), p.reconnects, p.resent)
	}
	deadline := time.Now().Add(60 * time.Second)
	var lost, qos2dups, dups, disorder int
	for _, s := range subs {
		for time.Now().Before(deadline) && s.tally.count() < total {
			select {
			case <-s.tally.more:
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // late duplicates, if any
	close(stopSubs)
	wgSubs.Wait()
	for _, s := range subs {
		missing, d, o := s.tally.check(acked)
		q2 := 0
		if s.qos == 2 {
			q2 = s.tally.dupsFrom("p2", "p3")
		}
		lost += missing
		dups += d
		qos2dups += q2
		disorder += o
		if missing > 0 {
			t.Errorf("%s: missing %v", s.id, s.tally.missingList(acked, 5))
			h, _ := redistest.Do(rs.Addr(), "", "HGETALL", "mcloudtt:{s:"+s.id+"}:session")
			xl, _ := redistest.Do(rs.Addr(), "", "XLEN", "mcloudtt:{s:"+s.id+"}:log")
			ix, _ := redistest.Do(rs.Addr(), "", "HGET", "mcloudtt:dsubs", s.id)
			t.Logf("%s in redis: session %q, log length %s, index entry %q", s.id, h, xl, ix)
		}
		if o > 0 {
			s.tally.mu.Lock()
			t.Errorf("%s: out of order %v", s.id, s.tally.disorderLocked())
			s.tally.mu.Unlock()
		}
		if missing+q2+o > 0 {
			t.Errorf("%s (v5 %v, QoS %d, sleeper %v): acknowledged %d, received %d distinct: missing %d, QoS 2 duplicates %d %v, out of order %d",
				s.id, s.v5, s.qos, s.sleeper, total, s.tally.count(), missing, q2, dupsLocked(s.tally), o)
		}
		s.disconnect()
	}
	if t.Failed() {
		for _, r := range reps {
			for i, p := range r.procs {
				for _, l := range strings.Split(p.Output(), "\n") {
					if l != "" && !strings.Contains(l, "redis subscription") {
						t.Logf("%s#%d: %s", r.id, i, l)
					}
				}
			}
		}
		for _, l := range strings.Split(rs.Log(), "\n") {
			if strings.Contains(l, "AOF") || strings.Contains(l, "fsync") {
				t.Logf("redis: %s", l)
			}
		}
	}
	t.Logf("chaos seed %d: %d faults; %d sessions; %d messages acknowledged, %d deliveries owed; lost (acknowledged minus received) %d, QoS 2 duplicates %d, QoS 1 duplicates %d, out of order %d",
		seed, len(faults), len(subs), total, total*len(subs), lost, qos2dups, dups-qos2dups, disorder)
	for _, p := range pubs {
		p.close()
	}
	if t.Failed() {
		t.Logf("replay with MCLOUDTT_CHAOS_SEED=%d", seed)
	}
}

func envOr(name, def string) string {
	if s := os.Getenv(name); s != "" {
		return s
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
	}
	return def
}

// dupsFrom counts the duplicates among the messages of the named publishers.
func (t *tally) dupsFrom(pubs ...string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for p, c := range t.seen {
		for _, pub := range pubs {
			if strings.HasPrefix(p, pub+"/") && c > 1 {
				n += c - 1
			}
		}
	}
	return n
}

// missingList names up to max acknowledged messages that did not arrive.
func (t *tally) missingList(acked map[string][]int, max int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for pub, ns := range acked {
		for _, n := range ns {
			if p := pub + "/" + strconv.Itoa(n); t.seen[p] == 0 && len(out) < max {
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// dupList names up to max of the messages of the named publishers received more than once.
func (t *tally) dupList(a, b string, max int) []string {
	var out []string
	for p, c := range t.seen {
		if c > 1 && (strings.HasPrefix(p, a+"/") || strings.HasPrefix(p, b+"/")) && len(out) < max {
			out = append(out, fmt.Sprintf("%s x%d", p, c))
		}
	}
	sort.Strings(out)
	return out
}

// chaosReplica is a replica process that the test stops and starts again at the same address.
type chaosReplica struct {
	id, mqtt, http, redis string
	ns                    *netns
	mu                    sync.Mutex
	proc                  *proctest.Proc
	procs                 []*proctest.Proc // every process it ran, for the logs of a failed run
	up                    atomic.Bool
}

func (r *chaosReplica) env() []string {
	return []string{"BROKER_ID=" + r.id, "BROKER_MQTT_ADDR=" + r.mqtt, "BROKER_HTTP_ADDR=" + r.http,
		"BROKER_LOG_FORMAT=json", "BROKER_LOG_LEVEL=warn", "BROKER_REDIS_ADDRS=" + r.redis,
		"BROKER_HEARTBEAT_INTERVAL=200ms", "BROKER_PEER_TIMEOUT=1500ms", "BROKER_SHUTDOWN_TIMEOUT=5s",
		"BROKER_MAX_QUEUED_MESSAGES=100000"}
}

func (r *chaosReplica) start(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ns != nil {
		r.proc = proctest.Start(t, "ip", r.env(), "netns", "exec", r.ns.name, proctest.Build(t, "."))
	} else {
		r.proc = proctest.Start(t, proctest.Build(t, "."), r.env())
	}
	r.procs = append(r.procs, r.proc)
	r.up.Store(true)
}

func (r *chaosReplica) stop(t *testing.T, sig syscall.Signal) {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	r.up.Store(false)
	_ = p.Signal(sig)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, ok := p.Wait(ctx); !ok {
		_ = p.Signal(syscall.SIGKILL)
	}
}

func (r *chaosReplica) asReplica() *replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &replica{Proc: r.proc, id: r.id, mqtt: r.mqtt, http: r.http}
}

func (r *chaosReplica) waitReady(t *testing.T) { r.asReplica().waitReady(t, true, 30*time.Second) }

// chaosPub publishes numbered messages at a steady pace on a persistent session that paho
// reconnects to any replica, resending what was not acknowledged.
type chaosPub struct {
	name   string
	qos    byte
	c      pahov3.Client
	store  *ackStore
	mu     sync.Mutex
	acked  map[int]bool
	failed atomic.Int64
	tokens sync.WaitGroup
}

func (p *chaosPub) connect(t *testing.T, reps []*chaosReplica) {
	p.store = newAckStore()
	o := pahov3.NewClientOptions().SetClientID("chaos-" + p.name).SetCleanSession(false).SetProtocolVersion(4).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).SetKeepAlive(5 * time.Second).SetWriteTimeout(5 * time.Second).
		// Its unacknowledged messages are sent again in their order [MQTT-4.6.0-1] (paho's default
		// store resends them in map order).
		SetStore(p.store)
	for _, r := range reps {
		o.AddBroker("tcp://" + r.mqtt)
	}
	p.c = pahov3.NewClient(o)
	if tok := p.c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher %s: %v", p.name, tok.Error())
	}
}

func (p *chaosPub) run(stop chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		// One message at a time, as many devices publish: paho may interleave its resent
		// messages with new ones after a reconnect, and then a broker cannot keep their order.
		// The next one goes once this one has its PUBACK, which is when paho deletes it from
		// its store, not when the token completes: after a reconnect paho completes the token,
		// without an error, as it queues the resend (paho.mqtt.golang 1.5.1, messageIds.claimID),
		// and a publisher that went on then could put its next message on the wire first.
		tok := p.c.Publish("chaos/"+p.name, p.qos, false, p.name+"/"+strconv.Itoa(n))
		p.tokens.Add(1)
		tok.Wait()
		if tok.Error() != nil {
			p.failed.Add(1) // still in the store when paho keeps it: resent, and waited for
		}
		acked := p.store.waitAcked(tok.(*pahov3.PublishToken).MessageID(), stop, 30*time.Second)
		p.tokens.Done()
		if !acked {
			continue
		}
		p.mu.Lock()
		p.acked[n] = true
		p.mu.Unlock()
	}
}

// settle waits until every publish was acknowledged or failed.
func (p *chaosPub) settle(t *testing.T, d time.Duration) {
	done := make(chan struct{})
	go func() { p.tokens.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Logf("publisher %s: some publishes still unsettled after %v (not counted as acknowledged)", p.name, d)
	}
}

func (p *chaosPub) close() { p.c.Disconnect(100) }

// ackStore is paho's ordered in-memory store that tells when an outbound message leaves it:
// paho deletes a QoS 1 PUBLISH from its store when the PUBACK comes.
type ackStore struct {
	*pahov3.OrderedMemoryStore
	mu   sync.Mutex
	gone chan struct{} // closed (and replaced) at every Del
}

func newAckStore() *ackStore {
	return &ackStore{OrderedMemoryStore: pahov3.NewOrderedMemoryStore(), gone: make(chan struct{})}
}

func (s *ackStore) Del(key string) {
	s.OrderedMemoryStore.Del(key)
	s.mu.Lock()
	close(s.gone)
	s.gone = make(chan struct{})
	s.mu.Unlock()
}

// waitAcked waits until the outbound message with packet id id (0: none was sent) is no longer
// in the store, and reports whether it is gone; false when stop closed or max passed first (paho
// resends a stored message only after a reconnect).
func (s *ackStore) waitAcked(id uint16, stop <-chan struct{}, max time.Duration) bool {
	if id == 0 {
		return false
	}
	key := "o." + strconv.Itoa(int(id)) // paho's outbound key
	t := time.NewTimer(max)
	defer t.Stop()
	for {
		s.mu.Lock()
		gone := s.gone
		s.mu.Unlock()
		if s.Get(key) == nil {
			return true
		}
		select {
		case <-gone:
		case <-stop:
			return false
		case <-t.C:
			return false
		}
	}
}

// chaosSub is a persistent subscriber that stays connected (reconnecting to a random live
// replica when its connection dies) or, as a sleeper, disconnects now and then.
type chaosSub struct {
	*durableSub
	sleeper bool
	mu      sync.Mutex
}

func (s *chaosSub) connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c5 != nil {
		select {
		case <-s.c5.Done():
			return false
		default:
			return true
		}
	}
	return s.c3 != nil && s.c3.IsConnectionOpen()
}

func (s *chaosSub) run(stop chan struct{}, draining *atomic.Bool, pick func() *chaosReplica, jitter func(ms int) time.Duration) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(100*time.Millisecond + jitter(200)):
		}
		if s.sleeper && !draining.Load() && s.connected() && jitter(10) == 0 {
			s.mu.Lock()
			s.disconnect()
			s.mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(500*time.Millisecond + jitter(2500)):
			}
		}
		if !s.connected() {
			s.mu.Lock()
			if s.c5 != nil {
				_ = s.c5.Disconnect(&paho.Disconnect{})
				s.c5 = nil
			}
			if s.c3 != nil {
				s.c3.Disconnect(0)
				s.c3 = nil
			}
			_ = s.connect(pick().mqtt, false) // refused while Redis is away: tried again
			s.mu.Unlock()
		}
	}
}

func dupsLocked(t *tally) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dupList("p2", "p3", 5)
}

// rawQoS2Pub publishes numbered QoS 2 messages one at a time on a persistent session, as the
// spec asks of a client: on a reconnect it sends the PUBLISH again (DUP, same packet id) until
// it has the PUBREC, then the PUBREL until it has the PUBCOMP [MQTT-4.4.0-1]. A message counts
// as acknowledged once its PUBREC is in: from then on the broker owes its delivery.
type rawQoS2Pub struct {
	name       string
	v          mqtt.Version
	mu         sync.Mutex
	acked      map[int]bool
	conn       net.Conn
	rd         *mqtt.Reader
	reconnects int
	resent     int
}

func (p *rawQoS2Pub) send(pk mqtt.Packet) error {
	b, err := pk.AppendTo(nil, p.v)
	if err != nil {
		return err
	}
	_ = p.conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
	_, err = p.conn.Write(b)
	return err
}

// await reads until a packet of type t for packet id arrives (others are ignored).
func (p *rawQoS2Pub) await(t mqtt.Type, id uint16) (mqtt.Packet, error) {
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		pk, err := p.rd.ReadPacket()
		if err != nil {
			return nil, err
		}
		if pk.Type() != t {
			continue
		}
		switch x := pk.(type) {
		case *mqtt.Pubrec:
			if x.PacketID == id {
				return pk, nil
			}
		case *mqtt.Pubcomp:
			if x.PacketID == id {
				return pk, nil
			}
		default:
			return pk, nil
		}
	}
}

func (p *rawQoS2Pub) connect(addr string) error {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn = nil
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	p.conn, p.rd = c, mqtt.NewReader(bufio.NewReader(c), 0)
	p.rd.SetVersion(p.v)
	cp := &mqtt.Connect{ProtocolName: "MQTT", Version: p.v, ClientID: "chaos-" + p.name, KeepAlive: 30}
	if p.v == mqtt.V5 {
		cp.Properties.SessionExpiry = 3600
		cp.Properties.Set(mqtt.PropSessionExpiry)
	}
	if err := p.send(cp); err != nil {
		return err
	}
	pk, err := p.await(mqtt.CONNACK, 0)
	if err != nil {
		return err
	}
	if ack := pk.(*mqtt.Connack); ack.ReasonCode != 0 {
		return fmt.Errorf("connack %#x", ack.ReasonCode)
	}
	return nil
}

func (p *rawQoS2Pub) run(stop chan struct{}, addr func() string) {
	defer func() {
		if p.conn != nil {
			_ = p.send(&mqtt.Disconnect{})
			_ = p.conn.Close()
		}
	}()
	pid := uint16(0)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for n := 0; !stopped(); n++ {
		time.Sleep(50 * time.Millisecond)
		pid = pid%65535 + 1
		haveRec, sent := false, false
		for {
			if p.conn == nil {
				if err := p.connect(addr()); err != nil {
					if p.conn != nil {
						_ = p.conn.Close()
						p.conn = nil
					}
					time.Sleep(100 * time.Millisecond)
					continue
				}
				p.reconnects++
			}
			var err error
			if !haveRec {
				if sent {
					p.resent++
				}
				err = p.send(&mqtt.Publish{QoS: 2, PacketID: pid, Dup: sent, Topic: "chaos/" + p.name, Payload: []byte(p.name + "/" + strconv.Itoa(n))})
				sent = true
				var pk mqtt.Packet
				if err == nil {
					pk, err = p.await(mqtt.PUBREC, pid)
				}
				if err == nil {
					if rec := pk.(*mqtt.Pubrec); rec.ReasonCode.IsError() {
						// Refused (v5): the exchange is over; the message is sent again as a
						// new one, with a new packet id.
						pid = pid%65535 + 1
						sent = false
						time.Sleep(100 * time.Millisecond)
						continue
					}
					haveRec = true
					p.mu.Lock()
					p.acked[n] = true
					p.mu.Unlock()
				}
			}
			if err == nil {
				err = p.send(&mqtt.Pubrel{PacketID: pid})
				if err == nil {
					_, err = p.await(mqtt.PUBCOMP, pid)
				}
				if err == nil {
					break
				}
			}
			_ = p.conn.Close()
			p.conn = nil
		}
	}
}
