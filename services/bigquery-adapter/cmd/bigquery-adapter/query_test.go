package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bq"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bqtest"
)

const queriesFile = "../../../../docs/queries.sql"

// TestDocsQueriesRunOnTheEmulator runs every query of docs/queries.sql through `bigquery-adapter
// query` against the emulator, on rows whose answers are known.
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
	if err := c.Insert(ctx, rows); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(queriesFile)
	if err != nil {
		t.Fatal(err)
	}
	named := namedQueries(string(text))
	want := map[string][]string{
		"messages_per_topic_per_hour": {"s/dev-1/temp  " + base.Truncate(time.Hour).UTC().Format("2006-01-02 15:04:05.000000") + "  3",
			"s/dev-2/temp  " + base.Truncate(time.Hour).UTC().Format("2006-01-02 15:04:05.000000") + "  2"},
		"latest_value_per_device": {"dev-1      s/dev-1/temp  22", "dev-2      s/dev-2/temp  6"},
		"gaps_per_client":         {"dev-1      " + base.Add(10*time.Second).UTC().Format("2006-01-02 15:04:05.000000")},
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
		t.Logf("%s:\n%s", name, out.String())
	}
}
