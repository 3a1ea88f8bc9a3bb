package wire

import (
	"encoding/json"
	"fmt"
	"time"
)

// Kind says what sent a heartbeat.
type Kind string

// Kinds of MCloudTT processes.
const (
	KindBroker  Kind = "broker"
	KindAdapter Kind = "adapter"
	KindGateway Kind = "gateway"
)

// Heartbeat is what every process publishes once a second on Names.Heartbeats. It is JSON:
// small, infrequent, and read by other services (the health gateway shows it as is).
type Heartbeat struct {
	ReplicaID string    `json:"replica_id"`
	Kind      Kind      `json:"kind"`
	Version   string    `json:"version"`
	Address   string    `json:"address,omitempty"` // where the process can be reached (pod IP:port)
	Started   time.Time `json:"started"`
	Sent      time.Time `json:"sent"`
	// Uptime is Sent - Started unless set.
	Uptime      time.Duration `json:"uptime_ns"`
	Clients     int           `json:"clients"`
	MsgsInRate  float64       `json:"msgs_in_per_s"`  // messages received from clients per second
	MsgsOutRate float64       `json:"msgs_out_per_s"` // messages delivered to clients per second
	// Redis is the sender's bus status.
	Redis Status `json:"redis"`
	// Leaving says the sender is shutting down on purpose (a drain, a scale-down): forget it
	// now rather than report it missing.
	Leaving bool `json:"leaving,omitempty"`
	// ExportLag is, for an adapter, how many export entries are waiting: not yet delivered to
	// its consumer group plus delivered but not acknowledged.
	ExportLag int64 `json:"export_lag,omitempty"`
	// ExportLagSeconds is, for an adapter, the age of the oldest export entry not yet written
	// to BigQuery (0 when it has caught up).
	ExportLagSeconds float64        `json:"export_lag_seconds,omitempty"`
	Extra            map[string]any `json:"extra,omitempty"`
}

// DecodeHeartbeat parses a heartbeat payload.
func DecodeHeartbeat(p []byte) (Heartbeat, error) {
	var hb Heartbeat
	if err := json.Unmarshal(p, &hb); err != nil {
		return Heartbeat{}, fmt.Errorf("bus: heartbeat: %w", err)
	}
	if hb.ReplicaID == "" {
		return Heartbeat{}, fmt.Errorf("bus: heartbeat without replica_id")
	}
	return hb, nil
}

// Status is the state of a bus's subscription connections (pkg/bus), for readiness probes.
type Status struct {
	// Connected: every subscription connection is subscribed and healthy. bus.Publish fails
	// at once with bus.ErrUnavailable while it is false.
	Connected bool `json:"connected"`
	// Since is when Connected last changed (or when the bus was made).
	Since time.Time `json:"since"`
	// LastError is the most recent connection error, kept after a reconnect for diagnosis.
	LastError string `json:"last_error,omitempty"`
	// Reconnects counts successful subscriptions that followed a lost connection.
	Reconnects int `json:"reconnects"`
}
