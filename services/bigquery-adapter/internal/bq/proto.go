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
	num        map[string]protowire.Number // column -> field number
	propKey    protowire.Number            // user_properties.key
	propValue  protowire.Number            // user_properties.value
}

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
	e := &Encoder{table: t, descriptor: dp, num: map[string]protowire.Number{}}
	if err := e.check(s, md, ""); err != nil {
		return nil, err
	}
	return e, nil
}

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
			e.num[f.Name] = fd.Number()
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

func (e *Encoder) str(dst []byte, col, v string) []byte {
	dst = protowire.AppendTag(dst, e.num[col], protowire.BytesType)
	return protowire.AppendString(dst, v)
}

func (e *Encoder) optStr(dst []byte, col, v string) []byte {
	if v == "" {
		return dst // NULL
	}
	return e.str(dst, col, v)
}

func (e *Encoder) bytes(dst []byte, col string, v []byte) []byte {
	dst = protowire.AppendTag(dst, e.num[col], protowire.BytesType)
	return protowire.AppendBytes(dst, v)
}

func (e *Encoder) int(dst []byte, col string, v int64) []byte {
	dst = protowire.AppendTag(dst, e.num[col], protowire.VarintType)
	return protowire.AppendVarint(dst, uint64(v))
}

func (e *Encoder) bool(dst []byte, col string, v bool) []byte {
	dst = protowire.AppendTag(dst, e.num[col], protowire.VarintType)
	return protowire.AppendVarint(dst, protowire.EncodeBool(v))
}

// Append appends r's encoding to dst. r must be a row of the encoder's table.
func (e *Encoder) Append(dst []byte, r *Row) []byte {
	if r.Table == Events {
		p := r.ev
		dst = e.str(dst, "event_id", r.ID)
		dst = e.str(dst, "event", p.Kind.String())
		dst = e.str(dst, "connection_id", p.Connection.String())
		dst = e.str(dst, "client_id", p.ClientID)
		dst = e.optStr(dst, "username", p.Username)
		dst = e.optStr(dst, "broker_id", p.Replica)
		dst = e.optStr(dst, "remote_addr", p.RemoteAddr)
		dst = e.optStr(dst, "protocol", Protocol(p.Protocol))
		dst = e.int(dst, "keep_alive", int64(p.KeepAlive))
		dst = e.bool(dst, "clean_start", p.CleanStart)
		dst = e.bool(dst, "session_present", p.SessionPresent)
		dst = e.optStr(dst, "cause", p.Cause)
		dst = e.int(dst, "connected_at", p.ConnectedAt/1000)
		dst = e.int(dst, "occurred_at", r.At.UnixMicro())
		return e.int(dst, "ingested_at", r.ingested.UnixMicro())
	}
	m := r.msg
	dst = e.str(dst, "message_id", r.ID)
	dst = e.optStr(dst, "broker_id", m.Origin)
	dst = e.str(dst, "client_id", m.ClientID)
	dst = e.optStr(dst, "username", m.Username)
	dst = e.str(dst, "topic", m.Topic)
	dst = e.int(dst, "qos", int64(m.QoS))
	dst = e.bool(dst, "retain", m.Retain)
	dst = e.bytes(dst, "payload", m.Payload)
	if r.text {
		dst = e.bytes(dst, "payload_text", m.Payload) // valid UTF-8: a string on the wire
	}
	if r.HasJSON() {
		dst = e.bytes(dst, "payload_json", m.Payload)
	}
	dst = e.optStr(dst, "content_type", m.ContentType)
	for _, p := range m.UserProperties {
		n := protowire.SizeTag(e.propKey) + protowire.SizeBytes(len(p.Key)) +
			protowire.SizeTag(e.propValue) + protowire.SizeBytes(len(p.Value))
		dst = protowire.AppendTag(dst, e.num["user_properties"], protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(n))
		dst = protowire.AppendTag(dst, e.propKey, protowire.BytesType)
		dst = protowire.AppendString(dst, p.Key)
		dst = protowire.AppendTag(dst, e.propValue, protowire.BytesType)
		dst = protowire.AppendString(dst, p.Value)
	}
	dst = e.int(dst, "published_at", r.At.UnixMicro())
	return e.int(dst, "ingested_at", r.ingested.UnixMicro())
}
