package service

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestRoutes(t *testing.T) {
	var ready atomic.Bool
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "service_test_total", Help: "a test counter"})
	c.Add(3)
	mux := http.NewServeMux()
	Routes(mux, func() (bool, string) { return ready.Load(), "redis down" }, NewRegistry(c))
	h, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.Start(mux)
	defer h.Shutdown(context.Background())
	base := "http://" + h.Addr()

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 \"ok\\n\"", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || body != "redis down\n" {
		t.Errorf("/readyz not ready: %d %q, want 503 \"redis down\\n\"", code, body)
	}
	ready.Store(true)
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz ready: %d %q, want 200 \"ready\\n\"", code, body)
	}
	code, body := get(t, base+"/metrics")
	for _, want := range []string{"service_test_total 3", "go_goroutines", "process_start_time_seconds"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, %q missing", code, want)
		}
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without Pprof: %d, want 404", code)
	}
}

func TestPprof(t *testing.T) {
	mux := http.NewServeMux()
	Pprof(mux)
	h, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.Start(mux)
	defer h.Shutdown(context.Background())
	if code, body := get(t, "http://"+h.Addr()+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d", code)
	}
}

func TestHTTPShutdown(t *testing.T) {
	h, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.Start(http.NotFoundHandler())
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-h.Failed():
		t.Fatalf("a shut down server reports %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := Listen(h.Addr()); err != nil {
		t.Errorf("the address stays taken after Shutdown: %v", err)
	}

	var none *HTTP
	if none.Failed() != nil {
		t.Error("a nil *HTTP has a Failed channel")
	}
	if _, err := Listen("256.0.0.1:0"); err == nil || !strings.HasPrefix(err.Error(), "listen 256.0.0.1:0: ") {
		t.Errorf("Listen on a bad address: %v", err)
	}
}

func TestHTTPFailed(t *testing.T) {
	h, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = h.Close() // the listener fails under the running server
	h.Start(http.NotFoundHandler())
	select {
	case err := <-h.Failed():
		if !strings.HasPrefix(err.Error(), "http server: ") {
			t.Errorf("Failed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error from a server whose listener is closed")
	}
}

func TestSignalContext(t *testing.T) {
	ctx, stop := SignalContext(context.Background())
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
}

func TestWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, nil); err != nil {
		t.Errorf("Wait on a cancelled context: %v", err)
	}
	failed := make(chan error, 1)
	failed <- errors.New("boom")
	if err := Wait(context.Background(), failed); err == nil || err.Error() != "boom" {
		t.Errorf("Wait on a failure: %v", err)
	}
}

func TestHeartbeatsWithoutBus(t *testing.T) {
	select {
	case <-Heartbeats(context.Background(), nil, time.Millisecond, nil):
	default:
		t.Error("without a bus the heartbeats are not done at once")
	}
}

func TestRun(t *testing.T) {
	served := ""
	serve := func(cfg string) error { served = cfg; return nil }
	if err := Run(func() (string, error) { return "", errors.New("BROKER_X: bad") }, serve); err == nil ||
		err.Error() != "config: BROKER_X: bad" || served != "" {
		t.Errorf("a bad configuration: %v, served %q", err, served)
	}
	if err := Run(func() (string, error) { return "cfg", nil }, serve); err != nil || served != "cfg" {
		t.Errorf("a good configuration: %v, served %q", err, served)
	}
}
