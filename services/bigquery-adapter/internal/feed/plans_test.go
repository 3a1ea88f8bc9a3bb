package feed

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// TestPlans: a plan is recorded once for its entries; a second plan over any of them is refused
// with the first one's id; both replicas read the same plan; an update changes it only while it
// exists; finishing acknowledges the entries and forgets the plan.
func TestPlans(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer r.Close()
	a, b := newFeed(t, srv.Addr(), "a"), newFeed(t, srv.Addr(), "b")
	ids := add(t, r, 5)
	if _, err := a.ReadNew(ctx, 5, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	p := &Plan{Entries: ids[:3], Parts: []Part{{Table: "messages", Stream: "s1", Offset: 100, Rows: 3}}}
	if taken, err := a.CreatePlan(ctx, p); err != nil || taken != nil || p.ID != ids[0] {
		t.Fatalf("CreatePlan: %v %v id %s", taken, err, p.ID)
	}
	// Another replica (which claimed ids[2]) cannot plan it again.
	q := &Plan{Entries: ids[2:], Parts: []Part{{Table: "messages", Stream: "s2", Rows: 3}}}
	taken, err := b.CreatePlan(ctx, q)
	if err != nil || !reflect.DeepEqual(taken, map[string]string{ids[2]: ids[0]}) {
		t.Fatalf("second plan over an entry: %v %v", taken, err)
	}
	if got, err := b.Plans(ctx, ids); err != nil || len(got) != 3 || got[ids[0]] != got[ids[2]] ||
		!reflect.DeepEqual(got[ids[1]].Parts, p.Parts) || got[ids[1]].ID != ids[0] || got[ids[3]] != nil {
		t.Fatalf("Plans: %+v %v", got, err)
	}
	// Both replicas read the plan; a moves it first, b's move of the same plan is refused and
	// b gets a's version.
	bp, _ := b.Plans(ctx, ids[:1])
	p.Skip = []string{"m1"}
	if res, _, err := a.UpdatePlan(ctx, p); res != Updated || err != nil {
		t.Fatalf("UpdatePlan: %v %v", res, err)
	}
	mine := bp[ids[0]]
	mine.Parts[0].Stream = "b-stream"
	res, cur, err := b.UpdatePlan(ctx, mine)
	if res != Changed || err != nil || !reflect.DeepEqual(cur.Skip, []string{"m1"}) || cur.Parts[0].Stream != "s1" {
		t.Fatalf("concurrent UpdatePlan: %v %+v %v", res, cur, err)
	}
	if got, _ := b.Plans(ctx, ids[:1]); !reflect.DeepEqual(got[ids[0]].Skip, []string{"m1"}) || got[ids[0]].Parts[0].Stream != "s1" {
		t.Fatalf("updated plan: %+v", got[ids[0]])
	}
	p.Parts[0].Rows = 2 // a's version is current: a may move it again
	if res, _, err := a.UpdatePlan(ctx, p); res != Updated || err != nil {
		t.Fatalf("second UpdatePlan: %v %v", res, err)
	}
	if err := b.FinishPlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	if res, _, err := a.UpdatePlan(ctx, p); res != Gone || err != nil {
		t.Fatalf("UpdatePlan of a finished plan: %v %v", res, err)
	}
	if got, _ := a.Plans(ctx, ids); len(got) != 0 {
		t.Fatalf("plans after finishing: %v", got)
	}
	pend, _ := r.XPending(ctx, bus.NewNames("").Export(), "g").Result()
	if pend.Count != 2 {
		t.Fatalf("pending %d, want the 2 entries outside the plan", pend.Count)
	}
	// The rest can be planned now.
	if taken, err := b.CreatePlan(ctx, &Plan{Entries: ids[3:], Parts: q.Parts}); taken != nil || err != nil {
		t.Fatalf("%v %v", taken, err)
	}
}

// TestCleanPlans: a plan whose entries were acknowledged but not forgotten (a crash between the
// two) is cleaned; one whose entries are pending is kept.
func TestCleanPlans(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer r.Close()
	a := newFeed(t, srv.Addr(), "a")
	ids := add(t, r, 4)
	if _, err := a.ReadNew(ctx, 4, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	done := &Plan{Entries: ids[:2], Parts: []Part{{Table: "messages", Stream: "s", Rows: 2}}}
	open := &Plan{Entries: ids[2:], Parts: []Part{{Table: "messages", Stream: "s", Offset: 2, Rows: 2}}}
	for _, p := range []*Plan{done, open} {
		if _, err := a.CreatePlan(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Ack(ctx, done.Entries); err != nil { // acknowledged, then the replica died
		t.Fatal(err)
	}
	var cursor uint64
	total := 0
	for {
		next, n, err := a.CleanPlans(ctx, cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if cursor = next; cursor == 0 {
			break
		}
	}
	got, _ := a.Plans(ctx, ids)
	if total != 1 || got[ids[0]] != nil || got[ids[2]] == nil || got[ids[3]] == nil {
		t.Fatalf("cleaned %d; plans %v", total, got)
	}
	if n, ok, err := a.FinalCount(ctx, "s"); ok || err != nil || n != 0 {
		t.Fatalf("FinalCount of an unknown stream: %d %v %v", n, ok, err)
	}
	if err := a.SetFinalCount(ctx, "s", 42); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := a.FinalCount(ctx, "s"); !ok || err != nil || n != 42 {
		t.Fatalf("FinalCount: %d %v %v", n, ok, err)
	}
}

// TestFetchAndPresenceEntries: Fetch reads entries by id whoever they are pending for; presence
// entries are told apart from message entries.
func TestFetchAndPresenceEntries(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer r.Close()
	a := newFeed(t, srv.Addr(), "a")
	ids := add(t, r, 2)
	p := bus.Presence{ID: bus.NewMessageID(), Connection: bus.NewMessageID(), Kind: bus.PresenceConnect, ClientID: "c"}
	pid, err := r.XAdd(ctx, &redis.XAddArgs{Stream: bus.NewNames("").Export(),
		Values: []any{bus.PresenceField, bus.AppendPresence(bus.AppendBatchHeader(nil), &p)}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	es, err := a.Fetch(ctx, []string{pid, ids[1], "1-1"})
	if err != nil || len(es) != 2 || es[0].ID != pid || !es[0].Presence || es[1].Presence || es[1].ID != ids[1] {
		t.Fatalf("Fetch: %v %+v", err, es)
	}
	if ps, err := bus.DecodePresenceBatch(es[0].Data); err != nil || len(ps) != 1 || ps[0].ClientID != "c" {
		t.Fatalf("presence entry: %v %v", ps, err)
	}
	if es[0].Field() != bus.PresenceField || es[1].Field() != bus.ExportField {
		t.Fatal("Field")
	}
}
