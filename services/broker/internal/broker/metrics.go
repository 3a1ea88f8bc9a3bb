package broker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the broker's counters to Prometheus. It reads the atomic counters at scrape
// time, so the publish path pays nothing for metrics.
func (s *Server) Collector() prometheus.Collector { return (*collector)(s) }

type collector Server

var (
	descConnections = prometheus.NewDesc("mcloudtt_broker_connections",
		"Open network connections, connected or still in CONNECT.", nil, nil)
	descClients = prometheus.NewDesc("mcloudtt_broker_clients_connected",
		"MQTT clients connected (CONNACK sent).", nil, nil)
	descConnects = prometheus.NewDesc("mcloudtt_broker_connects_total",
		"Successful CONNECTs.", nil, nil)
	descDisconnects = prometheus.NewDesc("mcloudtt_broker_disconnects_total",
		"Connections ended, by reason.", []string{"reason"}, nil)
	descMsgsIn = prometheus.NewDesc("mcloudtt_broker_messages_received_total",
		"PUBLISH packets received from clients, by QoS.", []string{"qos"}, nil)
	descMsgsOut = prometheus.NewDesc("mcloudtt_broker_messages_sent_total",
		"PUBLISH packets sent to clients, by QoS.", []string{"qos"}, nil)
	descBytesIn = prometheus.NewDesc("mcloudtt_broker_bytes_received_total",
		"Bytes of MQTT packets received.", nil, nil)
	descBytesOut = prometheus.NewDesc("mcloudtt_broker_bytes_sent_total",
		"Bytes written to clients.", nil, nil)
	descDropped = prometheus.NewDesc("mcloudtt_broker_messages_dropped_total",
		"Messages not delivered to a subscriber or not accepted, by cause.", []string{"cause"}, nil)
	descInflight = prometheus.NewDesc("mcloudtt_broker_inflight_messages",
		"QoS 1/2 messages sent to clients and not yet acknowledged.", nil, nil)
	descQueued = prometheus.NewDesc("mcloudtt_broker_queued_messages",
		"Messages waiting in session queues.", nil, nil)
	descSessions = prometheus.NewDesc("mcloudtt_broker_sessions",
		"Sessions held, connected or not.", nil, nil)
	descSubscriptions = prometheus.NewDesc("mcloudtt_broker_subscriptions",
		"Subscriptions in the index.", nil, nil)
	descRetained = prometheus.NewDesc("mcloudtt_broker_retained_messages",
		"Retained messages stored.", nil, nil)
	descSlow = prometheus.NewDesc("mcloudtt_broker_slow_consumers_total",
		"Clients cut off because their output piled up.", nil, nil)
	descForwarded = prometheus.NewDesc("mcloudtt_broker_cluster_forwarded_total",
		"Messages forwarded to other replicas (one per destination replica).", nil, nil)
	descClusterRecv = prometheus.NewDesc("mcloudtt_broker_cluster_received_total",
		"Messages received from other replicas.", nil, nil)
	descPeers = prometheus.NewDesc("mcloudtt_broker_cluster_peers",
		"Other replicas this one hears heartbeats from.", nil, nil)
	descLocalFilters = prometheus.NewDesc("mcloudtt_broker_cluster_local_filters",
		"Distinct filters this replica has subscribers for (its route table).", nil, nil)
	descRemoteFilters = prometheus.NewDesc("mcloudtt_broker_cluster_remote_filters",
		"Subscriptions of other replicas in the route cache (filter, replica pairs).", nil, nil)
	descExported = prometheus.NewDesc("mcloudtt_broker_export_messages_total",
		"Messages appended to the export stream for BigQuery (written) or refused (dropped: Redis far behind).", []string{"result"}, nil)
	descStored = prometheus.NewDesc("mcloudtt_broker_session_log_appends_total",
		"Messages appended to persistent sessions' logs in Redis, one per session (appended), or not taken by Redis (failed: the publisher was not acknowledged).", []string{"result"}, nil)
	descCommits = prometheus.NewDesc("mcloudtt_broker_session_commits_total",
		"Writes of persistent sessions' state by their owner (written), or refused because another replica had claimed the session (fenced).", []string{"result"}, nil)
	descDurableSubs = prometheus.NewDesc("mcloudtt_broker_cluster_persistent_subscriptions",
		"QoS 1/2 subscriptions of persistent sessions in the cluster-wide index this replica caches.", nil, nil)
	descPanics = prometheus.NewDesc("mcloudtt_broker_recovered_panics_total",
		"Panics recovered in connection handlers (each cost one connection).", nil, nil)
	descParked = prometheus.NewDesc("mcloudtt_broker_connections_parked",
		"Connections parked now: idle for BROKER_PARK_AFTER, waiting on the poller without a goroutine.", nil, nil)
	descParks = prometheus.NewDesc("mcloudtt_broker_connection_parks_total",
		"Times a connection was parked (each later input or keep-alive deadline wakes it once).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descClients, descConnects, descDisconnects, descMsgsIn,
		descMsgsOut, descBytesIn, descBytesOut, descDropped, descInflight, descQueued, descSessions, descParked, descParks,
		descSubscriptions, descRetained, descSlow, descPanics, descForwarded, descClusterRecv, descPeers,
		descRemoteFilters, descLocalFilters, descExported, descStored, descCommits, descDurableSubs} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := &c.stats
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConnections, st.connections.Load())
	gauge(descClients, st.clients.Load())
	counter(descConnects, st.connects.Load())
	for i, name := range disconnectReasonNames {
		counter(descDisconnects, st.disconnects[i].Load(), name)
	}
	for q := range st.msgsRecv {
		counter(descMsgsIn, st.msgsRecv[q].Load(), strconv.Itoa(q))
		counter(descMsgsOut, st.msgsSent[q].Load(), strconv.Itoa(q))
	}
	counter(descBytesIn, st.bytesRecv.Load())
	counter(descBytesOut, st.bytesSent.Load())
	cs, clustered := c.cluster.Stats()
	for i, name := range dropCauseNames {
		v := st.dropped[i].Load()
		if dropCause(i) == dropQueueFull {
			v += cs.QueueFull // persistent sessions' logs in Redis
		}
		counter(descDropped, v, name)
	}
	gauge(descInflight, st.inflight.Load())
	gauge(descQueued, st.queued.Load())
	c.mu.Lock()
	sessions := len(c.sessions)
	c.mu.Unlock()
	gauge(descSessions, int64(sessions))
	gauge(descSubscriptions, int64(c.router.subs.Len()))
	gauge(descRetained, int64(c.retained.Len()))
	counter(descSlow, st.disconnects[discSlowConsumer].Load())
	counter(descPanics, st.panics.Load())
	gauge(descParked, st.parkedNow.Load())
	counter(descParks, st.parks.Load())
	if clustered {
		counter(descForwarded, cs.Forwarded)
		counter(descClusterRecv, cs.Received)
		gauge(descPeers, int64(cs.Peers))
		gauge(descRemoteFilters, int64(cs.RemoteFilters))
		gauge(descLocalFilters, int64(cs.LocalFilters))
		counter(descExported, cs.Exported, "written")
		counter(descExported, cs.ExportDropped, "dropped")
		counter(descStored, cs.Appended, "appended")
		counter(descStored, cs.AppendFailed, "failed")
		counter(descCommits, cs.Commits, "written")
		counter(descCommits, cs.Fenced, "fenced")
		gauge(descDurableSubs, int64(cs.DurableSubscriptions))
	}
}
