package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

func oneMsg(t testing.TB, topic, payload string) []byte {
	t.Helper()
	m := Message{ID: NewMessageID(), Topic: topic, Payload: []byte(payload), QoS: 1}
	b, err := AppendMessage(AppendBatchHeader(nil), &m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func payloads(t testing.TB, es []LogEntry) (out []string, seqs []uint64) {
	t.Helper()
	for _, e := range es {
		for i, raw := range e.Msgs {
			ms, err := DecodeBatch(raw)
			if err != nil || len(ms) != 1 {
				t.Fatalf("entry %s message %d: %v", e.ID, i, err)
			}
			out = append(out, string(ms[0].Payload))
			seqs = append(seqs, e.Seq+uint64(i))
		}
	}
	return out, seqs
}

func mustWrite(t testing.TB, b *Bus, ws ...SessionWrite) {
	t.Helper()
	if err := b.WriteSessions(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
}

// A claim, appends from another replica, reading the log, the owner's commits, and fencing.
func TestSessionLogLifecycle(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	a := newBus(t, testOptions(t, "replica-a", rs.Addr()))
	b := newBus(t, testOptions(t, "replica-b", rs.Addr()))

	ca, err := a.ClaimSession(ctx, "dev1", false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Present || ca.Inc != ca.Epoch || ca.Cursor != (LogPos{"0-0", 1}) || ca.Appended != 0 {
		t.Fatalf("new session: %+v", ca)
	}
	// b appends (it is not the owner): 3 messages then 2, with a bound of 4 queued.
	ap1 := &Append{Session: "dev1", Inc: ca.Inc, Max: 4, Msgs: [][]byte{oneMsg(t, "t", "1"), oneMsg(t, "t", "2"), oneMsg(t, "t", "3")}}
	ap2 := &Append{Session: "dev1", Inc: ca.Inc, Max: 4, Msgs: [][]byte{oneMsg(t, "t", "4"), oneMsg(t, "t", "5")}}
	stale := &Append{Session: "dev1", Inc: ca.Inc - 1, Msgs: [][]byte{oneMsg(t, "t", "x")}}
	none := &Append{Session: "nobody", Inc: 1, Msgs: [][]byte{oneMsg(t, "t", "x")}}
	mustWrite(t, b, ap1, ap2, stale, none)
	if ap1.Err != nil || ap1.Gone || ap1.Accepted != 3 || ap1.Owner != "replica-a" || !ap1.Online {
		t.Fatalf("append 1: %+v", ap1)
	}
	if ap2.Accepted != 1 {
		t.Fatalf("append 2 past the bound of 4: accepted %d, want 1", ap2.Accepted)
	}
	if !stale.Gone || !none.Gone {
		t.Fatalf("appends for another incarnation / no session: %+v %+v", stale, none)
	}
	if out, _ := redistest.Do(rs.Addr(), "", "EXISTS", a.Names().SessionLog("nobody")); out != "0" {
		t.Fatal("an append to a missing session made its log")
	}

	rd := &LogRead{Session: "dev1", From: ca.Cursor.ID, Count: 10}
	if err := a.ReadLogs(ctx, []*LogRead{rd}); err != nil || rd.Err != nil {
		t.Fatal(err, rd.Err)
	}
	got, seqs := payloads(t, rd.Entries)
	if fmt.Sprint(got) != "[1 2 3 4]" || fmt.Sprint(seqs) != "[1 2 3 4]" {
		t.Fatalf("log: %v seqs %v", got, seqs)
	}
	// The owner: 1 and 3 acknowledged, 2 released (QoS 2, PUBREC in): cursor at 2; the first
	// entry cannot be trimmed yet (2 is in it).
	cur := LogPos{ID: rd.Entries[0].ID, Seq: 2}
	c1 := &Commit{Session: "dev1", Epoch: ca.Epoch, Cursor: &cur, Marks: true, Done: []uint64{3}, Released: []uint64{2}}
	mustWrite(t, a, c1)
	if c1.Err != nil {
		t.Fatal(c1.Err)
	}
	// The bound counts from the cursor: 2, 3, 4 wait; one more fits.
	ap3 := &Append{Session: "dev1", Inc: ca.Inc, Max: 4, Msgs: [][]byte{oneMsg(t, "t", "6"), oneMsg(t, "t", "7")}}
	mustWrite(t, b, ap3)
	if ap3.Accepted != 1 {
		t.Fatalf("append after the cursor moved: accepted %d, want 1", ap3.Accepted)
	}

	// replica-b claims it (the client reconnected there): a is fenced, b sees a's marks.
	cb, err := b.ClaimSession(ctx, "dev1", false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !cb.Present || cb.Epoch <= ca.Epoch || cb.Inc != ca.Inc || cb.PrevOwner != "replica-a" || !cb.PrevOnline ||
		cb.Cursor != cur || fmt.Sprint(cb.Done) != "[3]" || fmt.Sprint(cb.Released) != "[2]" || cb.Appended != 5 {
		t.Fatalf("claim by b: %+v", cb)
	}
	late := &Commit{Session: "dev1", Epoch: ca.Epoch, Cursor: &LogPos{ID: rd.Entries[1].ID, Seq: 5}, Marks: true}
	mustWrite(t, a, late)
	if !errors.Is(late.Err, ErrFenced) {
		t.Fatalf("a's write after b's claim: %v", late.Err)
	}
	// b finishes 2: the cursor passes the first entry, which goes.
	cur2 := LogPos{ID: rd.Entries[1].ID, Seq: 4}
	c2 := &Commit{Session: "dev1", Epoch: cb.Epoch, Cursor: &cur2, Marks: true, TrimBefore: cur2.ID}
	mustWrite(t, b, c2)
	if c2.Err != nil {
		t.Fatal(c2.Err)
	}
	rd2 := &LogRead{Session: "dev1", From: "-", Count: 10}
	_ = b.ReadLogs(ctx, []*LogRead{rd2})
	if got, _ := payloads(t, rd2.Entries); fmt.Sprint(got) != "[4 6]" {
		t.Fatalf("after trimming: %v", got)
	}

	// Offline with a TTL: the keys expire; then a clean claim starts a new incarnation.
	off := &Commit{Session: "dev1", Epoch: cb.Epoch, Offline: true, OfflineTTL: time.Minute}
	mustWrite(t, b, off)
	ttl, _ := redistest.Do(rs.Addr(), "", "PTTL", b.Names().SessionLog("dev1"))
	if off.Err != nil || ttl == "-1" || ttl == "-2" {
		t.Fatalf("offline: %v, log ttl %s", off.Err, ttl)
	}
	cc, err := a.ClaimSession(ctx, "dev1", true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cc.Present || cc.Inc == ca.Inc || cc.Appended != 0 || cc.PrevOnline {
		t.Fatalf("clean claim: %+v", cc)
	}
	if out, _ := redistest.Do(rs.Addr(), "", "EXISTS", a.Names().SessionLog("dev1")); out != "0" {
		t.Fatal("the log survived a clean start")
	}
	end := &Commit{Session: "dev1", Epoch: cc.Epoch, End: true}
	mustWrite(t, a, end)
	if !end.Ended {
		t.Fatalf("end: %+v", end)
	}
	// An epoch stays larger than every earlier one even after the session was deleted.
	cd, _ := b.ClaimSession(ctx, "dev1", false, time.Hour)
	if cd.Epoch <= cc.Epoch {
		t.Fatalf("epoch went back: %d after %d", cd.Epoch, cc.Epoch)
	}
}

// A QoS 2 message from a persistent publisher: recorded with its appends; a resend of the
// packet id appends nothing.
func TestQoS2AppendIsRecordedOnce(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	a := newBus(t, testOptions(t, "replica-a", rs.Addr()))
	pub, _ := a.ClaimSession(ctx, "pub", false, time.Hour)
	sub, _ := a.ClaimSession(ctx, "sub", false, time.Hour)
	id := NewMessageID()
	epoch := pub.Epoch
	mk := func() *Q2Append {
		return &Q2Append{Publisher: "pub", Epoch: epoch, PacketID: 7, MsgID: id,
			Targets: []*Append{{Session: "sub", Inc: sub.Inc, Msgs: [][]byte{oneMsg(t, "t", "q2")}}}}
	}
	q1, q2 := mk(), mk()
	mustWrite(t, a, q1)
	mustWrite(t, a, q2)
	if q1.Err != nil || q1.Dup || q1.Targets[0].Accepted != 1 {
		t.Fatalf("first: %+v %+v", q1, q1.Targets[0])
	}
	if q2.Err != nil || !q2.Dup || q2.Targets[0].Accepted != 0 {
		t.Fatalf("resend: %+v", q2)
	}
	// The receive state is in the claim of whoever takes the publisher's session next.
	c, _ := a.ClaimSession(ctx, "pub", false, time.Hour)
	if c.InQoS2[7] != id {
		t.Fatalf("inbound QoS 2 state after a claim: %v", c.InQoS2)
	}
	// PUBREL: the id is free again.
	del := &Commit{Session: "pub", Epoch: c.Epoch, DelQ2: []uint16{7}}
	mustWrite(t, a, del)
	// A request of the connection before that claim reaching Redis only now (it was held up in
	// a partition while the client went elsewhere and finished the exchange) is fenced: it
	// appends nothing and records nothing.
	late := mk()
	mustWrite(t, a, late)
	if !errors.Is(late.Err, ErrFenced) || late.Targets[0].Accepted != 0 {
		t.Fatalf("a QoS 2 append of an earlier claim: %+v %+v, want fenced", late, late.Targets[0])
	}
	if n, _ := a.pub.HExists(ctx, a.names.Session("pub"), "q:7").Result(); n {
		t.Fatal("a fenced QoS 2 append recorded its packet id")
	}
	epoch = c.Epoch
	q3 := mk()
	q3.MsgID = NewMessageID()
	mustWrite(t, a, q3)
	if q3.Dup || q3.Targets[0].Accepted != 1 {
		t.Fatalf("after PUBREL the id is new again: %+v", q3)
	}
	n, err := a.pub.XLen(ctx, a.names.SessionLog("sub")).Result()
	if err != nil || n != 2 {
		t.Fatalf("the subscriber's log holds %d entries (%v), want 2: the first and the new use of the id", n, err)
	}
}

// Scripts are loaded again when Redis restarted and forgot them.
func TestSessionScriptsSurviveARedisRestart(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	a := newBus(t, testOptions(t, "replica-a", rs.Addr()))
	c, err := a.ClaimSession(ctx, "dev", false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, a, &Append{Session: "dev", Inc: c.Inc, Msgs: [][]byte{oneMsg(t, "t", "1")}})
	if _, err := redistest.Do(rs.Addr(), "", "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	ap := &Append{Session: "dev", Inc: c.Inc, Msgs: [][]byte{oneMsg(t, "t", "2")}}
	mustWrite(t, a, ap)
	if ap.Err != nil || ap.Accepted != 1 {
		t.Fatalf("append after SCRIPT FLUSH: %+v", ap)
	}
	// The claim sends its script and the replica set's SADD in one pipeline; after a flush the
	// script runs again on its own, and both happened.
	if _, err := redistest.Do(rs.Addr(), "", "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	c2, err := a.ClaimSession(ctx, "other", false, time.Hour)
	if err != nil || c2.Epoch == 0 {
		t.Fatalf("claim after SCRIPT FLUSH: %+v %v", c2, err)
	}
	if owner, _ := redistest.Do(rs.Addr(), "", "HGET", a.Names().Session("other"), "owner"); owner != "replica-a" {
		t.Errorf("claim after SCRIPT FLUSH: owner %q", owner)
	}
	if in, _ := redistest.Do(rs.Addr(), "", "SISMEMBER", a.Names().ReplicaSessions("replica-a"), "other"); in != "1" {
		t.Errorf("claim after SCRIPT FLUSH: the session is not in the replica's set (%q)", in)
	}
}

// A dead replica's online sessions go offline with their TTL; sessions it no longer owns stay.
func TestReleaseOrphans(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	a := newBus(t, testOptions(t, "replica-a", rs.Addr()))
	b := newBus(t, testOptions(t, "replica-b", rs.Addr()))
	for _, id := range []string{"s1", "s2", "moved"} {
		c, _ := a.ClaimSession(ctx, id, false, time.Hour)
		mustWrite(t, a, &Commit{Session: id, Epoch: c.Epoch, SetExpiry: true, Expiry: time.Minute})
	}
	if _, err := b.ClaimSession(ctx, "moved", false, time.Hour); err != nil {
		t.Fatal(err)
	}
	n, err := b.ReleaseOrphans(ctx, "replica-a")
	if err != nil || n != 2 {
		t.Fatalf("released %d, %v", n, err)
	}
	for id, want := range map[string]string{"s1": "0", "s2": "0", "moved": "1"} {
		if got, _ := redistest.Do(rs.Addr(), "", "HGET", a.Names().Session(id), "online"); got != want {
			t.Errorf("%s online = %s, want %s", id, got, want)
		}
	}
	ttl, _ := redistest.Do(rs.Addr(), "", "PTTL", a.Names().Session("s1"))
	if ms, _ := strconv.Atoi(ttl); ms < 110_000 || ms > 120_000 {
		t.Errorf("an orphaned session's expiry: %s ms, want its expiry (1 minute) plus the margin (1 minute)", ttl)
	}
}

// The index: written with the claim's epoch (an older claim cannot overwrite it), announced,
// scanned, and swept once the session is gone.
func TestDurableSubsIndex(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen []DurableSubsChange
	oa := testOptions(t, "replica-a", rs.Addr())
	oa.OnDurableSubs = func(c DurableSubsChange) { mu.Lock(); seen = append(seen, c); mu.Unlock() }
	a := newBus(t, oa)
	b := newBus(t, testOptions(t, "replica-b", rs.Addr()))
	waitConnected(t, a, b)

	c1, _ := b.ClaimSession(ctx, "dev", false, time.Hour)
	ds := DurableSubs{Inc: c1.Inc, Subs: []DurableSub{{Filter: "cmd/#", QoS: 2, NoLocal: true}, {Filter: "a/+", QoS: 1, RetainAsPublished: true}}}
	seq, ok, err := b.SetDurableSubs(ctx, "dev", c1.Epoch, ds)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	waitFor(t, "notice", 2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 1 })
	mu.Lock()
	got := seen[0]
	mu.Unlock()
	if got.Client != "dev" || got.Origin != "replica-b" || got.Seq != seq || got.Subs == nil || fmt.Sprint(*got.Subs) != fmt.Sprint(ds) {
		t.Fatalf("notice %+v", got)
	}
	c2, _ := a.ClaimSession(ctx, "dev", false, time.Hour)
	if _, ok, _ := a.SetDurableSubs(ctx, "dev", c2.Epoch, DurableSubs{Inc: c2.Inc, Subs: ds.Subs[:1]}); !ok {
		t.Fatal("newer claim refused")
	}
	if _, ok, _ := b.SetDurableSubs(ctx, "dev", c1.Epoch, ds); ok {
		t.Fatal("the older claim overwrote the newer one's entry")
	}
	var scanned []string
	_ = a.ScanDurableSubs(ctx, func(client string, d DurableSubs) { scanned = append(scanned, client+fmt.Sprint(d.Subs)) })
	if fmt.Sprint(scanned) != "[dev[{cmd/# 2 true false}]]" {
		t.Fatalf("scan: %v", scanned)
	}
	// The session is deleted (it expired): the sweep removes its entry and announces it.
	_, _ = redistest.Do(rs.Addr(), "", "DEL", a.Names().Session("dev"))
	n, err := b.SweepDurableSubs(ctx)
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v", n, err)
	}
	waitFor(t, "delete notice", 2*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 3 && seen[len(seen)-1].Subs == nil
	})
}

func FuzzDecodeDurableSubs(f *testing.F) {
	f.Add(EncodeDurableSubs(nil, DurableSubs{Inc: 9, Subs: []DurableSub{{Filter: "a/#", QoS: 1}}}))
	f.Add(wire.AppendDurableSubsChange(nil, DurableSubsChange{Client: "c", Origin: "r", Seq: 3,
		Subs: &DurableSubs{Inc: 1, Subs: []DurableSub{{Filter: "x", QoS: 2, NoLocal: true}}}}))
	f.Fuzz(func(t *testing.T, p []byte) {
		if ds, err := DecodeDurableSubs(p); err == nil {
			if again, err := DecodeDurableSubs(EncodeDurableSubs(nil, ds)); err != nil || fmt.Sprint(again) != fmt.Sprint(ds) {
				t.Fatalf("round trip: %v %v", again, err)
			}
		}
		_, _ = DecodeDurableSubsChange(p)
	})
}
