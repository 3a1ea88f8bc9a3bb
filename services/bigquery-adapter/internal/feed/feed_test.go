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

// Release removes only what every group is done with: never a pending entry, never one a group
// has yet to read, nothing while a group has read nothing.
func TestReleaseKeepsWhatAnyGroupNeeds(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer r.Close()
	// One entry per node, so that the approximate trim (whole nodes) is exact and checkable.
	if err := r.ConfigSet(ctx, "stream-node-max-entries", "1").Err(); err != nil {
		t.Fatal(err)
	}
	a := newFeed(t, srv.Addr(), "a")
	stream := a.Stream()
	ids := add(t, r, 10)
	first := func() string {
		t.Helper()
		ms, err := r.XRangeN(ctx, stream, "-", "+", 1).Result()
		if err != nil || len(ms) == 0 {
			t.Fatalf("XRANGE: %v %v", ms, err)
		}
		return ms[0].ID
	}
	release := func(want int64, wantFirst string) {
		t.Helper()
		n, err := a.Release(ctx)
		if err != nil || n != want {
			t.Fatalf("Release removed %d (%v), want %d", n, err, want)
		}
		if got := first(); got != wantFirst {
			t.Fatalf("first entry after Release: %s, want %s", got, wantFirst)
		}
	}

	release(0, ids[0]) // group g has read nothing
	es, err := a.ReadNew(ctx, 6, 10*time.Millisecond)
	if err != nil || len(es) != 6 {
		t.Fatalf("ReadNew: %v %d", err, len(es))
	}
	release(0, ids[0]) // all six pending
	if err := a.Ack(ctx, ids[:4]); err != nil {
		t.Fatal(err)
	}
	// A second group, created now at the start, needs everything.
	if err := r.XGroupCreate(ctx, stream, "other", "0").Err(); err != nil {
		t.Fatal(err)
	}
	release(0, ids[0])
	res, err := r.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "other", Consumer: "x", Streams: []string{stream, ">"}, Count: 3}).Result()
	if err != nil || len(res[0].Messages) != 3 {
		t.Fatalf("XREADGROUP other: %v", err)
	}
	if err := r.XAck(ctx, stream, "other", ids[:3]...).Err(); err != nil {
		t.Fatal(err)
	}
	// g needs ids[4] on (pending), other ids[3] on (not read; ids[2], its last delivered, is kept).
	release(2, ids[2])
	if err := r.XGroupDestroy(ctx, stream, "other").Err(); err != nil {
		t.Fatal(err)
	}
	release(2, ids[4]) // g's oldest pending
	if err := a.Ack(ctx, ids[4:6]); err != nil {
		t.Fatal(err)
	}
	release(1, ids[5]) // nothing pending: g's last delivered stays, the four unread after it too
	if n, err := r.XLen(ctx, stream).Result(); err != nil || n != 5 {
		t.Fatalf("XLEN %d (%v), want 5", n, err)
	}
	// The lag stays exact: four entries never delivered.
	if lag, _, err := a.Lag(ctx); err != nil || lag != 4 {
		t.Fatalf("Lag %d (%v) after releasing, want 4", lag, err)
	}
	rest, err := a.ReadNew(ctx, 10, 10*time.Millisecond)
	if err != nil || len(rest) != 4 || rest[0].ID != ids[6] {
		t.Fatalf("ReadNew after releasing: %v %+v", err, rest)
	}
}
