// Package monitor is the gateway's picture of the cluster: the member list kept from heartbeats,
// the probe ring run through the probe package, the damped status of every member and pair, the
// overall status with its reason, and the Prometheus series that mirror them.
//
// A member is down when MissedHeartbeats heartbeat intervals pass without one, and forgotten after
// ForgetAfter. Raw observations (a probe lost, a heartbeat missing, the Redis link reported down, an
// adapter lagging) go through a damper: they must persist FailAfter before the member or pair turns
// red, and RecoverAfter of health turns it green again. The cluster is red while anything judged is
// red, and its reason names each red member and pair.
package monitor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/probe"
)

// HistoryLength is how many probe results per pair are kept for the status page's sparkline.
const HistoryLength = 60

// Options configure a Monitor. Every duration must be positive unless said otherwise.
type Options struct {
	GatewayID         string
	HeartbeatInterval time.Duration // how often members beat
	DownAfter         time.Duration // silence after which a member is down
	ForgetAfter       time.Duration // silence after which a member is forgotten
	ProbeInterval     time.Duration
	ProbeTimeout      time.Duration
	FailAfter         time.Duration // may be 0: no damping
	RecoverAfter      time.Duration // may be 0
	AdapterMaxLag     time.Duration // 0: the lag is shown, not judged
	// BusStatus reports the gateway's own Redis link: while it is down the gateway cannot see
	// heartbeats, so it does not take their absence for the members' fault.
	BusStatus  func() wire.Status
	Registerer prometheus.Registerer
	Log        zerolog.Logger
}

// Monitor keeps the cluster's state. Feed it heartbeats with OnHeartbeat, run it with Run, read it
// with Snapshot.
type Monitor struct {
	opts    Options
	prober  *probe.Prober
	metrics *metrics
	started time.Time

	// mu guards everything that follows.
	mu      sync.Mutex
	members map[string]*member
	// left are the incarnations (Started) of members that said they were leaving, and when:
	// a heartbeat of theirs still in flight must not bring them back.
	left  map[string]leftMember
	pairs map[Pair]*pairState
	// brokers is the condition "some broker sends heartbeats".
	brokers damper
	// redis is the condition "the gateway's own Redis link is up".
	redis  damper
	rounds int // probe rounds completed
	last   Status
}

type member struct {
	hb        wire.Heartbeat
	firstSeen time.Time // on the gateway's clock
	lastSeen  time.Time
	d         damper
}

type pairState struct {
	d       damper
	last    probe.Result
	history []Point // oldest first, at most HistoryLength
}

// New returns a Monitor that probes through prober.
func New(opts Options, prober *probe.Prober) *Monitor {
	now := time.Now()
	if opts.BusStatus == nil {
		opts.BusStatus = func() wire.Status { return wire.Status{Connected: true} }
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m := &Monitor{
		opts: opts, prober: prober, metrics: newMetrics(opts.Registerer), started: now,
		members: map[string]*member{}, pairs: map[Pair]*pairState{}, left: map[string]leftMember{},
		brokers: newDamper(now), redis: newDamper(now), last: Green,
	}
	m.metrics.clusterGreen.Set(1)
	return m
}

// OnHeartbeat records a heartbeat; it is the bus's OnHeartbeat callback and returns at once.
func (m *Monitor) OnHeartbeat(hb wire.Heartbeat) {
	if hb.ReplicaID == m.opts.GatewayID {
		return
	}
	if err := wire.ValidateReplicaID(hb.ReplicaID); err != nil {
		m.opts.Log.Debug().Err(err).Msg("heartbeat with an unusable replica id ignored")
		return
	}
	if hb.Kind == "" {
		hb.Kind = wire.KindBroker // PublishHeartbeat treats an empty kind as a broker too
	}
	now := time.Now()
	m.mu.Lock()
	if l, ok := m.left[hb.ReplicaID]; ok {
		if !hb.Leaving && hb.Started.Equal(l.started) {
			m.mu.Unlock()
			return // a late heartbeat of the process that left
		}
		delete(m.left, hb.ReplicaID) // a new process under the same id
	}
	if hb.Leaving {
		// Shut down on purpose (drain, scale-down): gone, not failed.
		m.left[hb.ReplicaID] = leftMember{started: hb.Started, at: now}
		if mb, ok := m.members[hb.ReplicaID]; ok {
			delete(m.members, hb.ReplicaID)
			m.metrics.forgetMember(hb.ReplicaID, string(mb.hb.Kind))
			m.opts.Log.Info().Str("replica", hb.ReplicaID).Msg("member left")
		}
		m.mu.Unlock()
		return
	}
	mb, ok := m.members[hb.ReplicaID]
	if !ok {
		mb = &member{firstSeen: now, d: newDamper(now)}
		m.members[hb.ReplicaID] = mb
		m.opts.Log.Info().Str("replica", hb.ReplicaID).Str("kind", string(hb.Kind)).Str("address", hb.Address).
			Msg("new member")
	} else if mb.lastSeen.Before(now.Add(-m.opts.DownAfter)) {
		m.opts.Log.Info().Str("replica", hb.ReplicaID).Dur("silent", now.Sub(mb.lastSeen)).Msg("member back")
	}
	mb.hb, mb.lastSeen = hb, now
	m.evalMemberLocked(hb.ReplicaID, mb, now)
	m.mu.Unlock()
	if hb.Kind == wire.KindBroker && hb.Address != "" {
		m.prober.Ensure(hb.ReplicaID, hb.Address)
	}
}

type leftMember struct{ started, at time.Time }

// judged reports whether members of kind count towards the cluster's status. Other gateways are
// listed but not judged.
func judged(k wire.Kind) bool { return k == wire.KindBroker || k == wire.KindAdapter }

// memberProblem returns what is wrong with the member now, or "".
func (m *Monitor) memberProblem(mb *member, now time.Time, seeing bool) string {
	if silent := now.Sub(mb.lastSeen); seeing && silent > m.opts.DownAfter {
		return fmt.Sprintf("no heartbeat for %s", roundDur(silent))
	}
	if !mb.hb.Redis.Connected {
		s := "reports its Redis link down"
		if mb.hb.Redis.LastError != "" {
			s += ": " + mb.hb.Redis.LastError
		}
		return s
	}
	if mb.hb.Kind == wire.KindAdapter && m.opts.AdapterMaxLag > 0 &&
		mb.hb.ExportLagSeconds > m.opts.AdapterMaxLag.Seconds() {
		return fmt.Sprintf("export lag %s exceeds %s",
			roundDur(time.Duration(mb.hb.ExportLagSeconds*float64(time.Second))), m.opts.AdapterMaxLag)
	}
	return ""
}

func (m *Monitor) evalMemberLocked(id string, mb *member, now time.Time) {
	seeing := m.opts.BusStatus().Connected
	if !seeing && now.Sub(mb.lastSeen) > m.opts.DownAfter {
		// The gateway is blind: keep the member as it was.
		mb.d.eval(now, m.opts.FailAfter, m.opts.RecoverAfter)
		return
	}
	problem := m.memberProblem(mb, now, seeing)
	mb.d.observe(now, problem == "", problem, m.opts.FailAfter, m.opts.RecoverAfter)
	kind := string(mb.hb.Kind)
	m.metrics.memberUp.WithLabelValues(id, kind).Set(b2f(now.Sub(mb.lastSeen) <= m.opts.DownAfter))
	m.metrics.memberGreen.WithLabelValues(id, kind).Set(b2f(mb.d.status == Green))
	if mb.hb.Kind == wire.KindAdapter {
		m.metrics.lagSeconds.WithLabelValues(id).Set(mb.hb.ExportLagSeconds)
		m.metrics.lagEntries.WithLabelValues(id).Set(float64(mb.hb.ExportLag))
	}
}

// evaluate re-judges every member, pair and condition at now, forgets long-silent members, and
// updates the overall status.
func (m *Monitor) evaluate(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seeing := m.opts.BusStatus().Connected
	m.redis.observe(now, seeing, "the gateway's own Redis link is down: heartbeats cannot be seen",
		m.opts.FailAfter, m.opts.RecoverAfter)
	for id, l := range m.left {
		if now.Sub(l.at) > m.opts.ForgetAfter {
			delete(m.left, id)
		}
	}
	up := map[wire.Kind]int{}
	anyBroker := false
	for id, mb := range m.members {
		if seeing && now.Sub(mb.lastSeen) > m.opts.ForgetAfter {
			m.opts.Log.Info().Str("replica", id).Dur("silent", now.Sub(mb.lastSeen)).Msg("member forgotten")
			delete(m.members, id)
			m.metrics.forgetMember(id, string(mb.hb.Kind))
			continue
		}
		m.evalMemberLocked(id, mb, now)
		if now.Sub(mb.lastSeen) <= m.opts.DownAfter {
			up[mb.hb.Kind]++
			anyBroker = anyBroker || mb.hb.Kind == wire.KindBroker
		}
	}
	for _, k := range []wire.Kind{wire.KindBroker, wire.KindAdapter, wire.KindGateway} {
		m.metrics.membersUp.WithLabelValues(string(k)).Set(float64(up[k]))
	}
	m.brokers.observe(now, anyBroker, "no broker sends heartbeats", m.opts.FailAfter, m.opts.RecoverAfter)
	for p, ps := range m.pairs {
		ps.d.eval(now, m.opts.FailAfter, m.opts.RecoverAfter)
		m.metrics.pairGreen.WithLabelValues(p.From, p.To).Set(b2f(ps.d.status == Green))
	}
	st, reason := m.overallLocked(now)
	if st != m.last {
		ev := m.opts.Log.Warn()
		if st == Green {
			ev = m.opts.Log.Info()
		}
		ev.Str("status", string(st)).Str("reason", reason).Msg("cluster status changed")
		m.last = st
	}
	m.metrics.clusterGreen.Set(b2f(st == Green))
}

// plan returns the pairs for the next round, drops the state of pairs no longer planned and closes
// the probe connections of forgotten replicas.
func (m *Monitor) plan(now time.Time) []Pair {
	m.mu.Lock()
	var live, down []string
	for id, mb := range m.members {
		if mb.hb.Kind != wire.KindBroker || mb.hb.Address == "" {
			continue
		}
		if now.Sub(mb.lastSeen) <= m.opts.DownAfter {
			live = append(live, id)
		} else {
			down = append(down, id)
		}
	}
	pairs := Plan(live, down)
	for p := range m.pairs {
		if !slices.Contains(pairs, p) {
			delete(m.pairs, p)
			m.metrics.forgetPair(p)
		}
	}
	for _, p := range pairs {
		if m.pairs[p] == nil {
			m.pairs[p] = &pairState{d: newDamper(now)}
		}
	}
	keep := map[string]bool{}
	for id, mb := range m.members {
		keep[id] = mb.hb.Kind == wire.KindBroker
	}
	m.mu.Unlock()
	m.prober.Retain(func(id string) bool { return keep[id] })
	return pairs
}

// round probes every planned pair at once and records the results.
func (m *Monitor) round(ctx context.Context) {
	pairs := m.plan(time.Now())
	results := make([]probe.Result, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Go(func() { results[i] = m.prober.Probe(ctx, p.From, p.To, m.opts.ProbeTimeout) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	m.mu.Lock()
	for _, r := range results {
		p := Pair{r.From, r.To}
		ps := m.pairs[p]
		if ps == nil {
			continue
		}
		ok := r.Err == nil
		detail := ""
		if !ok {
			detail = r.Err.Error()
		}
		before := ps.d.status
		ps.d.observe(now, ok, detail, m.opts.FailAfter, m.opts.RecoverAfter)
		ps.last = r
		pt := Point{At: r.At.UnixMilli(), OK: ok}
		if ok {
			pt.LatencyMS = float64(r.Latency.Microseconds()) / 1000
			m.metrics.latency.WithLabelValues(p.From, p.To).Observe(r.Latency.Seconds())
		} else {
			m.metrics.failures.WithLabelValues(p.From, p.To).Inc()
		}
		m.metrics.probed(p)
		ps.history = append(ps.history, pt)
		if len(ps.history) > HistoryLength {
			ps.history = slices.Delete(ps.history, 0, len(ps.history)-HistoryLength)
		}
		if before != ps.d.status {
			ev := m.opts.Log.Warn()
			if ps.d.status == Green {
				ev = m.opts.Log.Info()
			}
			ev.Str("pair", p.String()).Str("status", string(ps.d.status)).Str("detail", ps.d.detail).Msg("pair status changed")
		} else if !ok {
			m.opts.Log.Debug().Str("pair", p.String()).Err(r.Err).Msg("probe failed")
		}
	}
	m.rounds++
	m.mu.Unlock()
	m.evaluate(now)
}

// Run probes every ProbeInterval and re-evaluates the state twice per heartbeat interval until
// ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	evalEvery := min(max(m.opts.HeartbeatInterval/2, 10*time.Millisecond), time.Second)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(evalEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				m.evaluate(now)
			}
		}
	})
	t := time.NewTicker(m.opts.ProbeInterval)
	defer t.Stop()
	for {
		m.round(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

// Status returns the cluster's status and its reason as last judged.
func (m *Monitor) Status() (Status, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.overallLocked(time.Now())
}

// overallLocked returns the cluster's status and the reason: every red item when red; when green,
// a summary and any failure not yet old enough to count.
func (m *Monitor) overallLocked(now time.Time) (Status, string) {
	var red, pending []string
	add := func(what string, d *damper) {
		switch {
		case d.status == Red:
			if d.rawOK {
				red = append(red, fmt.Sprintf("%s: recovering for %s (green after %s)", what,
					roundDur(now.Sub(d.rawSince)), m.opts.RecoverAfter))
			} else {
				red = append(red, fmt.Sprintf("%s: failing for %s: %s", what, roundDur(now.Sub(d.rawSince)), d.detail))
			}
		case !d.rawOK:
			pending = append(pending, fmt.Sprintf("%s: failing for %s (red after %s): %s", what,
				roundDur(now.Sub(d.rawSince)), m.opts.FailAfter, d.detail))
		}
	}
	add("gateway", &m.redis)
	add("cluster", &m.brokers)
	ids := make([]string, 0, len(m.members))
	for id := range m.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	nBrokers, nAdapters := 0, 0
	for _, id := range ids {
		mb := m.members[id]
		if !judged(mb.hb.Kind) {
			continue
		}
		if mb.hb.Kind == wire.KindBroker {
			nBrokers++
		} else {
			nAdapters++
		}
		add(fmt.Sprintf("%s %s", mb.hb.Kind, id), &mb.d)
	}
	pairs := m.sortedPairsLocked()
	for _, p := range pairs {
		add("probe "+p.String(), &m.pairs[p].d)
	}
	if len(red) > 0 {
		return Red, strings.Join(red, "; ")
	}
	s := fmt.Sprintf("%d brokers, %d adapters and %d probe pairs green", nBrokers, nAdapters, len(pairs))
	if len(pending) > 0 {
		s += "; " + strings.Join(pending, "; ")
	}
	return Green, s
}

func (m *Monitor) sortedPairsLocked() []Pair {
	pairs := make([]Pair, 0, len(m.pairs))
	for p := range m.pairs {
		pairs = append(pairs, p)
	}
	slices.SortFunc(pairs, func(a, b Pair) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.To, b.To)
	})
	return pairs
}

// roundDur rounds d for people: milliseconds below a second, tenths of a second above.
func roundDur(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
