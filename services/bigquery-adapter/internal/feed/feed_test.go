package feed

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

func newFeed(t *testing.T, addr, consumer string) *Feed {
	t.Helper()
	f := New(Options{Addrs: []string{addr}, Group: "g", Consumer: consumer, DeadLetterMaxLen: 1000})
	t.Cleanup(func() { _ = f.Close() })
	if err := f.EnsureGroup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

func add(t *testing.T, r *redis.Client, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		m := bus.Message{ID: bus.NewMessageID(), Topic: "t", Created: time.Now().UnixNano()}
		buf, _ := bus.AppendMessage(bus.AppendBatchHeader(nil), &m)
		id, err := r.XAdd(context.Background(), &redis.XAddArgs{Stream: bus.NewNames("").Export(),
			Values: []any{bus.ExportField, buf}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestReadAckOwnPendingAndClaim(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer r.Close()
	a := newFeed(t, srv.Addr(), "a")
	if err := a.EnsureGroup(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	ids := add(t, r, 10)

	es, err := a.ReadNew(ctx, 4, 10*time.Millisecond)
	if err != nil || len(es) != 4 || es[0].ID != ids[0] || es[0].Data == nil {
		t.Fatalf("ReadNew: %v %+v", err, es)
	}
	if ms, err := bus.DecodeBatch(es[0].Data); err != nil || len(ms) != 1 {
		t.Fatalf("entry does not decode: %v", err)
	}
	if err := a.Ack(ctx, []string{ids[0]}); err != nil {
		t.Fatal(err)
	}
	// A restart under the same id gets the three unacknowledged entries back.
	a2 := newFeed(t, srv.Addr(), "a")
	own, err := a2.ReadOwn(ctx, "0", 100)
	if err != nil || len(own) != 3 || own[0].ID != ids[1] {
		t.Fatalf("ReadOwn: %v %+v", err, own)
	}
	lag, oldest, err := a.Lag(ctx)
	if err != nil || lag != 9 || oldest.IsZero() || time.Since(oldest) > time.Minute {
		t.Fatalf("Lag: %d %v %v, want 3 pending + 6 undelivered", lag, oldest, err)
	}

	// Another replica claims them only once they have been idle long enough.
	b := newFeed(t, srv.Addr(), "b")
	got, _, _, err := b.Claim(ctx, time.Hour, "0-0", 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("Claim before idle: %v %+v", err, got)
	}
	time.Sleep(30 * time.Millisecond)
	// a refreshes ids[1]: it stays a's.
	kept, err := a.Keep(ctx, []string{ids[1], ids[5]})
	if err != nil || !kept[ids[1]] || kept[ids[5]] {
		t.Fatalf("Keep: %v %v", err, kept)
	}
	got, next, deleted, err := b.Claim(ctx, 20*time.Millisecond, "0-0", 100)
	if err != nil || len(got) != 2 || got[0].ID != ids[2] || next != "0-0" || len(deleted) != 0 {
		t.Fatalf("Claim: %v %+v next %s deleted %v", err, got, next, deleted)
	}
	if kept, _ := a.Keep(ctx, []string{ids[2]}); kept[ids[2]] {
		t.Fatal("a still owns an entry b claimed")
	}

	// An entry trimmed while pending is reported as deleted.
	time.Sleep(30 * time.Millisecond)
	if err := r.XDel(ctx, a.Stream(), ids[1]).Err(); err != nil {
		t.Fatal(err)
	}
	_, _, deleted, err = b.Claim(ctx, 20*time.Millisecond, "0-0", 100)
	if err != nil || len(deleted) != 1 || deleted[0] != ids[1] {
		t.Fatalf("Claim after XDEL: %v deleted %v", err, deleted)
	}
}

func TestDeadLetterKeepsTheEntryAndTheError(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer r.Close()
	f := newFeed(t, srv.Addr(), "a")
	if err := r.XAdd(ctx, &redis.XAddArgs{Stream: f.Stream(), Values: []any{"x", "garbage"}}).Err(); err != nil {
		t.Fatal(err)
	}
	es, err := f.ReadNew(ctx, 10, 10*time.Millisecond)
	if err != nil || len(es) != 1 || es[0].Data != nil || es[0].Fields["x"] != "garbage" {
		t.Fatalf("%v %+v", err, es)
	}
	if err := f.DeadLetter(ctx, []Dead{{Entry: es[0], Err: "no envelope"}}); err != nil {
		t.Fatal(err)
	}
	dl, err := r.XRange(ctx, f.DeadLetterStream(), "-", "+").Result()
	if err != nil || len(dl) != 1 {
		t.Fatalf("%v %+v", err, dl)
	}
	v := dl[0].Values
	if v["entry"] != es[0].ID || v["error"] != "no envelope" || v["consumer"] != "a" || v["field:x"] != "garbage" {
		t.Fatalf("dead letter %+v", v)
	}
}

// TestRedisCluster: the feed's commands (the Lua script, XAUTOCLAIM sent raw) reach the node
// that holds the stream in a 3-master Redis Cluster.
func TestRedisCluster(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	f := New(Options{Addrs: c.Addrs(), Group: "g", Consumer: "a", DeadLetterMaxLen: 1000})
	defer f.Close()
	if err := f.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	r := redis.NewClient(&redis.Options{Addr: c.NodeFor(t, f.Stream()).Addr()})
	defer r.Close()
	ids := add(t, r, 3)
	es, err := f.ReadNew(ctx, 10, 10*time.Millisecond)
	if err != nil || len(es) != 3 {
		t.Fatalf("ReadNew: %v %d", err, len(es))
	}
	kept, err := f.Keep(ctx, ids)
	if err != nil || len(kept) != 3 {
		t.Fatalf("Keep: %v %v", err, kept)
	}
	time.Sleep(20 * time.Millisecond)
	b := New(Options{Addrs: c.Addrs(), Group: "g", Consumer: "b"})
	defer b.Close()
	got, _, _, err := b.Claim(ctx, 10*time.Millisecond, "0-0", 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("Claim: %v %d", err, len(got))
	}
	if err := b.Ack(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if lag, _, err := b.Lag(ctx); err != nil || lag != 0 {
		t.Fatalf("Lag: %d %v", lag, err)
	}
	if err := b.DeadLetter(ctx, []Dead{{Entry: es[0], Err: "x"}}); err != nil {
		t.Fatal(err)
	}
}
