package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/metricstest"
)

func startApp(t *testing.T) (Addrs, context.CancelFunc, chan error) {
	t.Helper()
	cfg := config.Default()
	cfg.MQTTAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, zerolog.Nop(), func(a Addrs) { addrs <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addrs:
		return a, cancel, done
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("broker did not start")
	}
	return Addrs{}, nil, nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	return metricstest.Scrape(t, addr)
}

// value returns the value of the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	return metricstest.Value(t, fams, name, want...)
}

func TestHealthReadyAndMetricsMatchTraffic(t *testing.T) {
	a, _, _ := startApp(t)
	if code, _ := get(t, "http://"+a.HTTP+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, _ := get(t, "http://"+a.HTTP+"/readyz"); code != 200 {
		t.Fatalf("/readyz %d", code)
	}
	connect := func(id string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + a.MQTT).SetClientID(id).SetAutoReconnect(false))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		return c
	}
	sub, pub := connect("sub"), connect("pub")
	got := make(chan struct{}, 10)
	if tok := sub.Subscribe("m/#", 1, func(paho.Client, paho.Message) { got <- struct{}{} }); !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("subscribe")
	}
	for i := 0; i < 3; i++ {
		pub.Publish("m/q1", 1, false, fmt.Sprint(i)).WaitTimeout(5 * time.Second)
	}
	for i := 0; i < 2; i++ {
		pub.Publish("m/q0", 0, false, "x").WaitTimeout(5 * time.Second)
	}
	for i := 0; i < 5; i++ {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("messages not delivered")
		}
	}
	// The subscriber acknowledges after its handler returns, so the last PUBACKs may still be on
	// their way: wait for them (inflight 0) before comparing.
	fams := scrape(t, a.HTTP)
	for end := time.Now().Add(5 * time.Second); value(t, fams, "mcloudtt_broker_inflight_messages") != 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		fams = scrape(t, a.HTTP)
	}
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"mcloudtt_broker_messages_received_total", []string{"qos", "1"}, 3},
		{"mcloudtt_broker_messages_received_total", []string{"qos", "0"}, 2},
		{"mcloudtt_broker_messages_sent_total", []string{"qos", "1"}, 3},
		{"mcloudtt_broker_messages_sent_total", []string{"qos", "0"}, 2},
		{"mcloudtt_broker_clients_connected", nil, 2},
		{"mcloudtt_broker_connects_total", nil, 2},
		{"mcloudtt_broker_subscriptions", nil, 1},
		{"mcloudtt_broker_sessions", nil, 2},
		{"mcloudtt_broker_inflight_messages", nil, 0},
		{"mcloudtt_broker_messages_dropped_total", []string{"cause", "queue_full"}, 0},
	}
	for _, c := range checks {
		if v := value(t, fams, c.name, c.labels...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	pub.Disconnect(100)
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams = scrape(t, a.HTTP)
		if value(t, fams, "mcloudtt_broker_disconnects_total", "reason", "normal") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("normal disconnect not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := value(t, fams, "mcloudtt_broker_clients_connected"); v != 1 {
		t.Errorf("clients after disconnect %v", v)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	a, _, _ := startApp(t)
	if code, _ := get(t, "http://"+a.HTTP+"/debug/pprof/"); code != 404 {
		t.Fatalf("pprof served without BROKER_PPROF: %d", code)
	}
}
