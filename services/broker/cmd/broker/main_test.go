package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

func TestStopsCleanlyOnSIGTERM(t *testing.T) {
	bin := proctest.Build(t, ".")
	p := proctest.Start(t, bin, []string{"BROKER_HTTP_ADDR=127.0.0.1:0", "BROKER_LOG_FORMAT=json"})
	if !p.WaitOutput("started", 10*time.Second) {
		t.Fatalf("no start line:\n%s", p.Output())
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, ok := p.Wait(ctx)
	if !ok || code != 0 {
		t.Fatalf("exit code %d (exited %v)\n%s", code, ok, p.Output())
	}
	if !strings.Contains(p.Output(), `"severity":"INFO"`) || !strings.Contains(p.Output(), `"message":"stopped"`) {
		t.Fatalf("expected Cloud Logging JSON lines:\n%s", p.Output())
	}
}

func TestBadConfigNamesTheField(t *testing.T) {
	bin := proctest.Build(t, ".")
	for env, field := range map[string]string{
		"BROKER_LOG_LEVEL=loud":        "BROKER_LOG_LEVEL",
		"BROKER_SHUTDOWN_TIMEOUT=soon": "BROKER_SHUTDOWN_TIMEOUT",
	} {
		p := proctest.Start(t, bin, []string{env})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code, ok := p.Wait(ctx)
		cancel()
		if !ok || code == 0 {
			t.Fatalf("%s: want a non-zero exit, got %d (exited %v)", env, code, ok)
		}
		if !strings.Contains(p.Output(), field) {
			t.Fatalf("%s: error does not name %s:\n%s", env, field, p.Output())
		}
	}
}
