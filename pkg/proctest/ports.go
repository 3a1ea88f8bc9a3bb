package proctest

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago and that no earlier call
// in this test process returned. The kernel may hand a port that was just closed out again to the
// next bind, so two addresses taken one after the other can be equal; a process given the same
// address for two listeners then fails to start.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			_ = ln.Close()
		}
	}()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("proctest: no free port: %v", err)
		}
		held = append(held, ln) // a repeat stays bound so the next Listen gets another port
		port := ln.Addr().(*net.TCPAddr).Port
		if !given[port] {
			given[port] = true
			return port
		}
	}
	t.Fatal("proctest: every free port offered was given out before")
	return 0
}
