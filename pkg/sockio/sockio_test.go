package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection, wrapped.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	client, server = Wrap(c), Wrap(s)
	t.Cleanup(func() { client.Close(); server.Close() })
	if _, ok := client.(*Conn); !ok {
		t.Fatalf("Wrap(%T) = %T", c, client)
	}
	return client, server
}

// The raw calls themselves; race-detector builds never reach them through Conn.
func TestRawCalls(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := uintptr(fds[0]), uintptr(fds[1])
	defer syscall.Close(fds[0])
	buf := make([]byte, 16)
	if n, e := rawRead(a, buf); e != syscall.EAGAIN {
		t.Fatalf("read of an empty socket: %d, %v; want EAGAIN", n, e)
	}
	if n, e := rawWrite(b, []byte("hello")); n != 5 || e != 0 {
		t.Fatalf("write: %d, %v", n, e)
	}
	if n, e := rawRead(a, buf); n != 5 || e != 0 || string(buf[:5]) != "hello" {
		t.Fatalf("read: %d, %v, %q", n, e, buf[:n])
	}
	syscall.Close(fds[1])
	if n, e := rawRead(a, buf); n != 0 || e != 0 {
		t.Fatalf("read after the peer closed: %d, %v; want 0 (EOF)", n, e)
	}
	if _, e := rawWrite(a, []byte("x")); e != syscall.EPIPE {
		t.Fatalf("write after the peer closed: %v; want EPIPE", e)
	}
}

func TestReadWrite(t *testing.T) {
	c, s := pair(t)
	msg := bytes.Repeat([]byte("0123456789"), 100_000) // more than the socket buffers hold
	errc := make(chan error, 1)
	go func() {
		n, err := c.Write(msg) // waits for room while the reader drains
		if err == nil && n != len(msg) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("data differs")
	}
	c.Close()
	if n, err := s.Read(got); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want io.EOF", n, err)
	}
}

func TestTryWriteNeverWaits(t *testing.T) {
	c, s := pair(t)
	tw := c.(*Conn)
	chunk := make([]byte, 1<<20)
	total := 0
	for {
		n, err := tw.TryWrite(chunk)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n < len(chunk) {
			break // the socket is full: TryWrite returned instead of waiting
		}
		if total > 1<<30 {
			t.Fatal("socket never filled")
		}
	}
	if n, err := tw.TryWrite(chunk); n != 0 || err != nil {
		t.Fatalf("TryWrite on a full socket: %d, %v; want 0, nil", n, err)
	}
	got, err := io.ReadAll(io.LimitReader(s, int64(total)))
	if err != nil || len(got) != total {
		t.Fatalf("read back %d of %d: %v", len(got), total, err)
	}
}

func TestDeadlineAndClose(t *testing.T) {
	c, s := pair(t)
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := s.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v; want a timeout", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := s.Read(make([]byte, 8)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read blocked during Close: %v; want net.ErrClosed", err)
	}
	c.Close()
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a non-TCP connection")
	}
}
