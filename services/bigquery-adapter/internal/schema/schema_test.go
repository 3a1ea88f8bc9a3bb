package schema

import (
	"strings"
	"testing"

	"cloud.google.com/go/bigquery"
)

func TestSchemaHasTheIssueColumns(t *testing.T) {
	s := Schema()
	want := map[string]bigquery.FieldType{
		"message_id": bigquery.StringFieldType, "broker_id": bigquery.StringFieldType,
		"client_id": bigquery.StringFieldType, "device_id": bigquery.StringFieldType,
		"username": bigquery.StringFieldType,
		"topic":    bigquery.StringFieldType, "qos": bigquery.IntegerFieldType,
		"retain": bigquery.BooleanFieldType, "payload": bigquery.BytesFieldType,
		"payload_text": bigquery.StringFieldType, "payload_json": bigquery.JSONFieldType,
		"content_type":    bigquery.StringFieldType,
		"user_properties": bigquery.RecordFieldType, "published_at": bigquery.TimestampFieldType,
		"ingested_at": bigquery.TimestampFieldType,
	}
	if len(s) != len(want) {
		t.Fatalf("%d columns, want %d", len(s), len(want))
	}
	for _, f := range s {
		if want[f.Name] != f.Type {
			t.Errorf("column %s: %s, want %s", f.Name, f.Type, want[f.Name])
		}
	}
	if err := Check(s, Schema()); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFindsDifferences(t *testing.T) {
	for name, mutate := range map[string]func(bigquery.Schema) bigquery.Schema{
		"column topic missing":     func(s bigquery.Schema) bigquery.Schema { return s[:col(s, "topic")] },
		"column device_id missing": func(s bigquery.Schema) bigquery.Schema { return s[:col(s, "device_id")] },
		"column qos is STRING":     func(s bigquery.Schema) bigquery.Schema { s[col(s, "qos")].Type = bigquery.StringFieldType; return s },
		"unexpected column extra":  func(s bigquery.Schema) bigquery.Schema { return append(s, &bigquery.FieldSchema{Name: "extra"}) },
		"column user_properties.value": func(s bigquery.Schema) bigquery.Schema {
			u := s[col(s, "user_properties")]
			u.Schema = u.Schema[:1]
			return s
		},
		"column message_id is NULLABLE": func(s bigquery.Schema) bigquery.Schema { s[col(s, "message_id")].Required = false; return s },
	} {
		err := Check(Schema(), mutate(Schema()))
		if err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(name, " missing")) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestEventsHasThePresenceColumns(t *testing.T) {
	s := Events()
	want := map[string]bigquery.FieldType{
		"event_id": bigquery.StringFieldType, "event": bigquery.StringFieldType,
		"connection_id": bigquery.StringFieldType, "client_id": bigquery.StringFieldType,
		"username": bigquery.StringFieldType, "broker_id": bigquery.StringFieldType,
		"remote_addr": bigquery.StringFieldType, "protocol": bigquery.StringFieldType,
		"keep_alive": bigquery.IntegerFieldType, "clean_start": bigquery.BooleanFieldType,
		"session_present": bigquery.BooleanFieldType, "cause": bigquery.StringFieldType,
		"connected_at": bigquery.TimestampFieldType, "occurred_at": bigquery.TimestampFieldType,
		"ingested_at": bigquery.TimestampFieldType,
	}
	if len(s) != len(want) {
		t.Fatalf("%d columns, want %d", len(s), len(want))
	}
	for _, f := range s {
		if want[f.Name] != f.Type {
			t.Errorf("column %s: %s, want %s", f.Name, f.Type, want[f.Name])
		}
	}
	if err := Check(Schema(), s); err == nil {
		t.Fatal("the two tables' schemas compare equal")
	}
}

// col is the index of the column name in s.
func col(s bigquery.Schema, name string) int {
	for i, f := range s {
		if f.Name == name {
			return i
		}
	}
	panic("no column " + name)
}
