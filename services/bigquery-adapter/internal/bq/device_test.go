package bq

import (
	"context"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// TestDeviceIDBothPaths writes messages of a Cloud IoT Core device, of a client whose id only
// looks like one, and of an ordinary client through the Storage Write API and through insertAll:
// device_id is the device of a well-formed device path and NULL otherwise, on both paths.
func TestDeviceIDBothPaths(t *testing.T) {
	const device = "projects/p1/locations/europe-west1/registries/r1/devices/pump-7"
	c, emu := newClient(t)
	ctx := context.Background()
	now := time.Now()
	for _, path := range []string{"storage", "insertall"} {
		var rows []*Row
		for _, id := range []string{device, "projects/p1/devices/pump-7", "backend"} {
			m := bus.Message{ID: bus.NewMessageID(), ClientID: id, Topic: "/devices/pump-7/events/" + path,
				Payload: []byte("x"), Created: now.UnixNano()}
			r, err := NewRow(&m, now)
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, &r)
		}
		if dj := rows[0].JSON()["device_id"]; dj != "pump-7" {
			t.Fatalf("insertAll row device_id %v", dj)
		}
		if path == "storage" {
			s, err := c.NewStream(ctx, Messages)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Append(ctx, rows, 0); err != nil {
				t.Fatal(err)
			}
			s.Close()
		} else if err := c.Insert(ctx, rows); err != nil {
			t.Fatal(err)
		}
		got := emu.Query(t, "SELECT client_id, device_id FROM `test.mqtt.messages` WHERE topic = '/devices/pump-7/events/"+path+"' ORDER BY client_id")
		want := [][2]any{{"backend", nil}, {"projects/p1/devices/pump-7", nil}, {device, "pump-7"}}
		if len(got) != len(want) {
			t.Fatalf("%s: %v", path, got)
		}
		for i, w := range want {
			if got[i][0] != w[0] || got[i][1] != w[1] {
				t.Errorf("%s: row %d = %v, want %v", path, i, got[i], w)
			}
		}
	}
}
