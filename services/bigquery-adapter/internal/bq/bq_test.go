package bq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bqtest"
)

func newClient(t *testing.T) (*Client, *bqtest.Emulator) {
	t.Helper()
	emu := bqtest.Start(t, "test")
	return newClientOn(t, emu), emu
}

// newClientOn makes a client of emu's tables (created on first use) for both write APIs.
func newClientOn(t *testing.T, emu *bqtest.Emulator) *Client {
	t.Helper()
	c, err := New(context.Background(), Options{Project: "test", Dataset: "mqtt", Table: "messages",
		Endpoint: emu.Endpoint, GRPCEndpoint: emu.GRPCAddr, CreateTable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Setup(context.Background()); err != nil { // the table exists: its schema is checked
		t.Fatalf("second Setup: %v", err)
	}
	return c
}

// TestEmulatorIgnoresInsertID records why the adapter cannot rely on insertId alone: the
// emulator stores a row sent twice with the same insert id twice (BigQuery drops the second on a
// best-effort basis, for about a minute). Existing is what finds the first copy.
func TestEmulatorIgnoresInsertID(t *testing.T) {
	c, emu := newClient(t)
	m := bus.Message{ID: bus.NewMessageID(), Topic: "t", Created: time.Now().UnixNano()}
	r, err := NewRow(&m, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := c.Insert(ctx, []*Row{&r}); err != nil {
			t.Fatal(err)
		}
	}
	n := emu.Query(t, "SELECT COUNT(*) FROM `test.mqtt.messages`")[0][0]
	if n != int64(2) {
		t.Fatalf("%v rows for one insert id sent twice: the emulator deduplicates now; revisit the adapter's doc", n)
	}
	other := bus.Message{ID: bus.NewMessageID(), Topic: "t", Created: time.Now().UnixNano()}
	found, err := c.Existing(ctx, Messages, []string{r.ID, other.ID.String()}, r.At, r.At)
	if err != nil || !found[r.ID] || len(found) != 1 {
		t.Fatalf("Existing: %v %v", found, err)
	}
}

func TestNewRow(t *testing.T) {
	m := bus.Message{ID: bus.NewMessageID(), Origin: "b1", ClientID: "c", Topic: "a/b", Payload: []byte{0xff},
		QoS: 2, Created: time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC).UnixNano(),
		UserProperties: []mqtt.UserProperty{{Key: "k", Value: "v"}}}
	r, err := NewRow(&m, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if j := r.JSON(); j["payload"] != "/w==" || j["payload_text"] != nil || j["payload_json"] != nil || j["username"] != nil ||
		j["published_at"] != "2026-01-02T03:04:05.678901Z" || j["qos"] != 2 || r.ID != m.ID.String() {
		t.Fatalf("%+v", j)
	}
	for name, bad := range map[string]bus.Message{
		"no id":    {Topic: "t", Created: 1},
		"no topic": {ID: bus.NewMessageID(), Created: 1},
		"no time":  {ID: bus.NewMessageID(), Topic: "t"},
		"bad utf8": {ID: bus.NewMessageID(), Topic: "t", Created: 1, ClientID: "\xff"},
	} {
		if _, err := NewRow(&bad, time.Now()); !errors.Is(err, ErrInvalidRow) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Class
	}{
		{&googleapi.Error{Code: 400}, Invalid},
		{&googleapi.Error{Code: 403}, Retry},
		{&googleapi.Error{Code: 404}, Retry},
		{&googleapi.Error{Code: 429}, Retry},
		{&googleapi.Error{Code: 500}, RetryUncertain},
		{&googleapi.Error{Code: 503}, RetryUncertain},
		{fmt.Errorf("post: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), Retry},
		{fmt.Errorf("post: %w", &net.OpError{Op: "read", Err: errors.New("connection reset")}), RetryUncertain},
		{context.DeadlineExceeded, RetryUncertain},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestSetupRefusesAnotherSchema: a table that exists with another schema is reported, not used.
func TestSetupRefusesAnotherSchema(t *testing.T) {
	emu := bqtest.Start(t, "test")
	ctx := context.Background()
	bc := emu.Client(t)
	if err := bc.Dataset("mqtt").Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := bc.Dataset("mqtt").Table("messages").Create(ctx, &bigquery.TableMetadata{Schema: bigquery.Schema{
		{Name: "topic", Type: bigquery.StringFieldType}, {Name: "message", Type: bigquery.StringFieldType}}}); err != nil {
		t.Fatal(err)
	}
	c, err := New(ctx, Options{Project: "test", Dataset: "mqtt", Table: "messages", Endpoint: emu.Endpoint, GRPCEndpoint: emu.GRPCAddr, CreateTable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Setup(ctx)
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "column message_id missing") ||
		!strings.Contains(err.Error(), "unexpected column message") {
		t.Fatalf("Setup: %v", err)
	}
}
