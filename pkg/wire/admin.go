package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// The operators' management requests between the health gateway and the broker replicas. They
// travel on the replicas' control channels (Names.Control) as one marker byte followed by JSON:
// the gateway sends ControlRequest + AdminRequest to a replica, which answers on the gateway's own
// control channel with ControlReply + AdminReply. JSON, because these are rare, small, and
// read by people in logs; the marker bytes keep them apart from the broker's own control notices
// (takeovers), which start with an upper-case letter.

// Marker bytes of management requests and replies on a control channel.
const (
	ControlRequest = '?'
	ControlReply   = '!'
)

// Admin operations (AdminRequest.Op).
const (
	OpClients        = "clients"         // ClientsQuery -> ClientsPage
	OpSession        = "session"         // ClientRef -> SessionInfo (ErrNotHere when not held)
	OpKick           = "kick"            // ClientRef -> KickResult
	OpBan            = "ban"             // Ban -> KickResult (matching clients kicked)
	OpUnban          = "unban"           // Ban (Kind, Value) -> nothing
	OpRetainedDelete = "retained.delete" // RetainedRef -> nothing
	OpPublish        = "publish"         // PublishRequest -> nothing
)

// AdminReply.Error texts a caller tells apart.
const (
	ErrTextNotHere   = "not held here"     // OpSession: this replica does not hold the session
	ErrTextUnknownOp = "unknown operation" // an op the replica does not know (an older build)
)

// AdminRequest is one management request to one replica.
type AdminRequest struct {
	ID   string          `json:"id"`   // chosen by the sender; the reply carries it back
	From string          `json:"from"` // the sender's replica id: the reply goes to its control channel
	Op   string          `json:"op"`
	Body json.RawMessage `json:"body,omitempty"`
}

// AdminReply answers an AdminRequest.
type AdminReply struct {
	ID      string          `json:"id"`
	Replica string          `json:"replica"`
	Error   string          `json:"error,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// ClientsQuery asks a replica for its connected clients whose client id sorts after After,
// matching Search (a case-insensitive substring of the client id, the user name or the remote
// address; empty: all) and Username (exact, when set), in client id order, at most Limit.
type ClientsQuery struct {
	Search   string `json:"search,omitempty"`
	Username string `json:"username,omitempty"`
	After    string `json:"after,omitempty"`
	Limit    int    `json:"limit"`
}

// Matches reports whether ci passes the query's Search and Username (not After).
func (q ClientsQuery) Matches(ci *ClientInfo) bool {
	if q.Username != "" && ci.Username != q.Username {
		return false
	}
	if q.Search == "" {
		return true
	}
	s := strings.ToLower(q.Search)
	return strings.Contains(strings.ToLower(ci.ClientID), s) ||
		strings.Contains(strings.ToLower(ci.Username), s) || strings.Contains(ci.RemoteAddr, s)
}

// ClientInfo is one connected client, as its replica sees it.
type ClientInfo struct {
	ClientID      string    `json:"client_id"`
	Username      string    `json:"username"`
	Replica       string    `json:"replica"`
	RemoteAddr    string    `json:"remote_addr"`
	Protocol      string    `json:"protocol"` // 3.1, 3.1.1 or 5.0
	ConnectedAt   time.Time `json:"connected_at"`
	KeepAlive     int       `json:"keep_alive"` // seconds, as negotiated
	Persistent    bool      `json:"persistent"` // the session outlives the connection
	Subscriptions int       `json:"subscriptions"`
	Inflight      int       `json:"inflight"` // QoS 1/2 messages sent, not yet acknowledged
	Queued        int       `json:"queued"`   // messages waiting for the inflight window
}

// ClientsPage is a replica's answer to a ClientsQuery. More: it had more than Limit matches.
type ClientsPage struct {
	Clients []ClientInfo `json:"clients"`
	More    bool         `json:"more"`
}

// ClientRef names one client.
type ClientRef struct {
	ClientID string `json:"client_id"`
}

// Subscription is one subscription of a session, with its options.
type Subscription struct {
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local"`
	RetainAsPublished bool   `json:"retain_as_published"`
	RetainHandling    byte   `json:"retain_handling"`
	SubscriptionID    uint32 `json:"subscription_id,omitempty"`
}

// SessionInfo is one session, connected or not, held by the replica that answers.
type SessionInfo struct {
	ClientID  string      `json:"client_id"`
	Replica   string      `json:"replica"`
	Connected bool        `json:"connected"`
	Client    *ClientInfo `json:"client,omitempty"` // the connection, when connected
	// ExpirySeconds is the session expiry interval: 0 ends with the connection, -1 never.
	ExpirySeconds int64 `json:"expiry_seconds"`
	// ExpiresAt is when an offline session ends (absent: connected, or never).
	ExpiresAt     *time.Time     `json:"expires_at,omitempty"`
	Subscriptions []Subscription `json:"subscriptions"`
	Inflight      int            `json:"inflight"`
	Queued        int            `json:"queued"`
	QueuedBytes   int64          `json:"queued_bytes"`
}

// KickResult lists the clients a kick or a ban disconnected on one replica.
type KickResult struct {
	Kicked []string `json:"kicked"`
}

// RetainedRef names one retained message by its topic.
type RetainedRef struct {
	Topic string `json:"topic"`
}

// PublishRequest is a message an operator publishes through one replica.
type PublishRequest struct {
	Topic       string            `json:"topic"`
	Payload     []byte            `json:"payload"`
	QoS         byte              `json:"qos"`
	Retain      bool              `json:"retain"`
	ContentType string            `json:"content_type,omitempty"`
	UserProps   map[string]string `json:"user_properties,omitempty"`
}

// Ban kinds.
const (
	BanClientID = "client_id" // Value is a client id (exact)
	BanUsername = "username"  // Value is a user name (exact)
	BanAddress  = "address"   // Value is an IP prefix in CIDR notation (a lone address: /32, /128)
)

// Ban refuses matching clients at CONNECT until Until.
type Ban struct {
	Kind    string    `json:"kind"`
	Value   string    `json:"value"`
	Reason  string    `json:"reason,omitempty"`
	By      string    `json:"by,omitempty"` // who set it (the API token's name)
	Created time.Time `json:"created"`
	Until   time.Time `json:"until"`

	prefix netip.Prefix // BanAddress, parsed by Check
}

// Key is the ban's identity: kind and value.
func (b *Ban) Key() string { return b.Kind + ":" + b.Value }

// MaxBanValue bounds a ban's value (a client id may be 65535 bytes; nobody bans such).
const MaxBanValue = 1024

// Check validates the ban's kind and value and, for an address, normalises the value to its
// prefix ("10.1.2.3" becomes "10.1.2.3/32", "10.1.2.3/8" becomes "10.0.0.0/8").
func (b *Ban) Check() error {
	if b.Value == "" {
		return errors.New("ban: value is empty")
	}
	if len(b.Value) > MaxBanValue {
		return fmt.Errorf("ban: value longer than %d bytes", MaxBanValue)
	}
	switch b.Kind {
	case BanClientID, BanUsername:
		return nil
	case BanAddress:
		v := b.Value
		if !strings.Contains(v, "/") {
			a, err := netip.ParseAddr(v)
			if err != nil {
				return fmt.Errorf("ban: address %q: want an IP address or a CIDR prefix", v)
			}
			v = netip.PrefixFrom(a, a.BitLen()).String()
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return fmt.Errorf("ban: address %q: want an IP address or a CIDR prefix", b.Value)
		}
		b.prefix = p.Masked()
		b.Value = b.prefix.String()
		return nil
	}
	return fmt.Errorf("ban: kind %q: want %s, %s or %s", b.Kind, BanClientID, BanUsername, BanAddress)
}

// Matches reports whether a client with this id, user name and remote address (host:port or a
// bare address; may be empty) falls under the ban. Call Check first.
func (b *Ban) Matches(clientID, username, remote string) bool {
	switch b.Kind {
	case BanClientID:
		return clientID == b.Value
	case BanUsername:
		return username != "" && username == b.Value
	case BanAddress:
		if !b.prefix.IsValid() {
			return false
		}
		a, err := netip.ParseAddrPort(remote)
		addr := a.Addr()
		if err != nil {
			if addr, err = netip.ParseAddr(remote); err != nil {
				return false
			}
		}
		return b.prefix.Contains(addr.Unmap())
	}
	return false
}

// EncodeAdmin returns marker followed by v as JSON.
func EncodeAdmin(marker byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{marker}, b...), nil
}
