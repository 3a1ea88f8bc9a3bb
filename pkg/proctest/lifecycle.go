package proctest

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CheckStopsOnSIGTERM runs the service binary bin with env, waits for a log line containing
// "started", sends SIGTERM and checks that it exits 0 after logging "stopped" as Cloud Logging JSON.
func CheckStopsOnSIGTERM(t *testing.T, bin string, env ...string) {
	t.Helper()
	p := Start(t, bin, env)
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

// CheckBadConfigNamesField runs bin once per entry of cases (an environment assignment and the
// variable name the error must mention) and checks that each run fails at start naming it.
func CheckBadConfigNamesField(t *testing.T, bin string, cases map[string]string) {
	t.Helper()
	for env, field := range cases {
		p := Start(t, bin, []string{env})
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
