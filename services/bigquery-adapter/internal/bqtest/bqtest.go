// Package bqtest runs the local BigQuery emulator (github.com/goccy/bigquery-emulator, built by
// `scripts/deps.sh bq` into the tools cache) as a real process for tests, and puts fault-injecting
// proxies in front of it: HTTP for the REST API (FaultProxy), gRPC for the Storage Write API
// (GRPCFaultProxy).
//
// A test that needs the emulator is skipped, saying so, only when the binary is absent; `make
// test` builds it first, so in CI it is always there.
package bqtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

// Binary returns the emulator binary's path, where scripts/deps.sh puts it:
// $MCLOUDTT_CACHE/bin, else $XDG_CACHE_HOME/mcloudtt/bin, else ~/.cache/mcloudtt/bin. It skips
// the test when the binary is absent.
func Binary(t testing.TB) string {
	t.Helper()
	cache := os.Getenv("MCLOUDTT_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "mcloudtt")
	}
	bin := filepath.Join(cache, "bin", "bigquery-emulator")
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		t.Skipf("bigquery-emulator not built at %s: run scripts/deps.sh bq (make test does)", bin)
	}
	return bin
}

// Emulator is a running emulator.
type Emulator struct {
	Project  string
	Endpoint string // http://127.0.0.1:port
	GRPCAddr string
	cmd      *exec.Cmd
	out      *syncBuffer
}

// Start starts the emulator for project with an in-memory database and waits until it answers.
// It is stopped when the test ends.
func Start(t testing.TB, project string) *Emulator {
	t.Helper()
	bin := Binary(t)
	port, grpcPort := proctest.FreePort(t), proctest.FreePort(t)
	out := &syncBuffer{}
	cmd := exec.Command(bin, "--project="+project, "--host=127.0.0.1", "--port="+strconv.Itoa(port),
		"--grpc-port="+strconv.Itoa(grpcPort), "--log-level=error")
	cmd.Stdout, cmd.Stderr = out, out
	// The emulator keeps its "in-memory" database in a file of the temporary directory (SQLite,
	// up to hundreds of MB) that it never removes once killed: give it the test's own.
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("bqtest: starting %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	e := &Emulator{Project: project, Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port),
		GRPCAddr: fmt.Sprintf("127.0.0.1:%d", grpcPort), cmd: cmd, out: out}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(e.Endpoint + "/bigquery/v2/projects/" + project + "/datasets")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return e
			}
		}
		select {
		case <-done:
			t.Fatalf("bqtest: emulator exited at start:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("bqtest: emulator not answering after 30s (%v):\n%s", err, out.String())
		}
	}
}

// Log returns what the emulator wrote.
func (e *Emulator) Log() string { return e.out.String() }

// Client returns a BigQuery client on the emulator, closed when the test ends.
func (e *Emulator) Client(t testing.TB) *bigquery.Client {
	t.Helper()
	c, err := bigquery.NewClient(context.Background(), e.Project,
		option.WithEndpoint(e.Endpoint), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Query runs sql on the emulator and returns every row.
func (e *Emulator) Query(t testing.TB, sql string) [][]bigquery.Value {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	it, err := e.Client(t).Query(sql).Read(ctx)
	if err != nil {
		t.Fatalf("bqtest: %s: %v", sql, err)
	}
	var out [][]bigquery.Value
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if err == iterator.Done {
			return out
		}
		if err != nil {
			t.Fatalf("bqtest: %s: %v", sql, err)
		}
		out = append(out, row)
	}
}

// FaultProxy forwards HTTP requests to a target and fails a share of them, in two ways:
// before forwarding (503; the target never saw the request), or after forwarding (the target
// applied it, its answer is thrown away and the client gets 502): the case where a client
// cannot know whether its request took effect.
type FaultProxy struct {
	URL    string
	target string
	srv    *http.Server
	client *http.Client

	// Shares of requests failed before and after forwarding, in 1/1000.
	before, after             atomic.Int64
	forcedBefore, forcedAfter atomic.Bool // see rollFault

	Requests, FailedBefore, FailedAfter atomic.Int64
	// Queries counts query jobs asked through the proxy (jobs.query, jobs.insert).
	Queries atomic.Int64
}

// StartFaultProxy starts a proxy to target (an http:// URL) on a free loopback port.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{URL: "http://" + ln.Addr().String(), target: target,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// The fates of a request through a fault proxy.
const (
	faultNone = iota
	faultBefore
	faultAfter
)

// rollFault decides the fate of request number n (from 1) at the shares before and after (in
// 1/1000): at random, except that each kind with a share happens at least once by the request at
// which three of it were expected, so that a run's fault test never passes with a kind it did
// not inject (with 10% shares and 40-odd requests, pure chance left one kind out about one run in
// a hundred). forced* record that a kind was forced or happened.
func rollFault(n, before, after int64, forcedBefore, forcedAfter *atomic.Bool) int {
	switch {
	case before > 0 && !forcedBefore.Load() && n >= 3000/before:
		forcedBefore.Store(true)
		return faultBefore
	case after > 0 && !forcedAfter.Load() && n >= 3000/after:
		forcedAfter.Store(true)
		return faultAfter
	}
	r := rand.Int64N(1000)
	switch {
	case r < before:
		forcedBefore.Store(true)
		return faultBefore
	case r < before+after:
		forcedAfter.Store(true)
		return faultAfter
	}
	return faultNone
}

// SetFaults sets the shares (0 to 1) of requests failed before and after forwarding.
func (p *FaultProxy) SetFaults(before, after float64) {
	p.before.Store(int64(before * 1000))
	p.after.Store(int64(after * 1000))
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.Requests.Add(1)
	if r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/queries") || strings.HasSuffix(r.URL.Path, "/jobs")) {
		p.Queries.Add(1)
	}
	fate := rollFault(p.Requests.Load(), p.before.Load(), p.after.Load(), &p.forcedBefore, &p.forcedAfter)
	if fate == faultBefore {
		p.FailedBefore.Add(1)
		http.Error(w, `{"error":{"code":503,"message":"injected: backend unavailable","errors":[{"reason":"backendError"}]}}`, http.StatusServiceUnavailable)
		return
	}
	// The forwarded request does not end when the client goes away (a SIGKILLed adapter): like
	// BigQuery, the emulator then completes what it received, which is the case the adapter must
	// survive. (It also spares the emulator a cancelled request, which leaves v0.6.6 answering
	// "sql: connection is already closed" to everything after.)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, p.target+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	if r.ContentLength != 0 { // read the whole body first: the client may die while sending
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	res, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if fate == faultAfter {
		p.FailedAfter.Add(1)
		http.Error(w, `{"error":{"code":502,"message":"injected: answer lost","errors":[{"reason":"backendError"}]}}`, http.StatusBadGateway)
		return
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	_, _ = w.Write(body)
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
