package bus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
)

// subConn is one subscription connection, spoken in RESP2 by the bus itself (see the package
// comment for why not go-redis' PubSub). Only the commands a subscriber needs exist: AUTH,
// CLIENT SETNAME, SUBSCRIBE or SSUBSCRIBE, and PING.
//
// Reads go through deadlineReader, which pushes the read deadline HealthTimeout ahead before
// every read from the socket: "nothing arrived for HealthTimeout" is exactly a read timeout, and a
// large payload that keeps arriving never trips it.
type subConn struct {
	nc      net.Conn
	dr      *deadlineReader
	r       *bufio.Reader
	maxRecv int

	wmu sync.Mutex // serializes writes: the handshake, then the pinger
	// kind and channel of the last push; they alias these arrays, so no allocation per push.
	kindBuf [16]byte
	chanBuf [512]byte
}

// pushKind says what a subscribed connection received.
type pushKind int

const (
	pushMessage     pushKind = iota + 1 // message or smessage: channel and payload set
	pushPong                            // reply to our PING
	pushSubscribe                       // subscribe or ssubscribe confirmation
	pushUnsubscribe                     // unsubscribe or sunsubscribe: Redis dropped a channel
	pushDiscarded                       // a message whose payload exceeded maxRecv; skipped
)

// errProtocol marks a reply this code cannot parse: the connection is dropped.
var errProtocol = errors.New("bus: redis protocol error")

// redisError is an error reply ("-ERR ...", "-MOVED ...", "-NOAUTH ...").
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

// deadlineReader sets the read deadline before each read: timeout from now, or until when set.
type deadlineReader struct {
	nc      net.Conn
	timeout time.Duration
	until   time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	dl := d.until
	if dl.IsZero() {
		dl = time.Now().Add(d.timeout)
	}
	if err := d.nc.SetReadDeadline(dl); err != nil {
		return 0, err
	}
	return d.nc.Read(p)
}

var pingCmd = appendCommand(nil, "PING")

// appendCommand appends a RESP array of bulk strings.
func appendCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// subSpec is what a subscription connection does once connected.
type subSpec struct {
	addr     string
	conn     *redisconn.Connector // dials (TCP or TLS) and supplies the credentials
	name     string               // CLIENT SETNAME
	sharded  bool
	channels []string
}

// dialSub connects (TCP, then TLS if configured: never one for the other), authenticates, names
// the connection and subscribes, all within o.HealthTimeout (after the dial and the TLS handshake,
// which have DialTimeout each), and waits for every confirmation. An error that comes from the
// security set-up (a wrong password, an untrusted certificate, a TLS-only Redis spoken to in plain
// text) says so first (redisconn.Cause).
func dialSub(ctx context.Context, s subSpec, o *Options) (*subConn, error) {
	user, password, err := s.conn.Credentials(ctx)
	if err != nil {
		return nil, s.conn.Explain(err)
	}
	nc, err := s.conn.Dial(ctx, "tcp", s.addr)
	if err != nil {
		return nil, s.conn.Explain(err)
	}
	c := &subConn{nc: nc, dr: &deadlineReader{nc: nc, timeout: o.HealthTimeout}, maxRecv: o.MaxReceiveBytes}
	c.r = bufio.NewReaderSize(c.dr, 64<<10)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if err := c.handshake(s, user, password, o); err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, s.conn.Explain(err)
	}
	return c, nil
}

func (c *subConn) handshake(s subSpec, user, password string, o *Options) error {
	var cmd []byte
	auth := user != "" || password != ""
	switch {
	case user != "":
		cmd = appendCommand(cmd, "AUTH", user, password)
	case password != "":
		cmd = appendCommand(cmd, "AUTH", password)
	}
	cmd = appendCommand(cmd, "CLIENT", "SETNAME", s.name)
	verb := "SUBSCRIBE"
	if s.sharded {
		verb = "SSUBSCRIBE"
	}
	cmd = appendCommand(cmd, append([]string{verb}, s.channels...)...)
	if err := c.write(cmd, o.WriteTimeout); err != nil {
		return err
	}
	// The whole exchange must finish within HealthTimeout, whatever trickles in.
	c.dr.until = time.Now().Add(o.HealthTimeout)
	defer func() { c.dr.until = time.Time{} }()
	replies := 1
	if auth {
		replies = 2
	}
	for i := 0; i < replies; i++ {
		if err := c.readOK(); err != nil {
			if i == 0 && auth {
				return fmt.Errorf("AUTH: %w", err)
			}
			return fmt.Errorf("CLIENT SETNAME: %w", err)
		}
	}
	for confirmed := 0; confirmed < len(s.channels); {
		kind, ch, _, err := c.next()
		if err != nil {
			return fmt.Errorf("%s: %w", verb, err)
		}
		if kind != pushSubscribe {
			return fmt.Errorf("%s: %w: unexpected reply before the confirmation", verb, errProtocol)
		}
		found := false
		for _, want := range s.channels {
			if string(ch) == want {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s: %w: confirmation for %q", verb, errProtocol, ch)
		}
		confirmed++
	}
	return nil
}

// write sends b under the write deadline.
func (c *subConn) write(b []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := c.nc.Write(b)
	return err
}

func (c *subConn) ping(timeout time.Duration) error { return c.write(pingCmd, timeout) }

func (c *subConn) close() error { return c.nc.Close() }

// readLine returns the next line without its CRLF. It aliases the reader's buffer.
func (c *subConn) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line too long", errProtocol)
		}
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: bad line", errProtocol)
	}
	return line[:len(line)-2], nil
}

// readOK reads a reply that must be +OK.
func (c *subConn) readOK() error {
	line, err := c.readLine()
	if err != nil {
		return err
	}
	switch line[0] {
	case '+':
		return nil
	case '-':
		return redisError(line[1:])
	}
	return fmt.Errorf("%w: unexpected reply %q", errProtocol, trim(line))
}

func trim(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// parseInt parses the number after a type byte; it rejects anything but a plain decimal.
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, fmt.Errorf("%w: bad number", errProtocol)
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, fmt.Errorf("%w: bad number", errProtocol)
		}
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, fmt.Errorf("%w: bad number", errProtocol)
		}
		n = n*10 + int64(ch-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// bulkLen reads a "$n" header and returns n (-1 for a null bulk string).
func (c *subConn) bulkLen() (int64, error) {
	line, err := c.readLine()
	if err != nil {
		return 0, err
	}
	if line[0] != '$' {
		if line[0] == '-' {
			return 0, redisError(line[1:])
		}
		return 0, fmt.Errorf("%w: want a bulk string, got %q", errProtocol, trim(line))
	}
	n, err := parseInt(line[1:])
	if err != nil || n < -1 {
		return 0, fmt.Errorf("%w: bad bulk length", errProtocol)
	}
	return n, nil
}

// bulkInto reads a bulk string into buf (it must fit) and returns it.
func (c *subConn) bulkInto(buf []byte) ([]byte, error) {
	n, err := c.bulkLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return buf[:0], nil
	}
	if n > int64(len(buf)) {
		return nil, fmt.Errorf("%w: field of %d bytes", errProtocol, n)
	}
	b := buf[:n]
	if _, err := io.ReadFull(c.r, b); err != nil {
		return nil, err
	}
	return b, c.crlf()
}

func (c *subConn) crlf() error {
	var t [2]byte
	if _, err := io.ReadFull(c.r, t[:]); err != nil {
		return err
	}
	if t != [2]byte{'\r', '\n'} {
		return fmt.Errorf("%w: missing CRLF", errProtocol)
	}
	return nil
}

// next reads one push of a subscribed connection. channel aliases c.chanBuf until the next call;
// payload is a fresh allocation owned by the caller.
func (c *subConn) next() (kind pushKind, channel, payload []byte, err error) {
	line, err := c.readLine()
	if err != nil {
		return 0, nil, nil, err
	}
	switch line[0] {
	case '*':
	case '-':
		return 0, nil, nil, redisError(line[1:])
	default:
		return 0, nil, nil, fmt.Errorf("%w: unexpected reply %q", errProtocol, trim(line))
	}
	n, err := parseInt(line[1:])
	if err != nil || n < 2 || n > 3 {
		return 0, nil, nil, fmt.Errorf("%w: push of %q elements", errProtocol, trim(line))
	}
	k, err := c.bulkInto(c.kindBuf[:])
	if err != nil {
		return 0, nil, nil, err
	}
	channel, err = c.bulkInto(c.chanBuf[:])
	if err != nil {
		return 0, nil, nil, err
	}
	switch {
	case n == 2 && bytes.Equal(k, []byte("pong")):
		return pushPong, nil, nil, nil
	case n == 3 && (bytes.Equal(k, []byte("message")) || bytes.Equal(k, []byte("smessage"))):
		l, err := c.bulkLen()
		if err != nil {
			return 0, nil, nil, err
		}
		if l < 0 {
			return pushMessage, channel, []byte{}, nil
		}
		if l > int64(c.maxRecv) {
			if _, err := c.r.Discard(int(l)); err != nil {
				return 0, nil, nil, err
			}
			return pushDiscarded, channel, nil, c.crlf()
		}
		payload = make([]byte, l)
		if _, err := io.ReadFull(c.r, payload); err != nil {
			return 0, nil, nil, err
		}
		return pushMessage, channel, payload, c.crlf()
	case n == 3:
		line, err := c.readLine() // the count after (un)subscribe
		if err != nil {
			return 0, nil, nil, err
		}
		if line[0] != ':' {
			return 0, nil, nil, fmt.Errorf("%w: want an integer, got %q", errProtocol, trim(line))
		}
		switch string(k) {
		case "subscribe", "ssubscribe":
			return pushSubscribe, channel, nil, nil
		case "unsubscribe", "sunsubscribe":
			return pushUnsubscribe, channel, nil, nil
		}
	}
	return 0, nil, nil, fmt.Errorf("%w: unexpected push %q", errProtocol, trim(k))
}
