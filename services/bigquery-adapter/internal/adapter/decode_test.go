package adapter

import (
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// TestDecodeEntryBothForms: an entry in the export form brokers write now and one in the
// envelope form they wrote before, of the same messages, give the same rows, so a stream that
// holds both (brokers rolled out while the adapter reads) is written as if it held one.
func TestDecodeEntryBothForms(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC).UnixNano()
	msgs := make([]bus.Message, 40)
	for i := range msgs {
		at := t0 + int64(i)*1_300_000 // across milliseconds
		msgs[i] = bus.Message{ID: bus.NewMessageIDAt(at), Origin: "broker-1", ClientID: "dev-" + strconv.Itoa(i/10),
			Topic: "sensors/" + strconv.Itoa(i%3), Payload: []byte(`{"t":` + strconv.Itoa(20+i) + `}`),
			QoS: byte(i % 3), Retain: i%7 == 0, Created: at}
		if i%2 == 0 {
			msgs[i].Username = "user-" + strconv.Itoa(i/10)
			msgs[i].Expiry = at + int64(time.Minute)
			msgs[i].Props = bus.PropPayloadFormat
			msgs[i].PayloadFormat = 1
			msgs[i].ContentType = "application/json"
			msgs[i].ResponseTopic = "reply/" + strconv.Itoa(i)
			msgs[i].CorrelationData = []byte{byte(i), 0}
			msgs[i].UserProperties = []mqtt.UserProperty{{Key: "k", Value: strconv.Itoa(i)}}
		}
	}
	envelope := bus.AppendBatchHeader(nil)
	export := bus.AppendExportBatchHeader(nil)
	var base bus.ExportBase
	for i := range msgs {
		envelope, _ = bus.AppendMessage(envelope, &msgs[i])
		if i == 0 || !base.Fits(&msgs[i]) {
			base.SetFrom(&msgs[i])
			export = bus.AppendExportBase(export, &base)
		}
		var err error
		if export, err = bus.AppendExportMessage(export, &base, &msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	oldRows, oldDead, _, oldN := decodeEntry(feed.Entry{ID: "1-0", Data: envelope}, now)
	newRows, newDead, _, newN := decodeEntry(feed.Entry{ID: "1-0", Data: export}, now)
	if oldN != len(msgs) || newN != len(msgs) || len(oldDead)+len(newDead) != 0 {
		t.Fatalf("envelope: %d messages, %v; export: %d messages, %v", oldN, oldDead, newN, newDead)
	}
	if len(oldRows) != len(newRows) {
		t.Fatalf("%d rows from the envelope form, %d from the export form", len(oldRows), len(newRows))
	}
	for i := range oldRows {
		if !reflect.DeepEqual(oldRows[i], newRows[i]) || !reflect.DeepEqual(oldRows[i].JSON(), newRows[i].JSON()) {
			t.Fatalf("row %d differs:\nenvelope %+v\nexport   %+v", i, oldRows[i].JSON(), newRows[i].JSON())
		}
	}
}
