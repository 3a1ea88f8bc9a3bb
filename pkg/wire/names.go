package wire

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix starts every Redis name unless bus.Options.Prefix says otherwise.
const DefaultPrefix = "mcloudtt"

// MaxReplicaIDLength bounds a replica id: it travels in every envelope and every channel name.
const MaxReplicaIDLength = 128

// Names builds every Redis channel and key name MCloudTT uses, so they are spelt in one place.
// The zero value uses DefaultPrefix.
//
// Names that belong to one replica carry the replica id as a Redis Cluster hash tag
// ("mcloudtt:{r1}:in"), so all of a replica's channels and keys sit in one slot (one node, one
// SSUBSCRIBE) and different replicas spread over the cluster. Names of one client's session carry
// "{s:<client id>}" for the same reason: its keys can be used together in MULTI or a script.
// Shared names (heartbeats, the replica set, retained messages, the export stream) have no tag
// and land on whichever node their name hashes to; they carry little traffic or are read whole.
type Names struct {
	prefix string
}

// NewNames returns the names under prefix ("" means DefaultPrefix). Check the prefix first with
// ValidatePrefix: a brace in it would break the hash tags.
func NewNames(prefix string) Names {
	return Names{prefix: prefix}
}

func (n Names) p() string {
	if n.prefix == "" {
		return DefaultPrefix
	}
	return n.prefix
}

// Prefix returns the prefix in use.
func (n Names) Prefix() string { return n.p() }

// Inbound is replica's inbound channel: batches of envelopes (DecodeBatch) that other replicas
// route to it. "mcloudtt:{r1}:in".
func (n Names) Inbound(replica string) string { return n.p() + ":{" + replica + "}:in" }

// Control is replica's control channel: notices addressed to that one replica, such as "a client
// id you hold connected elsewhere: disconnect it" (takeover) or "kick this client". The payload
// format belongs to the broker. "mcloudtt:{r1}:ctl".
func (n Names) Control(replica string) string { return n.p() + ":{" + replica + "}:ctl" }

// Routes is the key of replica's route table: a Redis SET of the topic filters (shared ones as
// "$share/group/filter") that replica has local subscribers for. Only that replica writes it.
// "mcloudtt:{r1}:routes".
func (n Names) Routes(replica string) string { return n.p() + ":{" + replica + "}:routes" }

// RouteChanges is the channel on which every change to any route table is announced
// (AppendRouteChange), so replicas update their cached copies without polling.
// "mcloudtt:routes".
func (n Names) RouteChanges() string { return n.p() + ":routes" }

// Replicas is the key of the sorted set of live replica ids, scored by the Unix time in
// milliseconds of each one's last heartbeat. "mcloudtt:replicas".
func (n Names) Replicas() string { return n.p() + ":replicas" }

// Heartbeats is the channel every replica and service publishes its Heartbeat on, once a second;
// the health gateway and other replicas watch it. "mcloudtt:heartbeat".
func (n Names) Heartbeats() string { return n.p() + ":heartbeat" }

// Retained is the key of the retained-message HASH: field = topic name, value = a one-message
// envelope batch. One hash, because a wildcard subscription must scan all of them.
// "mcloudtt:retained".
func (n Names) Retained() string { return n.p() + ":retained" }

// Session is the key of an offline persistent session's state (a HASH: expiry, subscriptions,
// inflight ids) for clientID. "mcloudtt:{s:<client id>}:session".
func (n Names) Session(clientID string) string { return n.p() + ":{s:" + clientID + "}:session" }

// SessionQueue is the key of the queue of messages waiting for an offline persistent session.
// "mcloudtt:{s:<client id>}:queue".
func (n Names) SessionQueue(clientID string) string {
	return n.p() + ":{s:" + clientID + "}:queue"
}

// SessionLog is the key of a persistent session's log: a STREAM of the QoS 1/2 messages
// appended for it and not yet trimmed (see pkg/bus sessions.go). "mcloudtt:{s:<client id>}:log".
func (n Names) SessionLog(clientID string) string { return n.p() + ":{s:" + clientID + "}:log" }

// ReplicaSessions is the key of the SET of client ids whose sessions replica claimed and has
// not released: read when the replica dies, to mark its clients offline. "mcloudtt:{r1}:sessions".
func (n Names) ReplicaSessions(replica string) string { return n.p() + ":{" + replica + "}:sessions" }

// DurableSubs is the key of the cluster-wide index of persistent subscriptions: a HASH client id
// -> EncodeDurableSubs. Every replica caches it, to append messages to the logs of the
// persistent sessions they match. "mcloudtt:dsubs".
func (n Names) DurableSubs() string { return n.p() + ":dsubs" }

// DurableSubsChanges is the channel on which every change of DurableSubs is announced.
// "mcloudtt:dsubs:changes".
func (n Names) DurableSubsChanges() string { return n.p() + ":dsubs:changes" }

// SessionOwner is the key holding the id of the replica that has clientID connected (client-id
// ownership, for takeover across replicas). "mcloudtt:{s:<client id>}:owner".
func (n Names) SessionOwner(clientID string) string {
	return n.p() + ":{s:" + clientID + "}:owner"
}

// DeviceKeys is the key of a device's public keys for JWT authentication: a HASH key
// fingerprint -> the key (PEM) with its expiry, written by `broker devices` and the gateway's
// management API (pkg/devices) and read by every replica at each CONNECT that presents a token.
// "mcloudtt:{d:<device id>}:keys".
func (n Names) DeviceKeys(device string) string { return n.p() + ":{d:" + device + "}:keys" }

// Bans is the key of the HASH of operators' bans: field = Ban.Key(), value = the Ban as JSON.
// Its hash tag keeps it in one slot with BanExpiry, so the scripts of pkg/bus bans.go use both.
// "mcloudtt:{bans}".
func (n Names) Bans() string { return n.p() + ":{bans}" }

// BanExpiry is the key of the SORTED SET of ban keys scored by their end (Unix milliseconds):
// expired bans are removed from Bans by whoever reads them. "mcloudtt:{bans}:until".
func (n Names) BanExpiry() string { return n.p() + ":{bans}:until" }

// ProbeTopicPrefix is where the health gateway's synthetic probe messages live. It starts with
// '$', so subscriptions to "#" or "+/..." never see probes [MQTT-4.7.2-1]; the broker lets clients
// publish under it (still subject to the ACL), and the export to BigQuery skips it.
const ProbeTopicPrefix = "$mcloudtt/probe/"

// ProbeClientPrefix starts the client id of every health-gateway probe connection; brokers leave
// those connections out of the presence they export.
const ProbeClientPrefix = "mcloudtt-probe-"

// Export is the Redis Stream of messages for the BigQuery adapter (XADD by brokers, XREADGROUP
// and XACK by the adapter). "mcloudtt:export".
func (n Names) Export() string { return n.p() + ":export" }

// ExportDeadLetter is the Redis Stream where the adapter parks export entries BigQuery rejected
// for good. "mcloudtt:export:dead".
func (n Names) ExportDeadLetter() string { return n.p() + ":export:dead" }

// ExportPlans is the hash where adapter replicas record, before writing, which BigQuery write
// stream and offset each group of export entries goes to (their exactly-once plans), and the
// row count of write streams they finalized.
func (n Names) ExportPlans() string { return n.p() + ":export:plans" }

// ValidatePrefix reports whether prefix can start Redis names: not empty after defaulting, no
// braces (they would become the hash tag), no spaces or control characters.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > 64 {
		return fmt.Errorf("bus: prefix %q longer than 64 bytes", prefix)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c <= ' ' || c == '{' || c == '}' || c == 0x7f {
			return fmt.Errorf("bus: prefix %q: character %q not allowed", prefix, c)
		}
	}
	return nil
}

var errReplicaIDEmpty = errors.New("bus: replica id is empty")

// ValidateReplicaID reports whether id can name a replica: 1 to MaxReplicaIDLength bytes of
// letters, digits, '.', '_' and '-' (a Kubernetes pod name qualifies). Braces, colons and spaces
// would make the names ambiguous or break their hash tag.
func ValidateReplicaID(id string) error {
	if id == "" {
		return errReplicaIDEmpty
	}
	if len(id) > MaxReplicaIDLength {
		return fmt.Errorf("bus: replica id longer than %d bytes", MaxReplicaIDLength)
	}
	if i := strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '-')
	}); i >= 0 {
		return fmt.Errorf("bus: replica id %q: character at %d not allowed (want [A-Za-z0-9._-])", id, i)
	}
	return nil
}
