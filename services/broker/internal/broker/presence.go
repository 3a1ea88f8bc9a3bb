package broker

import (
	"strings"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// Device presence: every accepted CONNECT and the end of every connection that had one become
// events on the export stream (bus.ExportPresence), which the BigQuery adapter writes into the
// events table. The core calls presenceConnected right after the CONNACK and presenceDisconnected
// when a connected client's reader finishes; everything else about presence is here.

// presenceConn is what a connection remembers for its disconnect event.
type presenceConn struct {
	id bus.MessageID // the connection's id in both of its events
	at int64         // when its CONNECT was accepted, Unix ns; 0: no connect event
}

// Presence causes: the events table's cause column, by the connection's disconnectReason.
var presenceCauses = [numDisconnectReasons]string{
	discNormal:             "normal",              // the client sent DISCONNECT
	discConnectionLost:     "connection_lost",     // EOF, reset, a failed write
	discKeepAlive:          "keepalive_timeout",   // nothing from the client for 1.5 keep alives
	discProtocolError:      "protocol_error",      // a malformed packet or a protocol violation
	discTakeover:           "takeover",            // the client id connected again (here or on another replica)
	discShutdown:           "replica_drain",       // the replica stopped (SIGTERM) and closed its connections
	discSlowConsumer:       "slow_consumer",       // output piled up beyond BROKER_MAX_PENDING_BYTES
	discRefused:            "connect_refused",     // (no connect event: never reaches presence)
	discConnectTimeout:     "connect_timeout",     // (likewise)
	discCredentialsExpired: "credentials_expired", // the JWT it authenticated with expired
	discKicked:             "kicked",              // an operator kicked or banned the client (admin.go)
}

// presenceOn reports whether presence is exported: a cluster replica with BROKER_EXPORT_PRESENCE.
func (s *Server) presenceOn() bool {
	return s.cfg.ExportPresence && s.cluster.ExportsPresence()
}

// presenceEvent fills the fields both events of a connection share.
func (s *Server) presenceEvent(c *client, kind bus.PresenceKind, now int64) bus.Presence {
	p := bus.Presence{ID: bus.NewMessageIDAt(now), Connection: c.presence.id, Kind: kind, Time: now,
		ConnectedAt: c.presence.at, ClientID: c.id, Username: c.username,
		Protocol: byte(c.version), KeepAlive: uint16(min(c.keepAlive/time.Second, 0xffff))}
	if a := c.conn.RemoteAddr(); a != nil {
		p.RemoteAddr = a.String()
	}
	return p
}

// presenceConnected exports the connect event of c, whose CONNACK went out. The health
// gateway's probe connections are not devices: they are left out.
func (s *Server) presenceConnected(c *client, cleanStart, sessionPresent bool) {
	if !s.presenceOn() || strings.HasPrefix(c.id, bus.ProbeClientPrefix) {
		return
	}
	now := time.Now().UnixNano()
	c.presence = presenceConn{id: bus.NewMessageIDAt(now), at: now}
	p := s.presenceEvent(c, bus.PresenceConnect, now)
	p.CleanStart, p.SessionPresent = cleanStart, sessionPresent
	s.cluster.ExportPresence(&p)
}

// presenceDisconnected exports the disconnect event of c, whose reason is final.
func (s *Server) presenceDisconnected(c *client) {
	if !s.presenceOn() || c.presence.at == 0 {
		return
	}
	p := s.presenceEvent(c, bus.PresenceDisconnect, time.Now().UnixNano())
	if r := c.reason.Load() - 1; r >= 0 && int(r) < len(presenceCauses) {
		p.Cause = presenceCauses[r]
	}
	s.cluster.ExportPresence(&p)
}
