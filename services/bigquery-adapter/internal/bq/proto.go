package bq

import (
	"fmt"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/schema"
)

// The Storage Write API takes rows as serialized protocol buffers, described once per connection
// by a DescriptorProto. The descriptor is derived from the table's schema file with the client
// library's adapt package (the conversion BigQuery documents: STRING and JSON as string, INTEGER
// and TIMESTAMP (microseconds) as int64, BOOLEAN as bool, BYTES as bytes, RECORD as a nested
// message; proto2, so an absent field is NULL). Rows are then written straight into the wire
// format with protowire, each column under the field number the descriptor gave it: no message
// objects, no reflection per row.

// Encoder writes rows of one table in the wire format of its descriptor.
type Encoder struct {
	table      Table
	descriptor *descriptorpb.DescriptorProto
	num        [numCols]protowire.Number // column -> field number (0: not in this table)
	propKey    protowire.Number          // user_properties.key
	propValue  protowire.Number          // user_properties.value
}

// The columns the encoder writes, of either table.
const (
	cMessageID = iota
	cBrokerID
	cClientID
	cDeviceID
	cUsername
	cTopic
	cQoS
	cRetain
	cPayload
	cPayloadText
	cPayloadJSON
	cContentType
	cUserProperties
	cPublishedAt
	cIngestedAt
	cEventID
	cEvent
	cConnectionID
	cRemoteAddr
	cProtocol
	cKeepAlive
	cCleanStart
	cSessionPresent
	cCause
	cConnectedAt
	cOccurredAt
	numCols
)

var colNames = [numCols]string{"message_id", "broker_id", "client_id", "device_id", "username", "topic", "qos", "retain",
	"payload", "payload_text", "payload_json", "content_type", "user_properties", "published_at", "ingested_at",
	"event_id", "event", "connection_id", "remote_addr", "protocol", "keep_alive", "clean_start",
	"session_present", "cause", "connected_at", "occurred_at"}

// wireKinds is what the encoder writes per BigQuery type: the descriptor must agree.
var wireKinds = map[bigquery.FieldType]protoreflect.Kind{
	bigquery.StringFieldType:    protoreflect.StringKind,
	bigquery.JSONFieldType:      protoreflect.StringKind,
	bigquery.IntegerFieldType:   protoreflect.Int64Kind,
	bigquery.TimestampFieldType: protoreflect.Int64Kind,
	bigquery.BooleanFieldType:   protoreflect.BoolKind,
	bigquery.BytesFieldType:     protoreflect.BytesKind,
	bigquery.RecordFieldType:    protoreflect.MessageKind,
}

// NewEncoder derives the descriptor of t's schema and checks that every column has the wire
// type the encoder writes.
func NewEncoder(t Table) (*Encoder, error) {
	s := schema.Schema()
	if t == Events {
		s = schema.Events()
	}
	ts, err := adapt.BQSchemaToStorageTableSchema(s)
	if err != nil {
		return nil, fmt.Errorf("bq: %s schema: %w", t, err)
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ts, "mcloudtt_"+t.String())
	if err != nil {
		return nil, fmt.Errorf("bq: %s descriptor: %w", t, err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("bq: %s descriptor is a %T", t, d)
	}
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		return nil, fmt.Errorf("bq: %s descriptor: %w", t, err)
	}
	e := &Encoder{table: t, descriptor: dp}
	if err := e.check(s, md, ""); err != nil {
		return nil, err
	}
	// Every column the encoder writes for this table must be in it, and the other way round.
	have := map[string]bool{}
	for _, f := range s {
		have[f.Name] = true
	}
	for c, name := range colNames {
		if have[name] != (e.num[c] != 0) || have[name] != written[t][c] {
			return nil, fmt.Errorf("bq: %s column %s and the encoder disagree", t, name)
		}
		delete(have, name)
	}
	for name := range have {
		return nil, fmt.Errorf("bq: %s column %s is not written by the encoder", t, name)
	}
	return e, nil
}

// written says which columns Append writes for each table.
var written = func() (w [numTables][numCols]bool) {
	for _, c := range []int{cMessageID, cBrokerID, cClientID, cDeviceID, cUsername, cTopic, cQoS, cRetain, cPayload,
		cPayloadText, cPayloadJSON, cContentType, cUserProperties, cPublishedAt, cIngestedAt} {
		w[Messages][c] = true
	}
	for _, c := range []int{cEventID, cEvent, cConnectionID, cClientID, cUsername, cBrokerID, cRemoteAddr,
		cProtocol, cKeepAlive, cCleanStart, cSessionPresent, cCause, cConnectedAt, cOccurredAt, cIngestedAt} {
		w[Events][c] = true
	}
	return w
}()

func (e *Encoder) check(s bigquery.Schema, md protoreflect.MessageDescriptor, prefix string) error {
	for _, f := range s {
		fd := md.Fields().ByName(protoreflect.Name(f.Name))
		if fd == nil {
			return fmt.Errorf("bq: %s descriptor has no field %s%s", e.table, prefix, f.Name)
		}
		want, ok := wireKinds[f.Type]
		if !ok || fd.Kind() != want || fd.IsList() != f.Repeated {
			return fmt.Errorf("bq: %s column %s%s (%s) became %s in the descriptor", e.table, prefix, f.Name, f.Type, fd.Kind())
		}
		switch prefix + f.Name {
		case "user_properties.key":
			e.propKey = fd.Number()
		case "user_properties.value":
			e.propValue = fd.Number()
		}
		if prefix == "" {
			for c, name := range colNames {
				if name == f.Name {
					e.num[c] = fd.Number()
				}
			}
		}
		if f.Type == bigquery.RecordFieldType {
			if err := e.check(f.Schema, fd.Message(), prefix+f.Name+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// Descriptor returns the DescriptorProto of the rows, for the Write API's writer schema.
func (e *Encoder) Descriptor() *descriptorpb.DescriptorProto { return e.descriptor }

func (e *Encoder) str(dst []byte, col int, v string) []byte {
	dst = protowire.AppendTag(dst, e.num[col], protowire.BytesType)
	return protowire.AppendString(dst, v)
}

func (e *Encoder) optStr(dst []byte, col int, v string) []byte {
	if v == "" {
		return dst // NULL
	}
	return e.str(dst, col, v)
}

func (e *Encoder) bytes(dst []byte, col int, v []byte) []byte {
	dst = protowire.AppendTag(dst, e.num[col], protowire.BytesType)
	return protowire.AppendBytes(dst, v)
}

func (e *Encoder) int(dst []byte, col int, v int64) []byte {
	dst = protowire.AppendTag(dst, e.num[col], protowire.VarintType)
	return protowire.AppendVarint(dst, uint64(v))
}

func (e *Encoder) bool(dst []byte, col int, v bool) []byte {
	dst = protowire.AppendTag(dst, e.num[col], protowire.VarintType)
	return protowire.AppendVarint(dst, protowire.EncodeBool(v))
}

// Append appends r's encoding to dst. r must be a row of the encoder's table.
func (e *Encoder) Append(dst []byte, r *Row) []byte {
	if r.Table == Events {
		p := r.ev
		dst = e.str(dst, cEventID, r.ID)
		dst = e.str(dst, cEvent, p.Kind.String())
		dst = e.str(dst, cConnectionID, p.Connection.String())
		dst = e.str(dst, cClientID, p.ClientID)
		dst = e.optStr(dst, cUsername, p.Username)
		dst = e.optStr(dst, cBrokerID, p.Replica)
		dst = e.optStr(dst, cRemoteAddr, p.RemoteAddr)
		dst = e.optStr(dst, cProtocol, Protocol(p.Protocol))
		dst = e.int(dst, cKeepAlive, int64(p.KeepAlive))
		dst = e.bool(dst, cCleanStart, p.CleanStart)
		dst = e.bool(dst, cSessionPresent, p.SessionPresent)
		dst = e.optStr(dst, cCause, p.Cause)
		dst = e.int(dst, cConnectedAt, p.ConnectedAt/1000)
		dst = e.int(dst, cOccurredAt, r.At.UnixMicro())
		return e.int(dst, cIngestedAt, r.ingested.UnixMicro())
	}
	m := r.msg
	dst = e.str(dst, cMessageID, r.ID)
	dst = e.optStr(dst, cBrokerID, m.Origin)
	dst = e.str(dst, cClientID, m.ClientID)
	dst = e.optStr(dst, cDeviceID, r.device)
	dst = e.optStr(dst, cUsername, m.Username)
	dst = e.str(dst, cTopic, m.Topic)
	dst = e.int(dst, cQoS, int64(m.QoS))
	dst = e.bool(dst, cRetain, m.Retain)
	dst = e.bytes(dst, cPayload, m.Payload)
	if r.text {
		dst = e.bytes(dst, cPayloadText, m.Payload) // valid UTF-8: a string on the wire
	}
	if r.HasJSON() {
		dst = e.bytes(dst, cPayloadJSON, m.Payload)
	}
	dst = e.optStr(dst, cContentType, m.ContentType)
	for _, p := range m.UserProperties {
		n := protowire.SizeTag(e.propKey) + protowire.SizeBytes(len(p.Key)) +
			protowire.SizeTag(e.propValue) + protowire.SizeBytes(len(p.Value))
		dst = protowire.AppendTag(dst, e.num[cUserProperties], protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(n))
		dst = protowire.AppendTag(dst, e.propKey, protowire.BytesType)
		dst = protowire.AppendString(dst, p.Key)
		dst = protowire.AppendTag(dst, e.propValue, protowire.BytesType)
		dst = protowire.AppendString(dst, p.Value)
	}
	dst = e.int(dst, cPublishedAt, r.At.UnixMicro())
	return e.int(dst, cIngestedAt, r.ingested.UnixMicro())
}
