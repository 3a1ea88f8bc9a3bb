package procfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	stat := []byte("4242 (my) broker) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 100 0 0\n")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3.25 {
		t.Fatalf("got %v, %v; want 3.25", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1 2")); !errors.Is(err, ErrFormat) {
		t.Fatalf("short stat: %v", err)
	}
}

func TestStatusKB(t *testing.T) {
	status := []byte("Name:\tmosquitto\nVmPeak:\t  20000 kB\nVmHWM:\t    9000 kB\nVmRSS:\t    8123 kB\nThreads:\t1\n")
	if v, err := statusKB(status, "VmRSS"); err != nil || v != 8123 {
		t.Fatalf("VmRSS %d %v", v, err)
	}
	if v, err := statusKB(status, "VmHWM"); err != nil || v != 9000 {
		t.Fatalf("VmHWM %d %v", v, err)
	}
	if _, err := statusKB(status, "VmSwap"); !errors.Is(err, ErrFormat) {
		t.Fatalf("missing key: %v", err)
	}
}

func TestParseHost(t *testing.T) {
	h, err := parseHost([]byte("cpu  100 20 30 5000 7 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	if err != nil || h.Busy != 1.53 || h.Steal != 0.03 {
		t.Fatalf("%+v %v", h, err)
	}
}

func TestReadFixtureAndSelf(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "7", "stat"), []byte("7 (b) S 1 1 1 0 -1 0 0 0 0 0 100 100 0 0 20 0 1 0 1 0 0\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "7", "status"), []byte("VmHWM:\t 10 kB\nVmRSS:\t 5 kB\n"), 0o644)
	old := Root
	Root = dir
	p, err := Read(7)
	Root = old
	if err != nil || p.CPU != 2 || p.RSSKB != 5 || p.HWMKB != 10 {
		t.Fatalf("%+v %v", p, err)
	}
	self, err := Read(os.Getpid())
	if err != nil || self.RSSKB <= 0 || self.HWMKB < self.RSSKB/2 {
		t.Fatalf("self: %+v %v", self, err)
	}
	if _, err := ReadHost(); err != nil {
		t.Fatal(err)
	}
}
