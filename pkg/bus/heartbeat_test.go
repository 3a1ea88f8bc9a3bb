package bus

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

func TestHeartbeat(t *testing.T) {
	s := redistest.Start(t)
	beats := make(chan Heartbeat, 16)
	ow := testOptions(t, "gw-1", s.Addr())
	ow.OnHeartbeat = func(hb Heartbeat) { beats <- hb }
	watcher := newBus(t, ow)
	b1 := newBus(t, testOptions(t, "r1", s.Addr()))
	adapter := newBus(t, testOptions(t, "adapter-1", s.Addr()))
	waitConnected(t, watcher, b1, adapter)
	ctx := context.Background()

	started := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	sent := Heartbeat{
		Kind: KindBroker, Version: "1.2.3", Address: "10.0.0.7:1883", Started: started,
		Clients: 42, MsgsInRate: 1500.5, MsgsOutRate: 3001, Extra: map[string]any{"zone": "a", "n": 1.0},
	}
	if err := b1.PublishHeartbeat(ctx, sent); err != nil {
		t.Fatal(err)
	}
	if err := adapter.PublishHeartbeat(ctx, Heartbeat{Kind: KindAdapter, Version: "1.2.3"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]Heartbeat{}
	for len(got) < 2 {
		select {
		case hb := <-beats:
			got[hb.ReplicaID] = hb
		case <-time.After(3 * time.Second):
			t.Fatalf("heartbeats received: %v", got)
		}
	}
	hb := got["r1"]
	if hb.Kind != KindBroker || hb.Version != "1.2.3" || hb.Address != sent.Address || !hb.Started.Equal(started) ||
		hb.Clients != 42 || hb.MsgsInRate != 1500.5 || hb.MsgsOutRate != 3001 || !reflect.DeepEqual(hb.Extra, sent.Extra) {
		t.Fatalf("heartbeat %+v", hb)
	}
	if hb.Uptime < time.Minute || hb.Sent.IsZero() || !hb.Redis.Connected {
		t.Fatalf("filled-in fields: uptime %v, sent %v, redis %+v", hb.Uptime, hb.Sent, hb.Redis)
	}

	// Brokers are in the replica set; the adapter is not.
	rs, err := watcher.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].ID != "r1" || time.Since(rs[0].LastSeen) > 5*time.Second {
		t.Fatalf("replicas %+v", rs)
	}

	for _, bad := range []string{"", "{", `{"kind":"broker"}`, "null"} {
		if _, err := DecodeHeartbeat([]byte(bad)); err == nil {
			t.Errorf("DecodeHeartbeat(%q) accepted", bad)
		}
	}
}

func TestHeartbeatWhileDown(t *testing.T) {
	s := redistest.New(t)
	b := newBus(t, testOptions(t, "r1", s.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.PublishHeartbeat(ctx, Heartbeat{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("heartbeat without Redis: %v", err)
	}
}

// RunHeartbeats sends what next makes on every tick, and stops with its context.
func TestRunHeartbeats(t *testing.T) {
	s := redistest.Start(t)
	beats := make(chan Heartbeat, 64)
	ow := testOptions(t, "gw-1", s.Addr())
	ow.OnHeartbeat = func(hb Heartbeat) { beats <- hb }
	watcher := newBus(t, ow)
	b := newBus(t, testOptions(t, "gw-2", s.Addr()))
	waitConnected(t, watcher, b)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := 0
	go func() {
		defer close(done)
		b.RunHeartbeats(ctx, 20*time.Millisecond, func(_ context.Context, now time.Time) Heartbeat {
			n++
			return Heartbeat{Kind: KindGateway, Sent: now, Extra: map[string]any{"n": float64(n)}}
		})
	}()
	for want := 1.0; want <= 3; want++ {
		select {
		case hb := <-beats:
			if hb.ReplicaID != "gw-2" || hb.Kind != KindGateway || hb.Extra["n"] != want {
				t.Fatalf("heartbeat %+v, want n=%v from gw-2", hb, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("heartbeat %v not received", want)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("RunHeartbeats did not return when its context ended")
	}
}
