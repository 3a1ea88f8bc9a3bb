package app

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// A replica started before Redis runs, reports not ready, connects when Redis comes up, announces
// itself with heartbeats, turns not ready when Redis goes away and ready again when it is back.
func TestReplicaStartsBeforeRedisAndFollowsIt(t *testing.T) {
	rs := redistest.New(t) // port reserved, not started yet
	cfg := config.Default()
	cfg.ID = "replica-a"
	cfg.MQTTAddr, cfg.HTTPAddr, cfg.SysInterval = "127.0.0.1:0", "127.0.0.1:0", 0
	cfg.RedisAddrs = []string{rs.Addr()}
	cfg.HeartbeatInterval = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, zerolog.Nop(), func(a Addrs) { addrs <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	var a Addrs
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("a replica must start without Redis: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no start")
	}
	readyz := func() int { code, _ := get(t, "http://"+a.HTTP+"/readyz"); return code }
	waitReady := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for readyz() != want {
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never answered %d", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if readyz() != 503 {
		t.Fatal("ready without Redis")
	}
	rs.Start()
	waitReady(200)

	beats := make(chan bus.Heartbeat, 16)
	watcher, err := bus.New(context.Background(), bus.Options{Addrs: []string{rs.Addr()}, ReplicaID: "watcher",
		OnHeartbeat: func(hb bus.Heartbeat) {
			select {
			case beats <- hb:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	select {
	case hb := <-beats:
		if hb.ReplicaID != "replica-a" || hb.Kind != bus.KindBroker || hb.Address != a.MQTT || !hb.Redis.Connected {
			t.Fatalf("heartbeat %+v", hb)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat")
	}

	rs.Stop()
	waitReady(503)
	rs.Start()
	waitReady(200)
}
