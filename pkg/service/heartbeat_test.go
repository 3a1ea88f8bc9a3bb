package service

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

func newBus(t *testing.T, addr, id string, onBeat func(bus.Heartbeat)) *bus.Bus {
	t.Helper()
	b, err := bus.New(context.Background(), bus.Options{Addrs: []string{addr}, ReplicaID: id,
		Logger: zerolog.New(zerolog.NewTestWriter(t)), OnHeartbeat: onBeat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for !b.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatalf("%s not connected to Redis", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return b
}

// TestHeartbeats: the loop sends next's heartbeat every interval, and its channel is closed once
// the context ends.
func TestHeartbeats(t *testing.T) {
	s := redistest.Start(t)
	beats := make(chan bus.Heartbeat, 64)
	newBus(t, s.Addr(), "watcher", func(hb bus.Heartbeat) { beats <- hb })
	b := newBus(t, s.Addr(), "adapter-1", nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := Heartbeats(ctx, b, 20*time.Millisecond, func(_ context.Context, now time.Time) bus.Heartbeat {
		return bus.Heartbeat{Kind: bus.KindAdapter, Version: "test", Sent: now}
	})
	for n := 0; n < 2; {
		select {
		case hb := <-beats:
			if hb.ReplicaID == "adapter-1" && hb.Kind == bus.KindAdapter && hb.Version == "test" {
				n++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d heartbeats received, want 2", n)
		}
	}
	select {
	case <-done:
		t.Fatal("the heartbeats stopped before the context ended")
	default:
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the heartbeats go on after the context ended")
	}
}
