package listener

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// closeFrameTimeout bounds sending the close frame in Close, so closing a connection to a client
// that stopped reading costs at most this long.
const closeFrameTimeout = time.Second

var errNotBinary = errors.New("listener: WebSocket text message; MQTT travels in binary messages [MQTT-6.0.0-1]")

// wsConn is an upgraded MQTT WebSocket connection seen as a net.Conn carrying the MQTT stream.
//
// Deadlines are those of the TCP (or TLS) connection underneath, so an expired one fails Read or
// Write with an error that wraps os.ErrDeadlineExceeded and whose Timeout() is true, as on TCP.
// Unlike TCP, a read that times out ends reading on the connection for good (the WebSocket frame
// state is lost), and so does a write that times out for writing. Reading and writing are
// independent though: after the broker's keep-alive read timeout it can still send DISCONNECT.
type wsConn struct {
	ws     *websocket.Conn
	raw    net.Conn // the connection taken over from the HTTP server: TCP, or *tls.Conn for wss
	remote net.Addr

	// readMu serializes Read and guards everything that follows, up to writeMu.
	readMu  sync.Mutex
	msg     io.Reader // the message being read; nil between messages
	readErr error     // sticky: after any read error the connection cannot be read again

	// writeMu serializes Write and the close frame.
	writeMu sync.Mutex

	// dlMu guards writeDeadline, which is kept here because the library applies its own write
	// deadline to the socket at every frame.
	dlMu          sync.Mutex
	writeDeadline time.Time

	closed    atomic.Bool
	closeOnce sync.Once
}

var _ net.Conn = (*wsConn)(nil)

func newWSConn(ws *websocket.Conn, remote net.Addr) *wsConn {
	return &wsConn{ws: ws, raw: ws.NetConn(), remote: remote}
}

// Read reads the MQTT byte stream: the payloads of the binary messages one after the other,
// whatever their message and frame boundaries [MQTT-6.0.0-2].
func (c *wsConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for c.readErr == nil {
		if c.msg == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				c.readErr = c.readError(err)
				break
			}
			if typ != websocket.BinaryMessage {
				c.readErr = c.opErr("read", errNotBinary)
				_ = c.closeWith(websocket.CloseUnsupportedData, "MQTT needs binary messages")
				break
			}
			c.msg = r
		}
		n, err := c.msg.Read(p)
		if err == io.EOF {
			c.msg, err = nil, nil
		}
		if err != nil {
			c.readErr = c.readError(err)
		}
		if n > 0 {
			return n, nil // the error, if any, is returned by the next Read
		}
	}
	return 0, c.readErr
}

// readError turns a library read error into what net.Conn users expect.
func (c *wsConn) readError(err error) error {
	if c.closed.Load() {
		return c.opErr("read", net.ErrClosed)
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived,
			websocket.CloseAbnormalClosure: // the TCP connection ended without a close frame
			return io.EOF
		}
		return c.opErr("read", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return c.opErr("read", os.ErrDeadlineExceeded)
	}
	return c.opErr("read", err)
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closed.Load() {
		return 0, c.opErr("write", net.ErrClosed)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.dlMu.Lock()
	dl := c.writeDeadline
	c.dlMu.Unlock()
	_ = c.ws.SetWriteDeadline(dl)
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		if c.closed.Load() {
			return 0, c.opErr("write", net.ErrClosed)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, c.opErr("write", os.ErrDeadlineExceeded)
		}
		return 0, c.opErr("write", err)
	}
	return len(p), nil
}

// Close sends a close frame (status 1000) unless a write is stuck, then closes the connection.
func (c *wsConn) Close() error {
	return c.closeWith(websocket.CloseNormalClosure, "")
}

func (c *wsConn) closeWith(code int, text string) error {
	err := c.opErr("close", net.ErrClosed)
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		// The close frame tells the client the close was deliberate. A write that is blocked
		// holds writeMu; then closing the socket, which unblocks it, is all there is to do.
		if c.writeMu.TryLock() {
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text),
				time.Now().Add(closeFrameTimeout))
			c.writeMu.Unlock()
		}
		err = c.ws.Close()
	})
	return err
}

func (c *wsConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "websocket", Source: c.raw.LocalAddr(), Addr: c.remote, Err: err}
}

// LocalAddr is the listener's address the client connected to.
func (c *wsConn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr is the TCP peer, or the client behind a trusted proxy (WebSocketOptions.TrustedProxies).
func (c *wsConn) RemoteAddr() net.Addr { return c.remote }

func (c *wsConn) SetDeadline(t time.Time) error {
	_ = c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline applies to the next Write, and to a Write in progress as far as it can: the
// library resets the socket's deadline when it starts each frame.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.writeDeadline = t
	c.dlMu.Unlock()
	return c.raw.SetWriteDeadline(t)
}

// NetConn is the connection under the WebSocket (a *tls.Conn for wss), for UnwrapTLS and
// PeerCommonName. Reading or writing it would corrupt the WebSocket stream.
func (c *wsConn) NetConn() net.Conn { return c.raw }

// Subprotocol is the WebSocket subprotocol agreed on: "mqtt" or "mqttv3.1".
func (c *wsConn) Subprotocol() string { return c.ws.Subprotocol() }
