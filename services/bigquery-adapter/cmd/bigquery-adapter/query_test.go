package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bqtest"
)

const queriesFile = "../../../../docs/queries.sql"

// TestDocsQueriesRunOnTheEmulator runs every query of docs/queries.sql through `bigquery-adapter
// query` against the emulator, on rows whose answers are known: messages (JSON payloads among
// them) and presence events.
func TestDocsQueriesRunOnTheEmulator(t *testing.T) {
	emu := bqtest.Start(t, "mcloudtt-local")
	ctx := context.Background()
	c, err := bq.New(ctx, bq.Options{Project: emu.Project, Dataset: "mqtt", Table: "messages", Endpoint: emu.Endpoint,
		CreateTable: true, API: bq.InsertAll})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Hour).Add(10 * time.Minute)
	var rows []*bq.Row
	add := func(client, topic, payload string, at time.Time) {
		m := bus.Message{ID: bus.NewMessageID(), ClientID: client, Topic: topic, Payload: []byte(payload), Created: at.UnixNano()}
		r, err := bq.NewRow(&m, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, &r)
	}
	add("dev-1", "s/dev-1/temp", "20", base)
	add("dev-1", "s/dev-1/temp", "21", base.Add(10*time.Second))
	add("dev-1", "s/dev-1/temp", "22", base.Add(20*time.Minute)) // a gap of 19m50s
	add("dev-2", "s/dev-2/temp", "5", base.Add(time.Minute))
	add("dev-2", "s/dev-2/temp", "6", base.Add(2*time.Minute))
	add("old", "s/old/temp", "1", time.Now().Add(-30*24*time.Hour)) // outside every window
	// JSON payloads: two devices, two hours, nested fields; a text payload among them.
	add("env-1", "e/env-1", `{"temperature": 20.5, "battery": {"percent": 80}}`, base)
	add("env-1", "e/env-1", `{"temperature": 21.5, "battery": {"percent": 79}}`, base.Add(30*time.Minute))
	add("env-1", "e/env-1", `{"temperature": 23, "battery": {"percent": 77}, "extra": [1, 2]}`, base.Add(70*time.Minute))
	add("env-2", "e/env-2", `{"temperature": 5}`, base.Add(5*time.Minute))
	add("env-2", "e/env-2", `hello`, base.Add(6*time.Minute))
	if err := c.Insert(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// Presence.
	now := time.Now()
	var evs []*bq.Row
	type span struct {
		client     string
		from, to   time.Duration // before now; to 0: still connected
		cause      string
		connection bus.MessageID
	}
	for _, sp := range []span{
		{client: "dev-A", from: 3 * time.Hour, to: 2 * time.Hour, cause: "normal"},
		{client: "dev-A", from: 90 * time.Minute, to: 80 * time.Minute, cause: "keepalive_timeout"},
		{client: "dev-B", from: 50 * time.Hour, to: 23 * time.Hour, cause: "connection_lost"},
		{client: "dev-B", from: 30 * time.Minute, to: 20*time.Minute - time.Second, cause: "takeover"},
		{client: "dev-B", from: 20 * time.Minute},
		{client: "dev-C", from: 10 * time.Minute, to: 5 * time.Minute, cause: "replica_drain"},
	} {
		id := bus.NewMessageID()
		start := now.Add(-sp.from).UnixNano()
		ev := func(kind bus.PresenceKind, at int64, cause string) {
			p := bus.Presence{ID: bus.NewMessageID(), Connection: id, Kind: kind, Time: at, ConnectedAt: start,
				Replica: "b1", ClientID: sp.client, Protocol: 4, Cause: cause}
			r, err := bq.NewEventRow(&p, now)
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, &r)
		}
		ev(bus.PresenceConnect, start, "")
		if sp.to != 0 {
			ev(bus.PresenceDisconnect, now.Add(-sp.to).UnixNano(), sp.cause)
		}
	}
	if err := c.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(queriesFile)
	if err != nil {
		t.Fatal(err)
	}
	named := namedQueries(string(text))
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }
	h, h1 := ts(base.Truncate(time.Hour)), ts(base.Truncate(time.Hour).Add(time.Hour))
	want := map[string][]string{
		"messages_per_topic_per_hour": {"e/env-1       " + h1 + "  1",
			"s/dev-1/temp  " + h + "  3", "e/env-1       " + h + "  2", "e/env-2       " + h + "  2", "s/dev-2/temp  " + h + "  2"},
		"latest_value_per_device": {"dev-1      s/dev-1/temp  22", "dev-2      s/dev-2/temp  6",
			"env-1      e/env-1       {\"temperature\": 23", "env-2      e/env-2       hello"},
		"gaps_per_client": {"env-1      " + ts(base.Add(30*time.Minute)), "env-1      " + ts(base),
			"dev-1      " + ts(base.Add(10*time.Second))},
		"latest_temperature_per_device": {"env-1      23           77               e/env-1  " + ts(base.Add(70*time.Minute)),
			"env-2      5            NULL             e/env-2  " + ts(base.Add(5*time.Minute))},
		"hourly_average_temperature": {"env-1      " + h + "  21               20.5             21.5             2",
			"env-1      " + h1 + "  23               23               23               1",
			"env-2      " + h + "  5                5                5                1"},
		// dev-B's first connection is cut at the window's start, and its last one is open: both
		// move with the time the query runs, checked below to the minute.
		"uptime_per_device":   {"dev-A      2            4200", "dev-B      3            5", "dev-C      1            300"},
		"devices_offline_now": {"dev-C      " + ts(now.Add(-5*time.Minute)) + "  replica_drain      b1", "dev-A      " + ts(now.Add(-80*time.Minute)) + "  keepalive_timeout  b1"},
	}
	if len(named) != len(want) {
		t.Fatalf("queries in %s: %v", queriesFile, named)
	}
	for name, lines := range want {
		var out, errs bytes.Buffer
		if code := runQuery([]string{"-project", emu.Project, "-endpoint", emu.Endpoint, "-file", queriesFile, name}, &out, &errs); code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errs.String())
		}
		got := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(got) != len(lines)+1 {
			t.Fatalf("%s: want %d rows:\n%s", name, len(lines), out.String())
		}
		for i, l := range lines {
			if !strings.HasPrefix(got[i+1], l) {
				t.Errorf("%s row %d: %q, want it to start with %q", name, i, got[i+1], l)
			}
		}
		if name == "uptime_per_device" {
			f := strings.Fields(got[2])
			if secs, err := strconv.Atoi(f[len(f)-1]); err != nil || secs < 5400-60 || secs > 5400+60 {
				t.Errorf("dev-B online %q seconds, want 5400 (±60)", f[len(f)-1])
			}
		}
		t.Logf("%s:\n%s", name, out.String())
	}
}
