package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBinDirRemovesThoseOfGoneProcesses: a directory left by a test process that has exited goes;
// one of a live process and anything not named by proctest stay.
func TestBinDirRemovesThoseOfGoneProcesses(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "30")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = live.Process.Kill(); _ = live.Wait() }()
	goneDir := filepath.Join(tmp, fmt.Sprintf("proctest-%d-1", gone.Process.Pid))
	liveDir := filepath.Join(tmp, fmt.Sprintf("proctest-%d-2", live.Process.Pid))
	other := filepath.Join(tmp, "proctest-123")
	for _, d := range []string{goneDir, liveDir, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := binDir()
	if err != nil {
		t.Fatal(err)
	}
	if pid, ok := dirPID(filepath.Base(dir)); !ok || pid != os.Getpid() {
		t.Fatalf("binDir %s: pid %d, %v; want %d", dir, pid, ok, os.Getpid())
	}
	if _, err := os.Stat(goneDir); !os.IsNotExist(err) {
		t.Errorf("%s of an exited process was kept (%v)", goneDir, err)
	}
	for _, d := range []string{liveDir, other, dir} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
}

// FreeAddr never returns one address twice in a process, even when the kernel offers a port again.
func TestFreeAddrNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		a := FreeAddr(t)
		if seen[a] {
			t.Fatalf("FreeAddr returned %s twice", a)
		}
		seen[a] = true
	}
}
