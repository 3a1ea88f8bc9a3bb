package listener

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// subprotocols are the WebSocket subprotocols accepted, in the order the server prefers them:
// "mqtt" is the registered name [MQTT-6.0.0-3] [MQTT-6.0.0-4]; "mqttv3.1" is the older informal
// one that mosquitto, HiveMQ, VerneMQ and RabbitMQ also accept and that old MQTT.js and Paho
// JavaScript clients still send.
var subprotocols = []string{"mqtt", "mqttv3.1"}

// WebSocketOptions configure a MQTT over WebSocket listener. The zero value of every field but
// Addr is usable.
type WebSocketOptions struct {
	// Addr is the TCP address to listen on, such as ":8083" or "127.0.0.1:0".
	Addr string
	// Path is the only URL path that upgrades; every other path answers 404. Default "/mqtt".
	Path string
	// TLS, when set, serves wss:// with these certificates (reloads included); nil serves ws://.
	TLS *Certs
	// MaxMessageSize is the largest WebSocket message accepted from a client, in bytes; a larger
	// one closes the connection with status 1009. Default 0: no limit. Messages are streamed into
	// the MQTT reader, never held whole, so the broker's maximum packet size already bounds
	// memory; set this only to cut off clients earlier.
	MaxMessageSize int64
	// HandshakeTimeout bounds the TLS handshake and reading the HTTP upgrade request, and is how
	// long an upgrade waits for room in the accept queue before it is answered 503. Default 10s.
	HandshakeTimeout time.Duration
	// AcceptQueue is how many upgraded connections may wait for Accept. Default 16.
	AcceptQueue int
	// CheckOrigin decides whether a request's Origin header is acceptable. Default nil: every
	// origin is, as in mosquitto and EMQX. MQTT authenticates in CONNECT, not with cookies, but a
	// deployment that authenticates browsers with client certificates should check origins, since
	// a browser presents its certificate to any page's WebSocket.
	CheckOrigin func(r *http.Request) bool
	// TrustedProxies are the peers whose X-Forwarded-For header is believed. Default empty: never,
	// and RemoteAddr is the TCP peer. When the TCP peer is in one of these prefixes, RemoteAddr is
	// the right-most X-Forwarded-For address that is not itself a trusted proxy (port 0).
	TrustedProxies []netip.Prefix
	// ErrorLog receives the HTTP server's own errors (failed TLS handshakes, malformed requests).
	// Default nil: they are discarded, since port scanners make them noise.
	ErrorLog *log.Logger
}

// ListenWebSocket listens on o.Addr and returns a listener whose Accept yields one net.Conn per
// upgraded MQTT WebSocket connection. See WebSocket.
func ListenWebSocket(o WebSocketOptions) (net.Listener, error) {
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, err
	}
	return WebSocket(ln, o), nil
}

// WebSocket serves MQTT over WebSocket on ln (o.Addr is ignored) and returns a listener whose
// Accept yields one net.Conn per upgraded connection. An HTTP server upgrades GET requests on
// o.Path that offer the subprotocol "mqtt" or "mqttv3.1"; other paths get 404, requests on the path that are not
// WebSocket upgrades 426, and upgrades that offer none of the subprotocols 400 (a client that
// got a 101 without its subprotocol would fail the connection anyway, RFC 6455 4.1, and a 400
// with a reason is easier to debug; EMQX refuses such requests too by default).
//
// Each connection carries the MQTT byte stream in binary messages: Read reads across message
// and frame boundaries [MQTT-6.0.0-2], every Write is sent as one binary message, and a text
// message closes the connection with status 1003 [MQTT-6.0.0-1].
//
// Upgraded connections wait for Accept in a queue of o.AcceptQueue; while it is full, new
// upgrades wait up to o.HandshakeTimeout for room and are then answered 503 with Retry-After, so
// a broker that falls behind holds at most the queue plus the upgrades in flight. Close stops the
// HTTP server, closes the connections still queued, and makes Accept return net.ErrClosed.
func WebSocket(ln net.Listener, o WebSocketOptions) net.Listener {
	if o.Path == "" {
		o.Path = "/mqtt"
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.AcceptQueue <= 0 {
		o.AcceptQueue = 16
	}
	if o.CheckOrigin == nil {
		o.CheckOrigin = func(*http.Request) bool { return true }
	}
	if o.ErrorLog == nil {
		o.ErrorLog = log.New(io.Discard, "", 0)
	}
	if o.TLS != nil {
		// HTTP/1.1 only: the upgrade needs a connection to take over, which HTTP/2 does not give.
		ln = tls.NewListener(ln, o.TLS.config([]string{"http/1.1"}))
	}
	l := &wsListener{
		ln:        ln,
		opts:      o,
		slots:     make(chan struct{}, o.AcceptQueue),
		conns:     make(chan *wsConn, o.AcceptQueue),
		done:      make(chan struct{}),
		serveDone: make(chan struct{}),
	}
	l.upgrader = websocket.Upgrader{
		HandshakeTimeout: o.HandshakeTimeout,
		CheckOrigin:      o.CheckOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: o.HandshakeTimeout, // also bounds the TLS handshake (net/http)
		IdleTimeout:       o.HandshakeTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          o.ErrorLog,
	}
	go func() {
		defer close(l.serveDone)
		l.serveErr = l.srv.Serve(ln)
	}()
	return l
}

// wsListener is the net.Listener returned by WebSocket; it is also the HTTP handler.
type wsListener struct {
	ln       net.Listener
	opts     WebSocketOptions
	srv      *http.Server
	upgrader websocket.Upgrader

	// slots holds one token per upgrade admitted to conns, taken before upgrading and given back
	// by Accept, so a send on conns never blocks.
	slots     chan struct{}
	conns     chan *wsConn
	done      chan struct{} // closed by Close
	serveDone chan struct{} // closed when srv.Serve returned; serveErr is then set
	serveErr  error

	// mu orders queueing against Close, so no connection is queued after Close drained the queue.
	mu        sync.Mutex
	closed    bool
	closeOnce sync.Once
}

func (l *wsListener) Addr() net.Addr { return l.ln.Addr() }

func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, l.closedErr()
	default:
	}
	select {
	case c := <-l.conns:
		<-l.slots
		select {
		case <-l.done:
			// Close raced with this Accept; the connection must not outlive the listener.
			_ = c.Close()
			return nil, l.closedErr()
		default:
		}
		return c, nil
	case <-l.done:
		return nil, l.closedErr()
	case <-l.serveDone:
		// The HTTP server stopped on its own (a permanent accept error): report why.
		select {
		case <-l.done:
			return nil, l.closedErr()
		default:
		}
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: l.serveErr}
	}
}

func (l *wsListener) closedErr() error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
}

// Close stops accepting, closes the connections waiting for Accept and returns once the HTTP
// server has stopped. Connections already accepted are the caller's and stay open.
func (l *wsListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.done)
		l.mu.Unlock()
		err = l.srv.Close()
		for {
			select {
			case c := <-l.conns:
				<-l.slots
				_ = c.Close()
				continue
			default:
			}
			break
		}
		<-l.serveDone
	})
	return err
}

func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != l.opts.Path {
		http.NotFound(w, r)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "MQTT over WebSocket: send a WebSocket upgrade request", http.StatusUpgradeRequired)
		return
	}
	proto := selectSubprotocol(websocket.Subprotocols(r))
	if proto == "" {
		http.Error(w, `MQTT over WebSocket needs the subprotocol "mqtt" (or "mqttv3.1") in Sec-WebSocket-Protocol`, http.StatusBadRequest)
		return
	}
	// Hold a place in the accept queue before upgrading, so a full queue can still be answered
	// in HTTP.
	t := time.NewTimer(l.opts.HandshakeTimeout)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
	case <-t.C:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "MQTT broker busy", http.StatusServiceUnavailable)
		return
	case <-l.done:
		http.Error(w, "MQTT listener closed", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		return
	}
	up := l.upgrader
	up.Subprotocols = []string{proto}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		<-l.slots // Upgrade has answered the client
		return
	}
	ws.SetReadLimit(l.opts.MaxMessageSize)
	c := newWSConn(ws, clientAddr(r, ws.RemoteAddr(), l.opts.TrustedProxies))
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.slots
		_ = c.Close()
		return
	}
	l.conns <- c // never blocks: this upgrade holds a slot
	l.mu.Unlock()
}

// selectSubprotocol picks the server's most preferred of the offered subprotocols, "" if none.
func selectSubprotocol(offered []string) string {
	for _, p := range subprotocols {
		for _, o := range offered {
			if o == p {
				return p
			}
		}
	}
	return ""
}

// clientAddr is the address a connection is reported from: the TCP peer unless that peer is a
// trusted proxy, in which case the right-most X-Forwarded-For hop that is not a trusted proxy.
// Hops to the left of an untrusted one could have been written by anybody, so they are not read.
func clientAddr(r *http.Request, peer net.Addr, trusted []netip.Prefix) net.Addr {
	if len(trusted) == 0 {
		return peer
	}
	ap, err := netip.ParseAddrPort(peer.String())
	if err != nil || !isTrusted(ap.Addr(), trusted) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		ip = ip.Unmap()
		addr = &net.TCPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
		if !isTrusted(ip, trusted) {
			break
		}
	}
	return addr
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	ip = ip.Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
