package broker

import "sync/atomic"

// counters are the broker's counters. Hot paths only add to atomics; $SYS topics, the Prometheus
// collector (metrics.go) and Server.Stats read them.
type counters struct {
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
	parks       atomic.Int64 // connections parked (park.go), ever
	parkedNow   atomic.Int64 // connections parked now
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

func (s *counters) drop(c dropCause) { s.dropped[c].Add(1) }

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
	discCredentialsExpired                         // the JWT the client authenticated with expired
	discKicked                                     // an operator kicked or banned the client
	numDisconnectReasons
)

var disconnectReasonNames = [numDisconnectReasons]string{"normal", "connection_lost", "keepalive_timeout",
	"protocol_error", "session_taken_over", "server_shutdown", "slow_consumer", "connect_refused", "connect_timeout",
	"store_unavailable", "credentials_expired", "kicked"}

// Stats is a snapshot of selected counters (Server.Stats).
type Stats struct {
	Connections      int64 // open network connections
	Clients          int64 // connected MQTT clients (after CONNACK)
	MessagesReceived int64
	MessagesSent     int64
	Panics           int64 // recovered panics in connection handlers
	Parked           int64 // connections parked now: no reader goroutine (park.go)
	Parks            int64 // times a connection was parked
	Inflight         int64 // QoS 1/2 messages sent and not yet acknowledged, all sessions
	Queued           int64 // messages in session queues, all sessions
	Dropped          DropStats
	Disconnects      DisconnectStats
}

// DropStats count the messages that did not reach a subscriber (or were not accepted), by cause.
type DropStats struct {
	QueueFull          int64 // session queue at its message or byte limit
	SlowConsumer       int64 // QoS 0 to a subscriber that does not keep up
	TooLarge           int64 // larger than the subscriber's Maximum Packet Size
	Expired            int64 // message expiry passed while queued
	NotAuthorized      int64 // refused by the ACL, or a client publishing into $SYS
	RateLimited        int64 // publisher over its rate limit
	TopicLimit         int64 // topic beyond the configured length or level limit
	ClusterUnavailable int64 // not accepted by Redis for another replica
}

// DisconnectStats count the connections that ended, by reason.
type DisconnectStats struct {
	Normal           int64 // client sent DISCONNECT
	ConnectionLost   int64 // EOF, reset or write failure
	KeepAliveTimeout int64
	ProtocolError    int64
	SessionTakenOver int64 // same client id connected again
	ServerShutdown   int64
	SlowConsumer     int64 // output piled up beyond the limit
	ConnectRefused   int64 // CONNECT refused (auth, limits, bad CONNECT)
	ConnectTimeout   int64 // no CONNECT in time
	StoreUnavailable int64 // a 3.x publish could not be stored (Redis away)
	// CredentialsExpired: the JWT the client authenticated with expired (v5: DISCONNECT 0xA0).
	CredentialsExpired int64
	Kicked             int64 // an operator kicked or banned the client
}

// Stats returns a snapshot of selected counters, for the replica's heartbeat and tests.
func (s *Server) Stats() Stats {
	c := &s.stats
	d, x := &c.dropped, &c.disconnects
	return Stats{
		Connections:      c.connections.Load(),
		Clients:          c.clients.Load(),
		MessagesReceived: c.received(),
		MessagesSent:     c.sent(),
		Panics:           c.panics.Load(),
		Parked:           c.parkedNow.Load(),
		Parks:            c.parks.Load(),
		Inflight:         c.inflight.Load(),
		Queued:           c.queued.Load(),
		Dropped: DropStats{
			QueueFull:          d[dropQueueFull].Load(),
			SlowConsumer:       d[dropSlowConsumer].Load(),
			TooLarge:           d[dropTooLarge].Load(),
			Expired:            d[dropExpired].Load(),
			NotAuthorized:      d[dropNotAuthorized].Load(),
			RateLimited:        d[dropRateLimited].Load(),
			TopicLimit:         d[dropTopicTooLong].Load(),
			ClusterUnavailable: d[dropClusterUnavailable].Load(),
		},
		Disconnects: DisconnectStats{
			Normal:             x[discNormal].Load(),
			ConnectionLost:     x[discConnectionLost].Load(),
			KeepAliveTimeout:   x[discKeepAlive].Load(),
			ProtocolError:      x[discProtocolError].Load(),
			SessionTakenOver:   x[discTakeover].Load(),
			ServerShutdown:     x[discShutdown].Load(),
			SlowConsumer:       x[discSlowConsumer].Load(),
			ConnectRefused:     x[discRefused].Load(),
			ConnectTimeout:     x[discConnectTimeout].Load(),
			StoreUnavailable:   x[discClusterUnavailable].Load(),
			CredentialsExpired: x[discCredentialsExpired].Load(),
			Kicked:             x[discKicked].Load(),
		},
	}
}

func (s *counters) received() (n int64) {
	for i := range s.msgsRecv {
		n += s.msgsRecv[i].Load()
	}
	return n
}

func (s *counters) sent() (n int64) {
	for i := range s.msgsSent {
		n += s.msgsSent[i].Load()
	}
	return n
}

func (s *counters) droppedTotal() (n int64) {
	for i := range s.dropped {
		n += s.dropped[i].Load()
	}
	return n
}
