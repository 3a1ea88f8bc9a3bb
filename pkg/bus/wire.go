package bus

import (
	"fmt"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// The envelope, presence events, notices, heartbeats and Redis names live in package wire, which
// has no Redis client; these aliases and wrappers keep them under the names bus has always had.

// Types of package wire.
type (
	Message           = wire.Message
	MessageID         = wire.MessageID
	PropMask          = wire.PropMask
	Presence          = wire.Presence
	PresenceKind      = wire.PresenceKind
	Names             = wire.Names
	Kind              = wire.Kind
	Heartbeat         = wire.Heartbeat
	Status            = wire.Status
	RouteOp           = wire.RouteOp
	RouteChange       = wire.RouteChange
	DurableSub        = wire.DurableSub
	DurableSubs       = wire.DurableSubs
	DurableSubsChange = wire.DurableSubsChange
	ExportBase        = wire.ExportBase
)

// Constants of package wire.
const (
	EnvelopeVersion = wire.EnvelopeVersion
	ExportVersion   = wire.ExportVersion

	PropPayloadFormat   = wire.PropPayloadFormat
	PropContentType     = wire.PropContentType
	PropResponseTopic   = wire.PropResponseTopic
	PropCorrelationData = wire.PropCorrelationData

	PresenceField      = wire.PresenceField
	PresenceConnect    = wire.PresenceConnect
	PresenceDisconnect = wire.PresenceDisconnect

	DefaultPrefix      = wire.DefaultPrefix
	MaxReplicaIDLength = wire.MaxReplicaIDLength
	ProbeTopicPrefix   = wire.ProbeTopicPrefix
	ProbeClientPrefix  = wire.ProbeClientPrefix

	KindBroker  = wire.KindBroker
	KindAdapter = wire.KindAdapter
	KindGateway = wire.KindGateway

	RouteAdd    = wire.RouteAdd
	RouteRemove = wire.RouteRemove
	RouteDrop   = wire.RouteDrop
)

// Errors of package wire.
var (
	// ErrMalformed is wrapped by every decoding error (wire.ErrMalformed).
	ErrMalformed = wire.ErrMalformed
	// ErrBadMessage is returned for a message that cannot be encoded (wire.ErrBadMessage).
	ErrBadMessage = wire.ErrBadMessage
)

// malformed builds a decoding error, as package wire does; offset is from the start of the
// input.
func malformed(off int, what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, off)
}

// NewMessageID is wire.NewMessageID.
func NewMessageID() MessageID { return wire.NewMessageID() }

// NewMessageIDAt is wire.NewMessageIDAt.
func NewMessageIDAt(unixNano int64) MessageID { return wire.NewMessageIDAt(unixNano) }

// AppendBatchHeader is wire.AppendBatchHeader.
func AppendBatchHeader(dst []byte) []byte { return wire.AppendBatchHeader(dst) }

// AppendMessage is wire.AppendMessage.
func AppendMessage(dst []byte, m *Message) ([]byte, error) { return wire.AppendMessage(dst, m) }

// DecodeBatch is wire.DecodeBatch.
func DecodeBatch(batch []byte) ([]Message, error) { return wire.DecodeBatch(batch) }

// DecodeBatchInto is wire.DecodeBatchInto.
func DecodeBatchInto(dst []Message, batch []byte) ([]Message, error) {
	return wire.DecodeBatchInto(dst, batch)
}

// AppendExportBatchHeader is wire.AppendExportBatchHeader.
func AppendExportBatchHeader(dst []byte) []byte { return wire.AppendExportBatchHeader(dst) }

// AppendExportBase is wire.AppendExportBase.
func AppendExportBase(dst []byte, b *ExportBase) []byte { return wire.AppendExportBase(dst, b) }

// AppendExportMessage is wire.AppendExportMessage.
func AppendExportMessage(dst []byte, b *ExportBase, m *Message) ([]byte, error) {
	return wire.AppendExportMessage(dst, b, m)
}

// AppendPresence is wire.AppendPresence.
func AppendPresence(dst []byte, p *Presence) []byte { return wire.AppendPresence(dst, p) }

// DecodePresenceBatch is wire.DecodePresenceBatch.
func DecodePresenceBatch(batch []byte) ([]Presence, error) { return wire.DecodePresenceBatch(batch) }

// NewNames is wire.NewNames.
func NewNames(prefix string) Names { return wire.NewNames(prefix) }

// ValidatePrefix is wire.ValidatePrefix.
func ValidatePrefix(prefix string) error { return wire.ValidatePrefix(prefix) }

// ValidateReplicaID is wire.ValidateReplicaID.
func ValidateReplicaID(id string) error { return wire.ValidateReplicaID(id) }

// DecodeHeartbeat is wire.DecodeHeartbeat.
func DecodeHeartbeat(p []byte) (Heartbeat, error) { return wire.DecodeHeartbeat(p) }

// AppendRouteChange is wire.AppendRouteChange.
func AppendRouteChange(dst []byte, rc RouteChange) []byte { return wire.AppendRouteChange(dst, rc) }

// DecodeRouteChange is wire.DecodeRouteChange.
func DecodeRouteChange(p []byte) (RouteChange, error) { return wire.DecodeRouteChange(p) }

// EncodeDurableSubs is wire.EncodeDurableSubs.
func EncodeDurableSubs(dst []byte, ds DurableSubs) []byte { return wire.EncodeDurableSubs(dst, ds) }

// DecodeDurableSubs is wire.DecodeDurableSubs.
func DecodeDurableSubs(p []byte) (DurableSubs, error) { return wire.DecodeDurableSubs(p) }

// DecodeDurableSubsChange is wire.DecodeDurableSubsChange.
func DecodeDurableSubsChange(p []byte) (DurableSubsChange, error) {
	return wire.DecodeDurableSubsChange(p)
}
