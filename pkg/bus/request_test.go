package bus

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// A request reaches the replica's handler and its answer comes back; the takeover notices on the
// same channel still reach OnControl; a handler's error arrives as a RemoteError; a replica
// that does not answer costs the caller its context's time and no more; one that is gone fails
// at once.
func TestRequestReply(t *testing.T) {
	rs := redistest.Start(t)
	control := make(chan []byte, 1)
	release := make(chan struct{})
	o := testOptions(t, "r1", rs.Addr())
	o.OnControl = func(p []byte) { control <- p }
	o.OnRequest = func(ctx context.Context, op string, body []byte) (any, error) {
		switch op {
		case "echo":
			var s string
			_ = json.Unmarshal(body, &s)
			return map[string]string{"said": s}, nil
		case "slow":
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		}
		return nil, errors.New(wire.ErrTextUnknownOp)
	}
	r1 := newBus(t, o)
	gw := newBus(t, testOptions(t, "gw", rs.Addr()))
	waitConnected(t, r1, gw)
	ctx := context.Background()

	raw, err := gw.Request(ctx, "r1", "echo", "hello")
	if err != nil || string(raw) != `{"said":"hello"}` {
		t.Fatalf("echo: %s, %v", raw, err)
	}
	if err := gw.PublishControl(ctx, "r1", []byte("T1gw\x00dev")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-control:
		if string(p) != "T1gw\x00dev" {
			t.Fatalf("OnControl got %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a takeover notice did not reach OnControl")
	}
	_, err = gw.Request(ctx, "r1", "nope", nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Replica != "r1" || re.Text != wire.ErrTextUnknownOp || !errors.Is(err, ErrRefused) {
		t.Fatalf("unknown op: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, err = gw.Request(tctx, "r1", "slow", nil)
	cancel()
	close(release)
	if !errors.Is(err, ErrNoReply) || time.Since(start) > 2*time.Second {
		t.Fatalf("slow replica: %v after %s", err, time.Since(start))
	}
	if _, err := gw.Request(ctx, "r9", "echo", "x"); !errors.Is(err, ErrNoReceiver) {
		t.Fatalf("absent replica: %v", err)
	}
	answers := gw.RequestAll(ctx, []string{"r1", "r9"}, "echo", "all")
	if answers[0].Err != nil || string(answers[0].Body) != `{"said":"all"}` || !errors.Is(answers[1].Err, ErrNoReceiver) {
		t.Fatalf("RequestAll: %+v", answers)
	}
}

// Bans are kept in Redis, replaced by kind and value, lifted, and leave by themselves when they end.
func TestBans(t *testing.T) {
	rs := redistest.Start(t)
	b := newBus(t, testOptions(t, "gw", rs.Addr()))
	ctx := context.Background()
	now := time.Now()
	for _, ban := range []wire.Ban{
		{Kind: wire.BanClientID, Value: "dev-1", Until: now.Add(time.Hour), By: "admin"},
		{Kind: wire.BanAddress, Value: "10.1.2.3/8", Until: now.Add(time.Hour)},
		{Kind: wire.BanUsername, Value: "mallory", Until: now.Add(300 * time.Millisecond)},
		{Kind: wire.BanClientID, Value: "dev-1", Until: now.Add(2 * time.Hour), Reason: "again"},
	} {
		if err := b.AddBan(ctx, ban); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AddBan(ctx, wire.Ban{Kind: "ip", Value: "x", Until: now.Add(time.Hour)}); err == nil {
		t.Fatal("a ban of an unknown kind was stored")
	}
	if err := b.AddBan(ctx, wire.Ban{Kind: wire.BanClientID, Value: "x", Until: now.Add(-time.Second)}); err == nil {
		t.Fatal("a ban that already ended was stored")
	}
	bans, err := b.Bans(ctx)
	if err != nil || len(bans) != 3 {
		t.Fatalf("bans %+v, %v", bans, err)
	}
	if bans[0].Key() != "address:10.0.0.0/8" || bans[1].Key() != "client_id:dev-1" || bans[1].Reason != "again" {
		t.Fatalf("bans %+v", bans)
	}
	if !bans[0].Matches("", "", "10.200.0.1:5555") || bans[0].Matches("", "", "11.0.0.1:1") {
		t.Fatal("address prefix matching")
	}
	time.Sleep(400 * time.Millisecond)
	if bans, _ = b.Bans(ctx); len(bans) != 2 {
		t.Fatalf("after the user ban ended: %+v", bans)
	}
	if n, _ := b.Client().HLen(ctx, b.Names().Bans()).Result(); n != 2 {
		t.Fatalf("ended ban still in Redis: %d entries", n)
	}
	if found, err := b.RemoveBan(ctx, wire.BanAddress, "10.9.9.9/8"); !found || err != nil {
		t.Fatalf("lift by an unnormalised prefix: %v %v", found, err)
	}
	if found, _ := b.RemoveBan(ctx, wire.BanAddress, "10.0.0.0/8"); found {
		t.Fatal("lifted twice")
	}
	ttl, err := b.Client().PTTL(ctx, b.Names().Bans()).Result()
	if err != nil || ttl <= time.Hour || ttl > 2*time.Hour {
		t.Fatalf("the bans key lives %s (%v), want until the last ban ends", ttl, err)
	}
}
