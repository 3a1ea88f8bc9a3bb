package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startWS serves MQTT over WebSocket on a loopback port until the test ends.
func startWS(t *testing.T, o WebSocketOptions) (*wsListener, string) {
	t.Helper()
	o.Addr = "127.0.0.1:0"
	ln, err := ListenWebSocket(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	scheme := "ws"
	if o.TLS != nil {
		scheme = "wss"
	}
	return ln.(*wsListener), scheme + "://" + ln.Addr().String() + "/mqtt"
}

// acceptWS accepts one connection, failing the test if none comes within 5 s.
func acceptWS(t *testing.T, ln net.Listener) *wsConn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("accept: %v", err)
			c = nil
		}
		ch <- c
	}()
	select {
	case c := <-ch:
		if c == nil {
			t.FailNow()
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c.(*wsConn)
	case <-time.After(5 * time.Second):
		t.Fatal("nothing accepted")
		return nil
	}
}

func dialWS(t *testing.T, url string, d *websocket.Dialer, h http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{Subprotocols: []string{"mqtt"}}
	}
	d.HandshakeTimeout = 5 * time.Second
	c, resp, err := d.Dial(url, h)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", url, err, resp)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return c, resp
}

func TestWebSocketStream(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{})
	// A tiny write buffer makes the client split its messages into many frames.
	cli, resp := dialWS(t, url, &websocket.Dialer{Subprotocols: []string{"mqtt"}, WriteBufferSize: 7}, nil)
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" || cli.Subprotocol() != "mqtt" {
		t.Fatalf("subprotocol %q", got)
	}
	srv := acceptWS(t, ln)
	if srv.Subprotocol() != "mqtt" {
		t.Fatalf("server side subprotocol %q", srv.Subprotocol())
	}

	// Client to server: messages of many sizes come out as one stream.
	var want bytes.Buffer
	go func() {
		for i := range 50 {
			msg := bytes.Repeat([]byte{byte(i)}, i*37+1)
			if err := cli.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				t.Errorf("client write: %v", err)
				return
			}
		}
	}()
	for i := range 50 {
		want.Write(bytes.Repeat([]byte{byte(i)}, i*37+1))
	}
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(srv, got); err != nil {
		t.Fatalf("server read: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("stream read by the server differs from what the client sent")
	}

	// Server to client: each Write is one binary message.
	for _, m := range []string{"abc", "defg", strings.Repeat("x", 100_000)} {
		if n, err := srv.Write([]byte(m)); err != nil || n != len(m) {
			t.Fatalf("server write: %d, %v", n, err)
		}
		typ, p, err := cli.ReadMessage()
		if err != nil || typ != websocket.BinaryMessage || string(p) != m {
			t.Fatalf("client read: type %d, %d bytes, %v", typ, len(p), err)
		}
	}
	if n, err := srv.Write(nil); n != 0 || err != nil {
		t.Fatalf("empty write: %d, %v", n, err)
	}
}

// rawUpgrade upgrades a bare TCP connection by hand, for tests that need exact frames.
func rawUpgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(c, "GET /mqtt HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
		addr, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return c, br
}

// clientFrame is one masked client frame with a payload under 126 bytes.
func clientFrame(fin bool, op byte, payload string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	mask := []byte{0x12, 0x34, 0x56, 0x78}
	f := append([]byte{b0, 0x80 | byte(len(payload))}, mask...)
	for i := range len(payload) {
		f = append(f, payload[i]^mask[i%4])
	}
	return f
}

// MQTT packets may be split anywhere across frames and messages [MQTT-6.0.0-2]; control frames
// may come between the fragments of a message.
func TestWebSocketFrameBoundaries(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{})
	c, br := rawUpgrade(t, strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/mqtt"))
	srv := acceptWS(t, ln)
	var frames []byte
	frames = append(frames, clientFrame(false, 0x2, "he")...)  // binary, more to come
	frames = append(frames, clientFrame(true, 0x9, "p")...)    // ping in the middle
	frames = append(frames, clientFrame(false, 0x0, "ll")...)  // continuation
	frames = append(frames, clientFrame(true, 0x0, "o")...)    // last continuation
	frames = append(frames, clientFrame(true, 0x2, "")...)     // empty message
	frames = append(frames, clientFrame(true, 0x2, " wo")...)  // another message
	frames = append(frames, clientFrame(true, 0x2, "rld!")...) // and another
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	// Read one byte at a time: nothing may depend on reading whole messages.
	var got []byte
	one := make([]byte, 1)
	for len(got) < len("hello world!") {
		n, err := srv.Read(one)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, one[:n]...)
	}
	if string(got) != "hello world!" {
		t.Fatalf("read %q", got)
	}
	// The ping was answered.
	hdr := make([]byte, 3)
	if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != 0x8A || hdr[1] != 1 || hdr[2] != 'p' {
		t.Fatalf("pong % x, %v", hdr, err)
	}
}

func TestWebSocketHandshakeAnswers(t *testing.T) {
	_, url := startWS(t, WebSocketOptions{})
	base := strings.TrimSuffix(url, "/mqtt")
	for _, tc := range []struct {
		name   string
		url    string
		protos []string
		status int    // for refusals
		chosen string // for upgrades
	}{
		{"wrong path", base + "/other", []string{"mqtt"}, http.StatusNotFound, ""},
		{"root path", base + "/", []string{"mqtt"}, http.StatusNotFound, ""},
		{"no subprotocol", url, nil, http.StatusBadRequest, ""},
		{"other subprotocol", url, []string{"wamp"}, http.StatusBadRequest, ""},
		{"mqtt", url, []string{"mqtt"}, 0, "mqtt"},
		{"mqttv3.1", url, []string{"mqttv3.1"}, 0, "mqttv3.1"},
		{"both, mqtt preferred", url, []string{"mqttv3.1", "mqtt"}, 0, "mqtt"},
		{"among others", url, []string{"wamp", "mqtt"}, 0, "mqtt"},
	} {
		d := &websocket.Dialer{Subprotocols: tc.protos, HandshakeTimeout: 5 * time.Second}
		c, resp, err := d.Dial(tc.url, nil)
		if tc.status != 0 {
			if err == nil || resp == nil || resp.StatusCode != tc.status {
				t.Errorf("%s: %v, %v; want status %d", tc.name, resp, err, tc.status)
			}
			if c != nil {
				c.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if c.Subprotocol() != tc.chosen {
			t.Errorf("%s: subprotocol %q, want %q", tc.name, c.Subprotocol(), tc.chosen)
		}
		c.Close()
	}
	// A plain GET on the path is told to upgrade.
	resp, err := http.Get(strings.Replace(url, "ws://", "http://", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("plain GET: %s, Upgrade %q", resp.Status, resp.Header.Get("Upgrade"))
	}
}

func TestWebSocketTextMessageCloses(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{})
	cli, _ := dialWS(t, url, nil, nil)
	srv := acceptWS(t, ln)
	if err := cli.WriteMessage(websocket.TextMessage, []byte("CONNECT")); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Read(make([]byte, 10)); !errors.Is(err, errNotBinary) {
		t.Fatalf("read of a text message: %v", err)
	}
	_, _, err := cli.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseUnsupportedData) {
		t.Fatalf("client got %v; want close 1003", err)
	}
}

func TestWebSocketMaxMessageSize(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{MaxMessageSize: 10})
	cli, _ := dialWS(t, url, nil, nil)
	srv := acceptWS(t, ln)
	_ = cli.WriteMessage(websocket.BinaryMessage, []byte("0123456789"))
	_ = cli.WriteMessage(websocket.BinaryMessage, []byte("0123456789A"))
	got := make([]byte, 10)
	if _, err := io.ReadFull(srv, got); err != nil || string(got) != "0123456789" {
		t.Fatalf("message at the limit: %q, %v", got, err)
	}
	if n, err := srv.Read(got); err == nil {
		t.Fatalf("message over the limit read: %d bytes", n)
	}
	if _, _, err := cli.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("client got %v; want close 1009", err)
	}
}

func TestWebSocketPeerClose(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{})
	t.Run("close frame", func(t *testing.T) {
		cli, _ := dialWS(t, url, nil, nil)
		srv := acceptWS(t, ln)
		_ = cli.WriteMessage(websocket.BinaryMessage, []byte{0xE0, 0})
		_ = cli.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		b, err := io.ReadAll(srv)
		if err != nil || !bytes.Equal(b, []byte{0xE0, 0}) {
			t.Fatalf("read %x, %v; want the DISCONNECT, then EOF", b, err)
		}
	})
	t.Run("TCP close", func(t *testing.T) {
		cli, _ := dialWS(t, url, nil, nil)
		srv := acceptWS(t, ln)
		cli.NetConn().Close()
		if _, err := srv.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read %v; want EOF", err)
		}
	})
	t.Run("server close", func(t *testing.T) {
		cli, _ := dialWS(t, url, nil, nil)
		srv := acceptWS(t, ln)
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cli.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Fatalf("client got %v; want close 1000", err)
		}
		if _, err := srv.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v", err)
		}
		if _, err := srv.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after Close: %v", err)
		}
		if err := srv.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

func TestWebSocketDeadlines(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{})
	t.Run("read", func(t *testing.T) {
		cli, _ := dialWS(t, url, nil, nil)
		srv := acceptWS(t, ln)
		_ = srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		_, err := srv.Read(make([]byte, 1))
		if !isTimeout(err) {
			t.Fatalf("read: %v; want a timeout", err)
		}
		if d := time.Since(start); d < 40*time.Millisecond || d > 3*time.Second {
			t.Fatalf("timed out after %v", d)
		}
		// Writing still works, so the broker can still say DISCONNECT after a keep-alive timeout.
		if _, err := srv.Write([]byte{0xE0, 1, 0x8D}); err != nil {
			t.Fatalf("write after a read timeout: %v", err)
		}
		if _, p, err := cli.ReadMessage(); err != nil || !bytes.Equal(p, []byte{0xE0, 1, 0x8D}) {
			t.Fatalf("client read %x, %v", p, err)
		}
	})
	t.Run("read deadline cleared", func(t *testing.T) {
		cli, _ := dialWS(t, url, nil, nil)
		srv := acceptWS(t, ln)
		_ = srv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_ = srv.SetReadDeadline(time.Time{})
		go func() {
			time.Sleep(60 * time.Millisecond)
			_ = cli.WriteMessage(websocket.BinaryMessage, []byte("late"))
		}()
		p := make([]byte, 4)
		if _, err := io.ReadFull(srv, p); err != nil || string(p) != "late" {
			t.Fatalf("read %q, %v", p, err)
		}
	})
	t.Run("write", func(t *testing.T) {
		dialWS(t, url, nil, nil) // a client that never reads
		srv := acceptWS(t, ln)
		_ = srv.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		chunk := make([]byte, 1<<20)
		var err error
		for i := 0; i < 256 && err == nil; i++ {
			_, err = srv.Write(chunk)
		}
		if !isTimeout(err) {
			t.Fatalf("write to a client that does not read: %v; want a timeout", err)
		}
	})
	t.Run("close unblocks write", func(t *testing.T) {
		dialWS(t, url, nil, nil)
		srv := acceptWS(t, ln)
		_ = srv.SetWriteDeadline(time.Time{})
		errc := make(chan error, 1)
		go func() {
			chunk := make([]byte, 1<<20)
			for {
				if _, err := srv.Write(chunk); err != nil {
					errc <- err
					return
				}
			}
		}()
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		_ = srv.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked write ended with %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock the write")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Close with a blocked write took %v", d)
		}
	})
}

func TestWebSocketConcurrentWriters(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{})
	cli, _ := dialWS(t, url, nil, nil)
	srv := acceptWS(t, ln)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := srv.Write(bytes.Repeat([]byte{byte(g)}, 64)); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	for range 400 {
		_, p, err := cli.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 64 || !bytes.Equal(p, bytes.Repeat(p[:1], 64)) {
			t.Fatalf("message interleaved with another: %x", p)
		}
	}
	wg.Wait()
}

func TestWebSocketClose(t *testing.T) {
	t.Run("unblocks Accept", func(t *testing.T) {
		ln, url := startWS(t, WebSocketOptions{})
		errc := make(chan error, 1)
		go func() {
			_, err := ln.Accept()
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept: %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Accept still blocked after Close")
		}
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
		if c, _, err := websocket.DefaultDialer.Dial(url, nil); err == nil {
			c.Close()
			t.Fatal("dial succeeded after Close")
		}
		if err := ln.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("closes queued connections", func(t *testing.T) {
		ln, url := startWS(t, WebSocketOptions{})
		a, _ := dialWS(t, url, nil, nil)
		b, _ := dialWS(t, url, nil, nil)
		waitQueued(t, ln, 2)
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*websocket.Conn{a, b} {
			if _, _, err := c.ReadMessage(); err == nil {
				t.Fatal("queued connection still open after Close")
			}
		}
	})
}

func waitQueued(t *testing.T, ln *wsListener, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(ln.conns) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections queued, want %d", len(ln.conns), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A broker that does not Accept makes new upgrades wait, then answers them 503.
func TestWebSocketBackpressure(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{AcceptQueue: 1, HandshakeTimeout: 200 * time.Millisecond})
	first, _ := dialWS(t, url, nil, nil)
	waitQueued(t, ln, 1)
	d := &websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	start := time.Now()
	c, resp, err := d.Dial(url, nil)
	if err == nil {
		c.Close()
		t.Fatal("upgrade past a full queue")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past a full queue: %v, %v; want 503 with Retry-After", resp, err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("refused after %v, before waiting for room", el)
	}
	srv := acceptWS(t, ln)
	if _, err := srv.Write([]byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := first.ReadMessage(); err != nil || string(p) != "1" {
		t.Fatalf("first client: %q, %v", p, err)
	}
	// Room again: the next client gets in, and a client waiting for room when it frees up too.
	dialWS(t, url, nil, nil)
	done := make(chan error, 1)
	go func() {
		c, _, err := d.Dial(url, nil)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	acceptWS(t, ln)
	if err := <-done; err != nil {
		t.Fatalf("client that waited for room: %v", err)
	}
}

func TestWebSocketRemoteAddr(t *testing.T) {
	xff := http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.7"}}
	t.Run("not trusted by default", func(t *testing.T) {
		ln, url := startWS(t, WebSocketOptions{})
		cli, _ := dialWS(t, url, nil, xff)
		srv := acceptWS(t, ln)
		if got, want := srv.RemoteAddr().String(), cli.NetConn().LocalAddr().String(); got != want {
			t.Fatalf("RemoteAddr %s, want the TCP peer %s", got, want)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		ln, url := startWS(t, WebSocketOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		dialWS(t, url, nil, xff)
		srv := acceptWS(t, ln)
		if got := srv.RemoteAddr().String(); got != "203.0.113.7:0" {
			t.Fatalf("RemoteAddr %s, want the right-most untrusted hop", got)
		}
	})
}

func TestClientAddr(t *testing.T) {
	peer := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 4000}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24")}
	for _, tc := range []struct {
		trusted []netip.Prefix
		xff     []string
		want    string
	}{
		{nil, []string{"203.0.113.7"}, "10.0.0.2:4000"},
		{trusted, nil, "10.0.0.2:4000"},
		{trusted, []string{"203.0.113.7"}, "203.0.113.7:0"},
		{trusted, []string{"203.0.113.7, 192.0.2.9"}, "203.0.113.7:0"},                                    // skip a trusted hop
		{trusted, []string{"6.6.6.6, 203.0.113.7"}, "203.0.113.7:0"},                                      // spoofed left part ignored
		{trusted, []string{"6.6.6.6", "203.0.113.7"}, "203.0.113.7:0"},                                    // several headers
		{trusted, []string{"garbage, 203.0.113.7"}, "203.0.113.7:0"},                                      // garbage left of it
		{trusted, []string{"203.0.113.7, garbage"}, "10.0.0.2:4000"},                                      // garbage right of it
		{trusted, []string{"192.0.2.1, 192.0.2.2"}, "192.0.2.1:0"},                                        // all trusted
		{trusted, []string{"2001:db8::1"}, "[2001:db8::1]:0"},                                             // IPv6
		{[]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, []string{"203.0.113.7"}, "10.0.0.2:4000"}, // peer not trusted
	} {
		r := &http.Request{Header: http.Header{}}
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientAddr(r, peer, tc.trusted).String(); got != tc.want {
			t.Errorf("trusted %v, X-Forwarded-For %q: %s, want %s", tc.trusted, tc.xff, got, tc.want)
		}
	}
}

func TestWebSocketTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	o := serverFiles(t, dir, ca, 1)
	certs, err := LoadCerts(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, url := startWS(t, WebSocketOptions{TLS: certs})
	dial := func(cert ...tls.Certificate) (*websocket.Conn, *wsConn) {
		t.Helper()
		cfg := clientConfig(ca, cert...)
		cfg.NextProtos = []string{"h2", "http/1.1"} // as browsers offer: the server must pick HTTP/1.1
		cli, _ := dialWS(t, url, &websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: cfg}, nil)
		if _, ok := cli.NetConn().(*tls.Conn); !ok {
			t.Fatal("wss client connection without TLS")
		}
		return cli, acceptWS(t, ln)
	}

	cli, srv := dial(ca.clientCert(t, "browser-7"))
	if err := cli.WriteMessage(websocket.BinaryMessage, []byte{0x10, 0}); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 2)
	if _, err := io.ReadFull(srv, p); err != nil || !bytes.Equal(p, []byte{0x10, 0}) {
		t.Fatalf("server read %x, %v", p, err)
	}
	if _, err := srv.Write([]byte{0x20, 2, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if _, m, err := cli.ReadMessage(); err != nil || !bytes.Equal(m, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("client read %x, %v", m, err)
	}
	if cn, ok := PeerCommonName(srv); !ok || cn != "browser-7" {
		t.Fatalf("PeerCommonName over wss = %q, %v", cn, ok)
	}
	tc, ok := UnwrapTLS(srv)
	if !ok {
		t.Fatal("UnwrapTLS found no TLS under wss")
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("ALPN %q, want http/1.1", p)
	}
	// A certificate is optional here; without one there is no name.
	_, srv = dial()
	if _, ok := PeerCommonName(srv); ok {
		t.Fatal("PeerCommonName true for a wss client without a certificate")
	}
	// Reloads reach wss handshakes too.
	serverFiles(t, dir, ca, 2)
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	cli, _ = dial()
	if got := cli.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 2 {
		t.Fatalf("serial %d after Reload, want 2", got)
	}

	// Plain ws has no TLS underneath.
	pln, purl := startWS(t, WebSocketOptions{})
	dialWS(t, purl, nil, nil)
	if _, ok := PeerCommonName(acceptWS(t, pln)); ok {
		t.Fatal("PeerCommonName true over plain ws")
	}
}

// The listener hands over as soon as Close is called even with upgrades in flight.
func TestWebSocketCloseWithSlowUpgrade(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{HandshakeTimeout: 5 * time.Second})
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/mqtt")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /mqtt HTTP/1.1\r\nHost: x\r\n") // and never finishes the request
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = ln.Close(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Close waited for a client that never finished its request")
	}
}

// With an allow-list, an upgrade from a page on another origin is refused with 403 before any
// MQTT byte flows; listed origins, subdomains of a wildcard entry and clients without an Origin
// header (not browsers) are accepted.
func TestWebSocketOriginAllowList(t *testing.T) {
	check, err := OriginAllowList([]string{"https://app.example.com", "http://localhost:8080", "https://*.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	ln, url := startWS(t, WebSocketOptions{CheckOrigin: check})
	for _, c := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example.com", true},
		{"HTTPS://APP.Example.COM", true},
		{"http://localhost:8080", true},
		{"https://eu.example.org", true},
		{"https://a.b.example.org", true},
		{"", true},
		{"https://evil.example.net", false},
		{"http://app.example.com", false},
		{"https://app.example.com:8443", false},
		{"http://localhost:8081", false},
		{"https://example.org", false},
		{"https://notexample.org", false},
		{"null", false},
	} {
		h := http.Header{}
		if c.origin != "" {
			h.Set("Origin", c.origin)
		}
		d := &websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
		conn, resp, err := d.Dial(url, h)
		if c.ok {
			if err != nil {
				t.Errorf("origin %q refused: %v", c.origin, err)
				continue
			}
			acceptWS(t, ln)
			_ = conn.Close()
			continue
		}
		if err == nil {
			_ = conn.Close()
			t.Errorf("origin %q accepted", c.origin)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: %v, response %v; want 403", c.origin, err, resp)
		}
	}
	for _, bad := range []string{"example.com", "ftp://x", "https://x/path", "https://a.*.example.com", "https://*", "https://u@x"} {
		if _, err := OriginAllowList([]string{bad}); err == nil {
			t.Errorf("entry %q accepted", bad)
		}
	}
}
