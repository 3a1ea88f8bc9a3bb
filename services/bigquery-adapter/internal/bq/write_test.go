package bq

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

func TestPayloadJSON(t *testing.T) {
	for _, c := range []struct {
		payload, contentType string
		text, json           bool
	}{
		{`{"t":21.5,"unit":"°C"}`, "", true, true},
		{`{"a":{"b":[1,2,{"c":null}]}}`, "application/json; charset=utf-8", true, true},
		{`[1,2,3]`, "application/vnd.sensor+json", true, true},
		{`21.5`, "", true, true},
		{`"on"`, "text/json", true, true},
		{`true`, "", true, true},
		{`{"t":21.5}`, "text/plain", true, false},       // the publisher says it is text
		{`{"t":21.5}`, "not a media type", true, false}, // ... or something unreadable
		{`{"t":21.5,}`, "", true, false},                // not JSON
		{`{"t":`, "application/json", true, false},      // says JSON, is not: payload_text only
		{`hello`, "", true, false},
		{``, "", true, false},
		{"{\"k\":\"\xff\"}", "", false, false},                                 // not UTF-8
		{strings.Repeat("[", 501) + strings.Repeat("]", 501), "", true, false}, // deeper than BigQuery takes
		{strings.Repeat("[", 500) + strings.Repeat("]", 500), "", true, true},
		{`["[[[[", "\"[["]`, "", true, true}, // brackets in strings do not nest
	} {
		m := bus.Message{ID: bus.NewMessageID(), Topic: "t", Created: time.Now().UnixNano(), Payload: []byte(c.payload), ContentType: c.contentType}
		r, err := NewRow(&m, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		j := r.JSON()
		if (j["payload_text"] != nil) != c.text || (j["payload_json"] != nil) != c.json || r.HasJSON() != c.json {
			t.Errorf("payload %.40q content type %q: text %v json %v, want %v %v", c.payload, c.contentType,
				j["payload_text"] != nil, j["payload_json"] != nil, c.text, c.json)
		}
	}
}

func TestNewEventRow(t *testing.T) {
	now := time.Now().UnixNano()
	good := bus.Presence{ID: bus.NewMessageID(), Connection: bus.NewMessageID(), Kind: bus.PresenceDisconnect,
		Time: now, ConnectedAt: now - int64(time.Hour), ClientID: "c", Cause: "keepalive_timeout", Protocol: 5}
	r, err := NewEventRow(&good, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if j := r.JSON(); j["event"] != "disconnect" || j["protocol"] != "5.0" || j["cause"] != "keepalive_timeout" ||
		j["username"] != nil || r.Table != Events || r.ID != good.ID.String() {
		t.Fatalf("%+v", j)
	}
	for name, mutate := range map[string]func(p *bus.Presence){
		"no id":         func(p *bus.Presence) { p.ID = bus.MessageID{} },
		"no connection": func(p *bus.Presence) { p.Connection = bus.MessageID{} },
		"no client":     func(p *bus.Presence) { p.ClientID = "" },
		"kind":          func(p *bus.Presence) { p.Kind = 9 },
		"time":          func(p *bus.Presence) { p.Time = 0 },
		"connected":     func(p *bus.Presence) { p.ConnectedAt = -1 },
		"utf8":          func(p *bus.Presence) { p.RemoteAddr = "\xff" },
	} {
		p := good
		mutate(&p)
		if _, err := NewEventRow(&p, time.Now()); !errors.Is(err, ErrInvalidRow) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestStorageWriteRoundTrip writes every column of both tables through the Storage Write API
// into the emulator and reads them back: microsecond TIMESTAMPs (which the emulator stored wrongly
// before tools/bqemulator/storage-write.patch), binary BYTES, nested JSON, repeated records, NULLs.
func TestStorageWriteRoundTrip(t *testing.T) {
	c, emu := newClient(t)
	ctx := context.Background()
	pub := time.Date(2026, 3, 4, 5, 6, 7, 891234567, time.UTC)
	ingested := time.Date(2026, 3, 4, 5, 6, 8, 123456000, time.UTC)
	msgs := []bus.Message{
		{ID: bus.NewMessageID(), Origin: "b1", ClientID: "dev-1", Username: "alice", Topic: "s/dev-1/temp", QoS: 1, Retain: true,
			Payload: []byte(`{"t":21.5,"nested":{"list":[1,"x",null]},"unit":"°C"}`), Created: pub.UnixNano(),
			ContentType: "application/json", UserProperties: []mqtt.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}},
		{ID: bus.NewMessageID(), ClientID: "dev-2", Topic: "s/dev-2/raw", Payload: []byte{0, 0xff, 0xfe, 7}, Created: pub.UnixNano()},
		{ID: bus.NewMessageID(), ClientID: "dev-3", Topic: "s/dev-3/text", Payload: []byte(`hello`), Created: pub.UnixNano()},
	}
	var rows []*Row
	for i := range msgs {
		r, err := NewRow(&msgs[i], ingested)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, &r)
	}
	s, err := c.NewStream(ctx, Messages)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(ctx, rows, 0); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]bigquery.Value{}
	it, err := emu.Client(t).Query("SELECT * FROM `test.mqtt.messages`").Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for {
		var row map[string]bigquery.Value
		if err := it.Next(&row); err != nil {
			break
		}
		got[row["client_id"].(string)] = row
	}
	if len(got) != 3 {
		t.Fatalf("%d rows: %v", len(got), got)
	}
	want := pub.Truncate(time.Microsecond)
	for id, r := range got {
		if p, _ := r["published_at"].(time.Time); !p.Equal(want) {
			t.Errorf("%s: published_at %v, want %v", id, r["published_at"], want)
		}
		if i, _ := r["ingested_at"].(time.Time); !i.Equal(ingested) {
			t.Errorf("%s: ingested_at %v, want %v", id, r["ingested_at"], ingested)
		}
	}
	js := got["dev-1"]
	if js["username"] != "alice" || js["broker_id"] != "b1" || js["qos"] != int64(1) || js["retain"] != true ||
		js["content_type"] != "application/json" || js["payload_text"] != string(msgs[0].Payload) {
		t.Errorf("dev-1: %v", js)
	}
	if props, _ := js["user_properties"].([]bigquery.Value); len(props) != 2 {
		t.Errorf("user_properties %v", js["user_properties"])
	}
	if string(got["dev-2"]["payload"].([]byte)) != string(msgs[1].Payload) || got["dev-2"]["payload_text"] != nil ||
		got["dev-2"]["payload_json"] != nil || got["dev-2"]["username"] != nil {
		t.Errorf("dev-2: %v", got["dev-2"])
	}
	if got["dev-3"]["payload_text"] != "hello" || got["dev-3"]["payload_json"] != nil {
		t.Errorf("dev-3: %v", got["dev-3"])
	}
	// payload_json is JSON, not a string holding JSON text: its fields can be read.
	q := emu.Query(t, "SELECT CAST(JSON_VALUE(payload_json, '$.t') AS FLOAT64), JSON_VALUE(payload_json, '$.nested.list[1]'), "+
		"JSON_VALUE(payload_json, '$.unit') FROM `test.mqtt.messages` WHERE client_id = 'dev-1'")
	if len(q) != 1 || q[0][0] != 21.5 || q[0][1] != "x" || q[0][2] != "°C" {
		t.Errorf("JSON fields: %v", q)
	}

	// Events.
	ev := bus.Presence{ID: bus.NewMessageID(), Connection: bus.NewMessageID(), Kind: bus.PresenceConnect,
		Time: pub.UnixNano(), ConnectedAt: pub.UnixNano(), Replica: "b1", ClientID: "dev-1", RemoteAddr: "10.1.2.3:4567",
		Protocol: 4, KeepAlive: 60, SessionPresent: true}
	er, err := NewEventRow(&ev, ingested)
	if err != nil {
		t.Fatal(err)
	}
	es, err := c.NewStream(ctx, Events)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	if err := es.Append(ctx, []*Row{&er}, 0); err != nil {
		t.Fatal(err)
	}
	e := emu.Query(t, "SELECT event, connection_id, protocol, keep_alive, session_present, clean_start, cause, occurred_at, connected_at FROM `test.mqtt.events`")
	if len(e) != 1 || e[0][0] != "connect" || e[0][1] != ev.Connection.String() || e[0][2] != "3.1.1" || e[0][3] != int64(60) ||
		e[0][4] != true || e[0][5] != false || e[0][6] != nil || !e[0][7].(time.Time).Equal(want) || !e[0][8].(time.Time).Equal(want) {
		t.Errorf("events: %v", e)
	}
}

// TestStorageWriteOffsets: an append lands only at the stream's end; the same offset again is
// ALREADY_EXISTS, beyond the end OUT_OF_RANGE; another client appends to the stream by name;
// a finalized stream reports its row count and takes no more rows.
func TestStorageWriteOffsets(t *testing.T) {
	c, emu := newClient(t)
	ctx := context.Background()
	row := func(i int) *Row {
		m := bus.Message{ID: bus.NewMessageID(), Topic: "t", Created: time.Now().UnixNano(), Payload: []byte{byte(i)}}
		r, err := NewRow(&m, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return &r
	}
	s, err := c.NewStream(ctx, Messages)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(ctx, []*Row{row(0), row(1)}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []*Row{row(0), row(1)}, 0); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("same offset again: %v", err)
	}
	if err := s.Append(ctx, []*Row{row(2)}, 5); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("beyond the end: %v", err)
	}
	// The connection stays usable after those answers, and a second client finds the stream.
	other := newClientOn(t, emu)
	o, err := other.OpenStream(ctx, Messages, s.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Append(ctx, []*Row{row(2)}, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []*Row{row(2)}, 2); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("offset the other client wrote: %v", err)
	}
	if err := s.Append(ctx, []*Row{row(3)}, 3); err != nil {
		t.Fatal(err)
	}
	n, err := other.Finalize(ctx, s.Name())
	if err != nil || n != 4 {
		t.Fatalf("Finalize: %d rows, %v; want 4", n, err)
	}
	if err := s.Append(ctx, []*Row{row(4)}, 4); !errors.Is(err, ErrFinalized) {
		t.Fatalf("append to a finalized stream: %v", err)
	}
	if got := emu.Query(t, "SELECT COUNT(*) FROM `test.mqtt.messages`")[0][0]; got != int64(4) {
		t.Fatalf("%v rows, want 4", got)
	}
	if _, err := c.OpenStream(ctx, Messages, s.Name()+"-gone"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("opening a stream that does not exist: %v", err)
	}
	if _, err := c.Finalize(ctx, s.Name()+"-gone"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("finalizing a stream that does not exist: %v", err)
	}

	// Two streams written in turn, each on its own connection: every append lands in its own
	// stream (after the first request of a connection the stream is not named again).
	a, err := c.NewStream(ctx, Messages)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := c.NewStream(ctx, Messages)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := int64(0); i < 5; i++ {
		if err := a.Append(ctx, []*Row{row(0), row(1)}, 2*i); err != nil {
			t.Fatal(err)
		}
		if err := b.Append(ctx, []*Row{row(2)}, i); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.Finalize(ctx, a.Name()); err != nil || n != 10 {
		t.Fatalf("stream a: %d rows, %v; want 10", n, err)
	}
	if n, err := c.Finalize(ctx, b.Name()); err != nil || n != 5 {
		t.Fatalf("stream b: %d rows, %v; want 5", n, err)
	}
}

// TestEncoderMatchesTheSchemas: each table's descriptor has every column the encoder writes,
// with the wire type it writes, and nothing else.
func TestEncoderMatchesTheSchemas(t *testing.T) {
	for _, tb := range []Table{Messages, Events} {
		e, err := NewEncoder(tb)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(e.Descriptor().GetField()); n != len(specOf(tb).schema) {
			t.Errorf("%s: descriptor of %d fields for %d columns", tb, n, len(specOf(tb).schema))
		}
	}
}

// TestNewRowTooLarge: a message whose row no request could carry is refused (dead-lettered).
func TestNewRowTooLarge(t *testing.T) {
	m := bus.Message{ID: bus.NewMessageID(), Topic: "t", Created: time.Now().UnixNano(), Payload: []byte(strings.Repeat("7", 4<<20))}
	if _, err := NewRow(&m, time.Now()); !errors.Is(err, ErrInvalidRow) { // payload, text and JSON: 12 MiB
		t.Fatalf("a 12 MiB row: %v", err)
	}
	m.Payload = []byte{0xff}
	m.Payload = append(m.Payload, make([]byte, 4<<20)...) // bytes only: 4 MiB
	if _, err := NewRow(&m, time.Now()); err != nil {
		t.Fatalf("a 4 MiB binary row: %v", err)
	}
}
