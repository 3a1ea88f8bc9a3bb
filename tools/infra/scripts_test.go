package infra

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// coldEnv is an environment with empty Go module and build caches, an empty tool cache and an
// empty HOME under dir, as on a machine that has never seen the project.
func coldEnv(dir string, extra ...string) []string {
	for _, d := range []string{"home", "gomodcache", "gocache", "toolcache"} {
		_ = os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"GOMODCACHE=" + filepath.Join(dir, "gomodcache"),
		"GOCACHE=" + filepath.Join(dir, "gocache"),
		"MCLOUDTT_CACHE=" + filepath.Join(dir, "toolcache"),
		"GOFLAGS=-modcacherw",
	}
	for _, k := range []string{"GOPROXY", "GONOSUMDB", "GOPRIVATE", "GOSUMDB", "GOTOOLCHAIN"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}

// The download-and-patch step of `scripts/deps.sh bq` on empty caches: the module is downloaded
// first, and the patched copy is exactly the module plus the patches (reversing them gives the
// module back, file for file). An earlier version asked go list for the module's directory before
// it was downloaded, got "", and copied the root filesystem.
func TestDepsPatchedSourcesColdCache(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("patch"); err != nil {
		t.Fatal("patch is not installed: scripts/deps.sh bq installs it (make test runs it first)")
	}
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "scripts/deps.sh"), "bq-sources")
	cmd.Env = coldEnv(dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deps.sh bq-sources on empty caches: %v\n%s", err, out)
	}
	patches, _ := filepath.Glob(filepath.Join(root, "tools/bqemulator/*.patch"))
	if len(patches) == 0 {
		t.Fatal("no patches in tools/bqemulator")
	}
	// Several patches may change one module: the copy minus all of them is the module.
	var mods []string
	byMod := map[string][]string{}
	for _, p := range patches {
		text, _ := os.ReadFile(p)
		mod := strings.TrimPrefix(strings.SplitN(string(text), "\n", 2)[0], "# module: ")
		if byMod[mod] == nil {
			mods = append(mods, mod)
		}
		byMod[mod] = append(byMod[mod], p)
	}
	for _, mod := range mods {
		// Where the module landed in the empty module cache.
		dl := exec.Command("go", "mod", "download", "-json", mod)
		dl.Dir = filepath.Join(root, "tools/bqemulator")
		dl.Env = coldEnv(dir, "GOWORK=off")
		js, err := dl.Output()
		if err != nil {
			t.Fatalf("go mod download %s: %v", mod, err)
		}
		var info struct{ Dir string }
		if err := json.Unmarshal(js, &info); err != nil || !strings.HasPrefix(info.Dir, filepath.Join(dir, "gomodcache")) {
			t.Fatalf("module %s not in the test's empty module cache: %q (%v)", mod, info.Dir, err)
		}
		copyDir := filepath.Join(dir, "toolcache/patched/bigquery-emulator/src", mod)
		gomod, _ := os.ReadFile(filepath.Join(dir, "toolcache/patched/bigquery-emulator/go.mod"))
		if !strings.Contains(string(gomod), "replace "+mod+" => "+copyDir) {
			t.Errorf("the patched go.mod does not replace %s with the copy:\n%s", mod, gomod)
		}
		// Reverse the patches, last first, on a second copy: it must give the module back exactly.
		rev := filepath.Join(dir, "reversed", mod)
		if out, err := exec.Command("mkdir", "-p", filepath.Dir(rev)).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		if out, err := exec.Command("cp", "-r", copyDir, rev).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		ps := byMod[mod]
		for i := len(ps) - 1; i >= 0; i-- {
			p := ps[i]
			text, _ := os.ReadFile(p)
			if bytes.Equal(mustRead(t, filepath.Join(copyDir, firstPatchedFile(t, string(text)))),
				mustRead(t, filepath.Join(info.Dir, firstPatchedFile(t, string(text))))) {
				t.Errorf("%s: the copy's %s equals the module's: the patch was not applied", filepath.Base(p), firstPatchedFile(t, string(text)))
			}
			pr := exec.Command("patch", "-R", "-s", "-p1", "--no-backup-if-mismatch", "-d", rev, "-i", p)
			if out, err := pr.CombinedOutput(); err != nil {
				t.Fatalf("reversing %s: %v\n%s", filepath.Base(p), err, out)
			}
		}
		if diff := compareTrees(t, info.Dir, rev); diff != "" {
			t.Errorf("the patched copy minus its %d patches differs from module %s: %s", len(ps), mod, diff)
		}
	}

	// Without the module proxy the step fails with a message naming the module, and copies
	// nothing.
	off := t.TempDir()
	cmd = exec.Command(filepath.Join(root, "scripts/deps.sh"), "bq-sources")
	cmd.Env = coldEnv(off, "GOPROXY=off")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "go mod download github.com/goccy/bigquery-emulator") {
		t.Fatalf("with GOPROXY=off: err %v, output:\n%s", err, out)
	}
	if entries, _ := os.ReadDir(filepath.Join(off, "toolcache/patched/bigquery-emulator/src")); len(entries) > 0 {
		t.Errorf("something was copied although the download failed: %v", entries)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// firstPatchedFile is the path (relative to the module) of the first file a unified diff changes.
func firstPatchedFile(t *testing.T, diff string) string {
	t.Helper()
	for _, l := range strings.Split(diff, "\n") {
		if strings.HasPrefix(l, "+++ ") {
			f := strings.Fields(strings.TrimPrefix(l, "+++ "))[0]
			return f[strings.Index(f, "/")+1:]
		}
	}
	t.Fatal("no +++ line in the patch")
	return ""
}

// compareTrees returns "" when a and b hold the same files with the same contents.
func compareTrees(t *testing.T, a, b string) string {
	t.Helper()
	files := func(root string) map[string][]byte {
		m := map[string][]byte{}
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			m[rel], _ = os.ReadFile(p)
			return nil
		})
		return m
	}
	fa, fb := files(a), files(b)
	var diffs []string
	for f, ca := range fa {
		cb, ok := fb[f]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+f)
		case !bytes.Equal(ca, cb):
			diffs = append(diffs, "differs "+f)
		}
	}
	for f := range fb {
		if _, ok := fa[f]; !ok {
			diffs = append(diffs, "extra "+f)
		}
	}
	if len(fa) == 0 {
		diffs = append(diffs, "the module has no files")
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return strings.Join(diffs, ", ")
}

// runLocalPorts gives each of run-local.sh's port variables a distinct free port: the
// listeners stay open until all are chosen, so the kernel cannot hand one port out twice.
func runLocalPorts(t *testing.T) map[string]string {
	t.Helper()
	ports := map[string]string{}
	for _, k := range []string{"REDIS_PORT", "BROKER1_PORT", "BROKER1_HTTP", "BROKER2_PORT", "BROKER2_HTTP",
		"GATEWAY_PORT", "ADAPTER_HTTP", "BQ_PORT", "BQ_GRPC_PORT"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[k] = fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// syncBuf is a bytes.Buffer for a process's output read while it runs.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// `make run`'s script on free ports, with the emulator's build replaced by a stand-in that takes
// a while and then puts the real emulator in place: MQTT across the two replicas works while the
// "build" runs, the emulator and the adapter start once it is done, and SIGINT (Ctrl-C) leaves no
// process behind.
func TestRunLocalStartsMQTTBeforeTheEmulator(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"redis-server", "mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Fatalf("%s not installed: scripts/deps.sh base installs it (make test runs it first)", c)
		}
	}
	emulator := filepath.Join(toolCache(), "bin", "bigquery-emulator")
	if _, err := os.Stat(emulator); err != nil {
		t.Skipf("SKIPPED: bigquery-emulator not built at %s: run scripts/deps.sh bq (make test does)", emulator)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./services/broker/cmd/broker",
		"./services/bigquery-adapter/cmd/bigquery-adapter", "./services/health-gateway/cmd/health-gateway")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cache := filepath.Join(dir, "toolcache")
	const buildSecs = 20
	standIn := filepath.Join(dir, "slow-build.sh")
	script := fmt.Sprintf("#!/bin/sh\necho 'stand-in build: sleeping'\nsleep %d\nmkdir -p %s/bin && ln -s %s %s/bin/bigquery-emulator\necho done\n",
		buildSecs, cache, emulator, cache)
	if err := os.WriteFile(standIn, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var mark [8]byte
	_, _ = rand.Read(mark[:])
	marker := "MCLOUDTT_RUN_TEST=" + hex.EncodeToString(mark[:])
	ports := runLocalPorts(t)
	env := []string{marker, "PATH=" + os.Getenv("PATH"), "HOME=" + dir, "BIN=" + bin, "MCLOUDTT_CACHE=" + cache,
		"MCLOUDTT_BQ_BUILD=" + standIn, "RUN_PROGRESS_EVERY=2", "MCLOUDTT_RUN_DIR=" + filepath.Join(dir, "state")}
	for k, v := range ports {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(filepath.Join(root, "scripts/run-local.sh"))
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for _, p := range processesWith(marker) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})

	// MQTT across the replicas within 60 s, while the stand-in build still runs.
	deadline := started.Add(60 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner within 60 s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "being built in the background") {
		t.Errorf("the banner does not say the emulator is still being built:\n%s", out.String())
	}
	delivered := false
	for !delivered && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		sub := exec.CommandContext(ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", ports["BROKER2_PORT"], "-t", "demo/#", "-C", "1", "-W", "4", "-v")
		var got bytes.Buffer
		sub.Stdout = &got
		if err := sub.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // subscribed, and the route announced
		pub := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", ports["BROKER1_PORT"], "-t", "demo/hello", "-m", "hi from broker-1", "-q", "1")
		if b, err := pub.CombinedOutput(); err != nil {
			t.Logf("mosquitto_pub: %v %s", err, b)
		}
		_ = sub.Wait()
		cancel()
		delivered = strings.Contains(got.String(), "demo/hello hi from broker-1")
	}
	if !delivered {
		t.Fatalf("no message from broker-1 to a subscriber on broker-2 within 60 s:\n%s", out.String())
	}
	took := time.Since(started)
	t.Logf("MQTT across the two replicas worked %v after the start", took.Round(time.Millisecond))
	if took >= buildSecs*time.Second {
		t.Fatalf("MQTT worked only after %v, when the stand-in build had finished", took)
	}
	// A progress line every RUN_PROGRESS_EVERY (2 s) while the stand-in build runs: MQTT may work
	// before the first one is due.
	for !strings.Contains(out.String(), "bigquery-emulator still building") && time.Since(started) < buildSecs*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "bigquery-emulator still building") {
		t.Errorf("no progress line while the emulator builds:\n%s", out.String())
	}

	// The adapter starts once the emulator is there, and gets ready (table made in the emulator).
	deadline = time.Now().Add(buildSecs*time.Second + 90*time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + ports["ADAPTER_HTTP"] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the adapter never got ready after the stand-in build:\n%s", out.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("adapter ready %v after the start", time.Since(started).Round(time.Millisecond))
	if !strings.Contains(out.String(), "bigquery-adapter started") {
		t.Errorf("the script did not say the adapter started:\n%s", out.String())
	}

	// Ctrl-C: everything stops, nothing is left.
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("run-local.sh still runs 30 s after SIGINT:\n%s", out.String())
	}
	if left := processesWith(marker); len(left) > 0 {
		var names []string
		for _, p := range left {
			c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			names = append(names, fmt.Sprintf("%d %s", p, bytes.ReplaceAll(c, []byte{0}, []byte{' '})))
		}
		t.Fatalf("processes left after SIGINT:\n%s", strings.Join(names, "\n"))
	}
}

// A SIGINT while the emulator is still being built stops the build (and whatever it started) too.
func TestRunLocalCtrlCStopsTheBuild(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not installed: scripts/deps.sh base installs it (make test runs it first)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./services/broker/cmd/broker", "./services/health-gateway/cmd/health-gateway")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The stand-in "build" starts a child of its own, as go build starts compilers.
	standIn := filepath.Join(dir, "build.sh")
	_ = os.WriteFile(standIn, []byte("#!/bin/sh\nsleep 300 &\nwait\n"), 0o755)
	var mark [8]byte
	_, _ = rand.Read(mark[:])
	marker := "MCLOUDTT_RUN_TEST=" + hex.EncodeToString(mark[:])
	env := []string{marker, "PATH=" + os.Getenv("PATH"), "HOME=" + dir, "BIN=" + bin, "MCLOUDTT_CACHE=" + filepath.Join(dir, "cache"),
		"MCLOUDTT_BQ_BUILD=" + standIn, "MCLOUDTT_RUN_DIR=" + filepath.Join(dir, "state")}
	for k, v := range runLocalPorts(t) {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(filepath.Join(root, "scripts/run-local.sh"))
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		for _, p := range processesWith(marker) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner within 60 s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(processesWith(marker)); n < 6 {
		t.Fatalf("expected redis, two brokers, the gateway and the build running, found %d processes", n)
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("run-local.sh still runs 30 s after SIGINT:\n%s", out.String())
	}
	if left := processesWith(marker); len(left) > 0 {
		t.Fatalf("%d processes left after SIGINT (the build's child among them?)", len(left))
	}
}

// processesWith lists the processes whose environment holds the entry marker (KEY=value): every
// process the script started, however deep, inherits it.
func processesWith(marker string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == marker {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// toolCache is scripts/deps.sh's cache directory.
func toolCache() string {
	if c := os.Getenv("MCLOUDTT_CACHE"); c != "" {
		return c
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "mcloudtt")
	}
	h, _ := os.UserHomeDir()
	return filepath.Join(h, ".cache", "mcloudtt")
}
