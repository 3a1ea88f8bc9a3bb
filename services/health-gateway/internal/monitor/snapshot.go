package monitor

import (
	"slices"
	"strings"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Cluster is the JSON document of GET /api/v1/cluster.
type Cluster struct {
	// Status is green or red; Reason names every red member and pair (and, when green, failures not
	// yet old enough to count).
	Status      Status    `json:"status"`
	Reason      string    `json:"reason"`
	GeneratedAt time.Time `json:"generated_at"`
	Gateway     Gateway   `json:"gateway"`
	Members     []Member  `json:"members"`
	Pairs       []PairOut `json:"pairs"`
	// Adapters lists the export lag of every adapter (also in Members).
	Adapters []AdapterLag `json:"adapters"`
}

// Gateway describes the gateway itself and the settings that explain its judgements.
type Gateway struct {
	ID                  string      `json:"id"`
	Redis               wire.Status `json:"redis"`
	Started             time.Time   `json:"started"`
	ProbeRounds         int         `json:"probe_rounds"`
	ProbeIntervalMS     int64       `json:"probe_interval_ms"`
	ProbeTimeoutMS      int64       `json:"probe_timeout_ms"`
	FailAfterMS         int64       `json:"fail_after_ms"`
	RecoverAfterMS      int64       `json:"recover_after_ms"`
	HeartbeatIntervalMS int64       `json:"heartbeat_interval_ms"`
	DownAfterMS         int64       `json:"down_after_ms"`
	AdapterMaxLagMS     int64       `json:"adapter_max_lag_ms"`
}

// Member is one process that sends heartbeats.
type Member struct {
	ReplicaID string    `json:"replica_id"`
	Kind      wire.Kind `json:"kind"`
	Version   string    `json:"version"`
	Address   string    `json:"address,omitempty"`
	// Up: heartbeats arrive (fewer than the configured number missed).
	Up bool `json:"up"`
	// Status is the damped judgement; Pending says the latest observations disagree with it.
	Status  Status    `json:"status"`
	Pending bool      `json:"pending"`
	Since   time.Time `json:"since"`
	// Problem is what is wrong now ("" when nothing), or what was wrong last while red.
	Problem             string      `json:"problem,omitempty"`
	LastHeartbeat       time.Time   `json:"last_heartbeat"` // on the gateway's clock
	HeartbeatAgeSeconds float64     `json:"heartbeat_age_seconds"`
	Started             time.Time   `json:"started"`
	Redis               wire.Status `json:"redis"`
	Clients             int         `json:"clients"`
	MsgsInRate          float64     `json:"msgs_in_per_s"`
	MsgsOutRate         float64     `json:"msgs_out_per_s"`
	// ProbeConnected (brokers): the gateway's MQTT probe connection to it is up and subscribed.
	ProbeConnected *bool   `json:"probe_connected,omitempty"`
	ProbeError     string  `json:"probe_error,omitempty"`
	ExportLag      int64   `json:"export_lag,omitempty"`
	ExportLagSecs  float64 `json:"export_lag_seconds,omitempty"`
}

// PairOut is one probe pair.
type PairOut struct {
	From    string    `json:"from"`
	To      string    `json:"to"`
	Status  Status    `json:"status"`
	Pending bool      `json:"pending"`
	Since   time.Time `json:"since"`
	// OK is the latest probe's result; LatencyMS its latency when OK; Error its failure.
	Probed    bool      `json:"probed"`
	OK        bool      `json:"ok"`
	LastProbe time.Time `json:"last_probe,omitzero"`
	LatencyMS float64   `json:"latency_ms,omitempty"`
	Error     string    `json:"error,omitempty"`
	// History holds the latest results, oldest first (the status page's sparkline).
	History []Point `json:"history"`
}

// Point is one probe result in a pair's history.
type Point struct {
	At        int64   `json:"t"` // Unix milliseconds
	OK        bool    `json:"ok"`
	LatencyMS float64 `json:"ms,omitempty"`
}

// AdapterLag is one adapter's export lag.
type AdapterLag struct {
	ReplicaID      string  `json:"replica_id"`
	Up             bool    `json:"up"`
	Status         Status  `json:"status"`
	ExportLag      int64   `json:"export_lag"`
	ExportLagSecs  float64 `json:"export_lag_seconds"`
	HeartbeatAgeMS int64   `json:"heartbeat_age_ms"`
}

// Snapshot returns the current state, judged at this moment.
func (m *Monitor) Snapshot() Cluster {
	now := time.Now()
	m.evaluate(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.opts
	st, reason := m.overallLocked(now)
	c := Cluster{
		Status: st, Reason: reason, GeneratedAt: now,
		Gateway: Gateway{
			ID: o.GatewayID, Redis: o.BusStatus(), Started: m.started, ProbeRounds: m.rounds,
			ProbeIntervalMS: o.ProbeInterval.Milliseconds(), ProbeTimeoutMS: o.ProbeTimeout.Milliseconds(),
			FailAfterMS: o.FailAfter.Milliseconds(), RecoverAfterMS: o.RecoverAfter.Milliseconds(),
			HeartbeatIntervalMS: o.HeartbeatInterval.Milliseconds(), DownAfterMS: o.DownAfter.Milliseconds(),
			AdapterMaxLagMS: o.AdapterMaxLag.Milliseconds(),
		},
		Members: []Member{}, Pairs: []PairOut{}, Adapters: []AdapterLag{},
	}
	ids := make([]string, 0, len(m.members))
	for id := range m.members {
		ids = append(ids, id)
	}
	sortIDs(ids, m.members)
	for _, id := range ids {
		mb := m.members[id]
		age := now.Sub(mb.lastSeen)
		out := Member{
			ReplicaID: id, Kind: mb.hb.Kind, Version: mb.hb.Version, Address: mb.hb.Address,
			Up: age <= o.DownAfter, Status: mb.d.status, Pending: mb.d.pending(), Since: mb.d.since,
			LastHeartbeat: mb.lastSeen, HeartbeatAgeSeconds: age.Seconds(), Started: mb.hb.Started,
			Redis: mb.hb.Redis, Clients: mb.hb.Clients, MsgsInRate: mb.hb.MsgsInRate, MsgsOutRate: mb.hb.MsgsOutRate,
			ExportLag: mb.hb.ExportLag, ExportLagSecs: mb.hb.ExportLagSeconds,
		}
		if !mb.d.rawOK || mb.d.status == Red {
			out.Problem = mb.d.detail
		}
		if mb.hb.Kind == wire.KindBroker {
			ok, e := m.prober.ConnState(id)
			out.ProbeConnected = &ok
			if !ok {
				out.ProbeError = e
			}
		}
		c.Members = append(c.Members, out)
		if mb.hb.Kind == wire.KindAdapter {
			c.Adapters = append(c.Adapters, AdapterLag{
				ReplicaID: id, Up: out.Up, Status: out.Status, ExportLag: mb.hb.ExportLag,
				ExportLagSecs: mb.hb.ExportLagSeconds, HeartbeatAgeMS: age.Milliseconds(),
			})
		}
	}
	for _, p := range m.sortedPairsLocked() {
		ps := m.pairs[p]
		out := PairOut{
			From: p.From, To: p.To, Status: ps.d.status, Pending: ps.d.pending(), Since: ps.d.since,
			Probed: !ps.last.At.IsZero(), History: append([]Point{}, ps.history...),
		}
		if out.Probed {
			out.LastProbe = ps.last.At
			out.OK = ps.last.Err == nil
			if out.OK {
				out.LatencyMS = float64(ps.last.Latency.Microseconds()) / 1000
			} else {
				out.Error = ps.last.Err.Error()
			}
		}
		c.Pairs = append(c.Pairs, out)
	}
	return c
}

// sortIDs orders members by kind (brokers, adapters, gateways), then id.
func sortIDs(ids []string, members map[string]*member) {
	rank := func(k wire.Kind) int {
		switch k {
		case wire.KindBroker:
			return 0
		case wire.KindAdapter:
			return 1
		}
		return 2
	}
	slices.SortFunc(ids, func(a, b string) int {
		if ra, rb := rank(members[a].hb.Kind), rank(members[b].hb.Kind); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
}
