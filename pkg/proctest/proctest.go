// Package proctest builds a service's command once per test binary and runs it as a real process,
// so tests see exactly what an operator sees: environment in, log lines and exit status out.
package proctest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Build compiles the main package pkg (an import path or a directory) and returns the binary's path.
// Binaries are cached per test process.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	dir, err := binDir()
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(pkg)
	if abs, err := filepath.Abs(pkg); err == nil && !strings.Contains(pkg, ".com/") {
		name = filepath.Base(abs)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin
}

// binDir returns this test process's directory for built binaries, proctest-<pid>-* in the
// temporary directory. A test binary has no hook after its last test, so the directory outlives
// the process; each process removes those of processes that are gone (a few dozen megabytes each,
// hundreds of them after a day of test runs).
func binDir() (string, error) {
	tmp := os.TempDir()
	if old, _ := filepath.Glob(filepath.Join(tmp, "proctest-*")); len(old) > 0 {
		for _, d := range old {
			pid, ok := dirPID(filepath.Base(d))
			if ok && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
				_ = os.RemoveAll(d)
			}
		}
	}
	return os.MkdirTemp(tmp, fmt.Sprintf("proctest-%d-", os.Getpid()))
}

// dirPID reads the process id from a directory name proctest-<pid>-<random>.
func dirPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "proctest-")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// Proc is a running command whose combined output is captured.
type Proc struct {
	Cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Start runs bin with env added to a minimal environment. The process is killed when the test ends.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{done: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p.Cmd.Stdout = lockedWriter{p}
	p.Cmd.Stderr = lockedWriter{p}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
	})
	return p
}

// Output returns what the process wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitOutput waits until the output contains s or the timeout passes.
func (p *Proc) WaitOutput(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Output(), s) {
			return true
		}
		select {
		case <-p.done:
			return strings.Contains(p.Output(), s)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits for the process to exit and returns its exit code, or -1 and false on timeout.
func (p *Proc) Wait(ctx context.Context) (int, bool) {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), true
	case <-ctx.Done():
		return -1, false
	}
}

// CheckCommandLine runs bin with --help (exit 0, the usage on stdout naming each of want) and
// with arguments it must refuse (exit 2, the usage on stderr), each without any environment: a
// service that ignored its arguments would start serving instead, and the run would time out.
func CheckCommandLine(t *testing.T, bin string, want ...string) {
	t.Helper()
	run := func(args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("%s %q did not return within 10s (it served?)\n%s", bin, args, errb.String())
		}
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	out, _, code := run("--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, w := range append([]string{"Usage:"}, want...) {
		if !strings.Contains(out, w) {
			t.Errorf("--help does not mention %q:\n%s", w, out)
		}
	}
	for _, args := range [][]string{{"serve"}, {"--port", "1884"}, {"-x"}} {
		_, errs, code := run(args...)
		if code != 2 || !strings.Contains(errs, "unknown") || !strings.Contains(errs, "Usage:") {
			t.Errorf("%q: exit %d, stderr:\n%s", args, code, errs)
		}
	}
}
