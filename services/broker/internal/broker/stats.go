package broker

import "sync/atomic"

// Stats are the broker's counters. Hot paths only add to atomics; $SYS topics and the Prometheus
// collector (metrics.go) read them.
type Stats struct {
	connections atomic.Int64 // open network connections
	clients     atomic.Int64 // connected MQTT clients (after CONNACK)
	connects    atomic.Int64
	msgsRecv    [3]atomic.Int64 // by QoS
	msgsSent    [3]atomic.Int64 // by QoS
	bytesRecv   atomic.Int64
	bytesSent   atomic.Int64
	dropped     [numDropCauses]atomic.Int64
	disconnects [numDisconnectReasons]atomic.Int64
	inflight    atomic.Int64 // QoS 1/2 messages sent and not yet acknowledged, all sessions
	queued      atomic.Int64 // messages in session queues, all sessions
	panics      atomic.Int64
	willsSent   atomic.Int64
}

// dropCause says why a message did not reach a subscriber (or was not accepted).
type dropCause int

const (
	dropQueueFull          dropCause = iota // session queue at its message or byte limit
	dropSlowConsumer                        // QoS 0 to a subscriber that does not keep up
	dropTooLarge                            // larger than the subscriber's Maximum Packet Size
	dropExpired                             // message expiry passed while queued
	dropNotAuthorized                       // refused by the ACL, or a client publishing into $SYS
	dropRateLimited                         // publisher over its rate limit
	dropTopicTooLong                        // topic beyond the configured length or level limit
	dropClusterUnavailable                  // not accepted by Redis for another replica (down, overloaded)
	numDropCauses
)

var dropCauseNames = [numDropCauses]string{"queue_full", "slow_consumer", "too_large", "expired",
	"not_authorized", "rate_limited", "topic_limit", "cluster_unavailable"}

func (s *Stats) drop(c dropCause) { s.dropped[c].Add(1) }

// disconnectReason says why a connection ended.
type disconnectReason int

const (
	discNormal             disconnectReason = iota // client sent DISCONNECT
	discConnectionLost                             // EOF, reset or write failure
	discKeepAlive                                  // keep alive timeout
	discProtocolError                              // malformed packet or protocol violation
	discTakeover                                   // same client id connected again
	discShutdown                                   // server shutting down
	discSlowConsumer                               // output piled up beyond the limit
	discRefused                                    // CONNECT refused (auth, limits, bad CONNECT)
	discConnectTimeout                             // no CONNECT in time
	discClusterUnavailable                         // a 3.x publish could not be stored (Redis away)
	numDisconnectReasons
)

var disconnectReasonNames = [numDisconnectReasons]string{"normal", "connection_lost", "keepalive_timeout",
	"protocol_error", "session_taken_over", "server_shutdown", "slow_consumer", "connect_refused", "connect_timeout",
	"store_unavailable"}

// Stats returns a snapshot of selected counters, for tests and $SYS.
func (s *Server) Stats() map[string]int64 {
	m := map[string]int64{
		"connections":       s.stats.connections.Load(),
		"clients":           s.stats.clients.Load(),
		"messages_received": s.stats.received(),
		"messages_sent":     s.stats.sent(),
		"panics":            s.stats.panics.Load(),
		"inflight":          s.stats.inflight.Load(),
		"queued":            s.stats.queued.Load(),
	}
	for i, n := range dropCauseNames {
		m["dropped_"+n] = s.stats.dropped[i].Load()
	}
	for i, n := range disconnectReasonNames {
		m["disconnects_"+n] = s.stats.disconnects[i].Load()
	}
	return m
}

func (s *Stats) received() (n int64) {
	for i := range s.msgsRecv {
		n += s.msgsRecv[i].Load()
	}
	return n
}

func (s *Stats) sent() (n int64) {
	for i := range s.msgsSent {
		n += s.msgsSent[i].Load()
	}
	return n
}

func (s *Stats) droppedTotal() (n int64) {
	for i := range s.dropped {
		n += s.dropped[i].Load()
	}
	return n
}
