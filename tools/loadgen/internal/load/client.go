package load

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/sockio"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/wire"
)

// flushAt is how much output a publisher buffers before writing it; the same 64 KiB
// batching as ../shared/mqttload, so unpaced QoS 0 numbers compare.
const flushAt = 64 << 10

// client is one TCP connection to the broker or redis-server. The goroutine that reads
// it owns r; everything that writes goes through mu, because a publisher's writer, its
// ack reader (PUBREL) and the keepalive pinger share the connection.
type client struct {
	nc      net.Conn
	r       *bufio.Reader
	version byte

	// mu guards out and writes to nc.
	mu  sync.Mutex
	out []byte

	// ctlMu guards ctl: acks that a reader queues for ctlWriter. It is never held
	// during I/O, so a reader can not end up waiting for a write that waits for the
	// broker to read, while the broker waits for that reader to read (QoS 2 PUBREL).
	ctlMu sync.Mutex
	ctl   []byte
	kick  chan struct{} // wakes ctlWriter; capacity 1
}

// flushLocked writes out. Call with mu held.
func (c *client) flushLocked() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	return err
}

// flush writes whatever is buffered.
func (c *client) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

// tryPing sends PINGREQ unless a write is in progress: a connection that is writing
// needs no keepalive, and one stuck connection must not stall the pinger.
func (c *client) tryPing() {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	c.out = wire.AppendPingreq(c.out)
	_ = c.flushLocked()
}

// queueAck queues an ack for ctlWriter to send; see ctlMu.
func (c *client) queueAck(typ byte, id uint16) {
	c.ctlMu.Lock()
	c.ctl = wire.AppendAck(c.ctl, typ, id)
	c.ctlMu.Unlock()
}

// kickCtl wakes ctlWriter without blocking.
func (c *client) kickCtl() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// ctlWriter sends queued acks each time it is kicked, until done is closed. It takes mu
// like any writer, so acks never split another packet.
func (c *client) ctlWriter(done <-chan struct{}, onErr func(error)) {
	var buf []byte
	for {
		select {
		case <-done:
			return
		case <-c.kick:
		}
		c.ctlMu.Lock()
		buf, c.ctl = c.ctl, buf[:0]
		c.ctlMu.Unlock()
		if len(buf) == 0 {
			continue
		}
		c.mu.Lock()
		c.out = append(c.out, buf...)
		err := c.flushLocked()
		c.mu.Unlock()
		if err != nil {
			onErr(err)
			return
		}
	}
}

// close sends DISCONNECT (MQTT only) with a short write deadline, then closes.
func (c *client) close(mqtt bool) {
	if mqtt {
		c.mu.Lock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		c.out = wire.AppendDisconnect(c.out)
		_ = c.flushLocked()
		c.mu.Unlock()
	}
	_ = c.nc.Close()
}

// dialer opens connections for one run.
type dialer struct {
	addr     string
	version  byte
	keep     uint16
	timeout  time.Duration // per connection attempt
	deadline time.Time     // of the whole run; set on every connection
	maxPkt   int
	tls      *tls.Config // nil: plain TCP
	// redis: how to reach redis-server in redis mode (LOADGEN_REDIS_*): TLS and AUTH.
	redis *redisconn.Connector
	// persistent: connect with a persistent session (clean session 0; v5 session expiry 3600).
	persistent bool
	// src are the local addresses to dial from, in turn (none: the kernel's choice).
	src  []*net.TCPAddr
	next *atomic.Uint64 // shared by copies of the dialer
}

// parseSrc reads -src.
func parseSrc(list string) ([]*net.TCPAddr, error) {
	var out []*net.TCPAddr
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("-src: %q is not an IP address", s)
		}
		out = append(out, &net.TCPAddr{IP: ip})
	}
	return out, nil
}

// dialRedis dials redis-server as the redis mode's settings say (plain TCP through sockio, or
// TLS) and logs in when a user name or password is set.
func (d *dialer) dialRedis(readBuf int) (*client, error) {
	to := d.timeout
	if left := time.Until(d.deadline); left < to {
		to = left
	}
	if to <= 0 {
		return nil, errors.New("run deadline passed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), to)
	defer cancel()
	var c *client
	if d.redis != nil && d.redis.TLS() {
		nc, err := d.redis.Dial(ctx, "tcp", d.addr)
		if err != nil {
			return nil, d.redis.Explain(err)
		}
		_ = nc.SetDeadline(time.Now().Add(to))
		c = &client{nc: nc, r: bufio.NewReaderSize(nc, readBuf), version: d.version}
	} else {
		var err error
		if c, err = d.dial(readBuf); err != nil {
			return nil, err
		}
	}
	if d.redis == nil || !d.redis.HasCredentials() {
		return c, nil
	}
	user, password, err := d.redis.Credentials(ctx)
	if err == nil {
		args := [][]byte{[]byte("AUTH")}
		if user != "" {
			args = append(args, []byte(user))
		}
		c.out = wire.AppendCommand(c.out, append(args, []byte(password))...)
		if err = c.flushLocked(); err == nil {
			_, err = wire.NewRESPReader(c.r, d.maxPkt).Read()
		}
	}
	if err != nil {
		_ = c.nc.Close()
		return nil, fmt.Errorf("AUTH: %w", d.redis.Explain(err))
	}
	return c, nil
}

func (d *dialer) dial(readBuf int) (*client, error) {
	to := d.timeout
	if left := time.Until(d.deadline); left < to {
		to = left
	}
	if to <= 0 {
		return nil, errors.New("run deadline passed")
	}
	nd := net.Dialer{Timeout: to}
	if len(d.src) > 0 {
		nd.LocalAddr = d.src[(d.next.Add(1)-1)%uint64(len(d.src))] // next is set with src
	}
	nc, err := nd.Dial("tcp", d.addr)
	if err != nil {
		return nil, err
	}
	nc = sockio.Wrap(nc) // raw socket calls: see package sockio
	// Go sets TCP_NODELAY by default; the tool batches writes itself.
	hs := time.Now().Add(to)
	if hs.After(d.deadline) {
		hs = d.deadline
	}
	_ = nc.SetDeadline(hs)
	if d.tls != nil {
		tc := tls.Client(nc, d.tls)
		if err := tc.Handshake(); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		nc = tc
	}
	return &client{nc: nc, r: bufio.NewReaderSize(nc, readBuf), version: d.version}, nil
}

// connectMQTT dials and completes CONNECT/CONNACK. The returned client's deadline is
// the run's.
func (d *dialer) connectMQTT(clientID string, readBuf int) (*client, wire.Connack, error) {
	c, err := d.dial(readBuf)
	if err != nil {
		return nil, wire.Connack{}, err
	}
	cp := wire.Connect{Version: d.version, ClientID: clientID, KeepAlive: d.keep, CleanStart: true}
	if d.persistent {
		cp.CleanStart = d.version == wire.V5 // a v5 session starts clean and outlives the connection
		cp.SessionExpiry = 3600
	}
	c.out = wire.AppendConnect(c.out, cp)
	if err := c.flushLocked(); err != nil {
		_ = c.nc.Close()
		return nil, wire.Connack{}, fmt.Errorf("connect: %w", err)
	}
	var scratch []byte
	hdr, body, err := wire.ReadPacket(c.r, &scratch, d.maxPkt)
	if err != nil {
		_ = c.nc.Close()
		return nil, wire.Connack{}, fmt.Errorf("connack: %w", err)
	}
	if hdr>>4 != wire.CONNACK {
		_ = c.nc.Close()
		return nil, wire.Connack{}, fmt.Errorf("connack: got packet type %d", hdr>>4)
	}
	ca, err := wire.ParseConnack(body, d.version)
	if err != nil {
		_ = c.nc.Close()
		return nil, ca, err
	}
	if ca.Code != 0 {
		_ = c.nc.Close()
		return nil, ca, fmt.Errorf("connack: refused, code %#x", ca.Code)
	}
	_ = c.nc.SetDeadline(d.deadline)
	return c, ca, nil
}

// subscribeMQTT sends SUBSCRIBE for filter and waits for its SUBACK; it returns the
// granted QoS.
func (d *dialer) subscribeMQTT(c *client, filter string, qos byte) (byte, error) {
	_ = c.nc.SetDeadline(time.Now().Add(d.timeout))
	defer func() { _ = c.nc.SetDeadline(d.deadline) }()
	c.out = wire.AppendSubscribe(c.out, d.version, 1, filter, qos)
	if err := c.flushLocked(); err != nil {
		return 0, fmt.Errorf("subscribe: %w", err)
	}
	var scratch []byte
	for {
		hdr, body, err := wire.ReadPacket(c.r, &scratch, d.maxPkt)
		if err != nil {
			return 0, fmt.Errorf("suback: %w", err)
		}
		if hdr>>4 != wire.SUBACK {
			continue // e.g. PINGRESP; the run's topics carry no retained messages
		}
		id, codes, err := wire.ParseSuback(body, d.version)
		if err != nil {
			return 0, err
		}
		if id != 1 || len(codes) != 1 {
			return 0, fmt.Errorf("suback: packet id %d with %d codes, want 1 and 1", id, len(codes))
		}
		if codes[0] >= 0x80 {
			return 0, fmt.Errorf("suback: subscription refused, code %#x", codes[0])
		}
		return codes[0], nil
	}
}

// subscribeRedis sends SUBSCRIBE channel and waits for its confirmation.
func (d *dialer) subscribeRedis(c *client, channel string) error {
	_ = c.nc.SetDeadline(time.Now().Add(d.timeout))
	defer func() { _ = c.nc.SetDeadline(d.deadline) }()
	c.out = wire.AppendCommand(c.out, []byte("SUBSCRIBE"), []byte(channel))
	if err := c.flushLocked(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	rep, err := wire.NewRESPReader(c.r, d.maxPkt).Read()
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if rep.Kind != '*' || len(rep.Elems) != 3 || string(rep.Elems[0]) != "subscribe" {
		return fmt.Errorf("subscribe: unexpected reply %q", rep.Elems)
	}
	return nil
}

// connectAll runs fn(i) for i in [0, n) on par goroutines and returns the wall time.
func connectAll(n, par int, fn func(i int)) time.Duration {
	t0 := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for w := 0; w < min(par, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
	return time.Since(t0)
}

// pinger sends PINGREQ on every live client each keepalive/2 until stop is closed, so
// that subscribers that never write (QoS 0) stay within the broker's keepalive.
func pinger(keepalive int, clients func() []*client, stop <-chan struct{}) {
	if keepalive <= 0 {
		return
	}
	t := time.NewTicker(time.Duration(keepalive) * time.Second / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, c := range clients() {
				if c != nil {
					c.tryPing()
				}
			}
		}
	}
}

// errorLog counts errors and keeps the first.
type errorLog struct {
	mu    sync.Mutex
	n     int64
	first string
}

func (e *errorLog) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.n == 1 {
		e.first = err.Error()
	}
}

func (e *errorLog) get() (int64, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n, e.first
}
