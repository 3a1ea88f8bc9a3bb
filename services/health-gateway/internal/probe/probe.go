// Package probe sends the gateway's synthetic MQTT messages: one long-lived paho connection per
// broker replica, and Probe, which publishes a message through replica A and waits for it on
// replica B.
//
// Every connection subscribes to the probes addressed to its replica,
// "$mcloudtt/probe/<gateway>/+/<replica>", so a probe A->B published on
// "$mcloudtt/probe/<gateway>/A/B" reaches the gateway only if replica A routed it to replica B
// (through Redis when A != B) and B delivered it. The topics start with '$': no device's "#"
// subscription sees them, and the BigQuery export skips the prefix.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Options configure a Prober.
type Options struct {
	// GatewayID is the gateway's id: it is part of every probe topic and client id, so several
	// gateways can probe one cluster without seeing each other's probes.
	GatewayID string
	// Username and Password are the MQTT credentials ("" for anonymous).
	Username, Password string
	// ConnectTimeout bounds one connection attempt (TCP and CONNACK) and a SUBSCRIBE.
	ConnectTimeout time.Duration
	// RetryInterval is the longest wait between reconnection attempts.
	RetryInterval time.Duration
	// Log receives connection changes.
	Log zerolog.Logger
}

// Prober owns the probe connections. Its methods are safe for concurrent use.
type Prober struct {
	opts Options
	seq  atomic.Uint64

	// mu guards everything that follows.
	mu      sync.Mutex
	conns   map[string]*conn
	waiters map[string]*waiter // by payload
	closed  bool
}

type waiter struct {
	to  string         // the replica the message must arrive on
	got chan time.Time // receives the arrival time, buffered
}

// conn is the connection to one replica.
type conn struct {
	replica, addr string
	client        mqtt.Client
	subscribed    atomic.Bool // connected and the probe subscription acknowledged

	mu      sync.Mutex // guards lastErr
	lastErr string
}

// New returns a Prober without connections; Ensure makes them.
func New(opts Options) *Prober {
	return &Prober{opts: opts, conns: map[string]*conn{}, waiters: map[string]*waiter{}}
}

// Topic is the topic of a probe from replica from to replica to.
func (p *Prober) Topic(from, to string) string {
	return wire.ProbeTopicPrefix + p.opts.GatewayID + "/" + from + "/" + to
}

func (p *Prober) filter(replica string) string {
	return wire.ProbeTopicPrefix + p.opts.GatewayID + "/+/" + replica
}

// Ensure makes sure a connection to replica at addr exists and keeps reconnecting; a connection to
// an older address of the replica (it restarted elsewhere) is replaced.
func (p *Prober) Ensure(replica, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if c, ok := p.conns[replica]; ok {
		if c.addr == addr {
			return
		}
		p.opts.Log.Info().Str("replica", replica).Str("old_addr", c.addr).Str("addr", addr).
			Msg("probe: replica moved, reconnecting")
		c.disconnect(0)
	}
	if err := reachable(addr); err != nil {
		// Keep the entry so that probes through the replica fail and say why.
		c := &conn{replica: replica, addr: addr, lastErr: err.Error()}
		p.conns[replica] = c
		p.opts.Log.Warn().Str("replica", replica).Str("addr", addr).Err(err).Msg("probe: cannot connect")
		return
	}
	p.conns[replica] = p.dial(replica, addr)
}

// reachable reports why addr, as announced in a heartbeat, cannot be dialled from elsewhere: a
// replica that announces its listener address (":1883", "0.0.0.0:1883") instead of its pod IP.
func reachable(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("announced address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("announced address %q has no host to connect to: set BROKER_ADVERTISE_ADDR on that replica (the pod IP and MQTT port)", addr)
	}
	return nil
}

// Retain closes the connections to replicas not in keep.
func (p *Prober) Retain(keep func(replica string) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, c := range p.conns {
		if !keep(id) {
			delete(p.conns, id)
			c.disconnect(0)
		}
	}
}

// ConnState reports whether the connection to replica is up and subscribed, and its last error.
func (p *Prober) ConnState(replica string) (ok bool, lastErr string) {
	p.mu.Lock()
	c := p.conns[replica]
	p.mu.Unlock()
	if c == nil {
		return false, "no connection"
	}
	return c.subscribed.Load(), c.err()
}

func (c *conn) err() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

func (c *conn) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.lastErr = ""
	} else {
		c.lastErr = err.Error()
	}
}

// disconnect closes the connection, if one was made, in the background unless quiesce > 0.
func (c *conn) disconnect(quiesce uint) {
	if c.client == nil {
		return
	}
	if quiesce == 0 {
		go c.client.Disconnect(0)
		return
	}
	c.client.Disconnect(quiesce)
}

// dial starts a connection; the client connects and reconnects in the background, and subscribes
// on every connect (the session is clean, so nothing survives a reconnect).
func (p *Prober) dial(replica, addr string) *conn {
	c := &conn{replica: replica, addr: addr}
	log := p.opts.Log.With().Str("replica", replica).Str("addr", addr).Logger()
	o := mqtt.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(wire.ProbeClientPrefix + p.opts.GatewayID + "-" + replica).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(p.opts.ConnectTimeout).
		SetConnectTimeout(p.opts.ConnectTimeout).
		SetWriteTimeout(p.opts.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(p.opts.RetryInterval).
		SetMaxReconnectInterval(p.opts.RetryInterval)
	if p.opts.Username != "" {
		o.SetUsername(p.opts.Username).SetPassword(p.opts.Password)
	}
	o.SetOnConnectHandler(func(cl mqtt.Client) {
		tok := cl.Subscribe(p.filter(replica), 1, func(_ mqtt.Client, m mqtt.Message) {
			p.arrived(replica, m.Payload(), time.Now())
		})
		go func() {
			if !tok.WaitTimeout(p.opts.ConnectTimeout) {
				c.setErr(errors.New("no SUBACK for the probe subscription"))
				log.Warn().Msg("probe: no SUBACK; reconnecting")
				// Only a new connection subscribes again.
				cl.Disconnect(0)
				return
			}
			if err := tok.Error(); err != nil {
				c.setErr(fmt.Errorf("subscribe: %w", err))
				log.Warn().Err(err).Msg("probe: subscription refused")
				return
			}
			if st, ok := tok.(*mqtt.SubscribeToken); ok {
				for _, code := range st.Result() {
					if code >= 0x80 {
						c.setErr(fmt.Errorf("subscription to %s refused (SUBACK 0x%02x): check the ACL", p.filter(replica), code))
						log.Warn().Str("filter", p.filter(replica)).Msg("probe: subscription refused by the broker")
						return
					}
				}
			}
			c.setErr(nil)
			c.subscribed.Store(true)
			log.Info().Msg("probe: connected and subscribed")
		}()
	})
	o.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		switch n := n.(type) {
		case mqtt.ConnectionNotificationFailed:
			c.subscribed.Store(false)
			c.setErr(fmt.Errorf("connect: %w", n.Reason))
			log.Debug().Err(n.Reason).Msg("probe: connection attempt failed")
		case mqtt.ConnectionNotificationLost:
			c.subscribed.Store(false)
			err := n.Reason
			if err == nil {
				err = errors.New("connection lost")
			}
			c.setErr(fmt.Errorf("connection lost: %w", err))
			log.Warn().Err(err).Msg("probe: connection lost")
		}
	})
	c.client = mqtt.NewClient(o)
	c.client.Connect() // with ConnectRetry it completes only once connected; nobody waits for it
	return c
}

// arrived hands a probe message that replica delivered to the probe waiting for it.
func (p *Prober) arrived(replica string, payload []byte, at time.Time) {
	p.mu.Lock()
	w := p.waiters[string(payload)]
	p.mu.Unlock()
	if w == nil || w.to != replica {
		return // late (its probe timed out), a duplicate, or another gateway's
	}
	select {
	case w.got <- at:
	default:
	}
}

// Result is the outcome of one probe.
type Result struct {
	From, To string
	At       time.Time     // when the probe was published
	Latency  time.Duration // publish to arrival; valid when Err is nil
	Err      error
}

// Probe publishes one message through replica from and waits up to timeout for it on replica to.
// The latency is measured on the gateway's monotonic clock from the publish call to the arrival.
func (p *Prober) Probe(ctx context.Context, from, to string, timeout time.Duration) Result {
	r := Result{From: from, To: to, At: time.Now()}
	p.mu.Lock()
	src, dst := p.conns[from], p.conns[to]
	p.mu.Unlock()
	switch {
	case src == nil:
		r.Err = fmt.Errorf("no connection to %s", from)
		return r
	case dst == nil:
		r.Err = fmt.Errorf("no connection to %s", to)
		return r
	case !src.subscribed.Load():
		r.Err = fmt.Errorf("not connected to %s at %s: %s", from, src.addr, orUnknown(src.err()))
		return r
	case !dst.subscribed.Load():
		r.Err = fmt.Errorf("not connected to %s at %s: %s", to, dst.addr, orUnknown(dst.err()))
		return r
	}
	nonce := p.opts.GatewayID + ":" + strconv.FormatUint(p.seq.Add(1), 10)
	w := &waiter{to: to, got: make(chan time.Time, 1)}
	p.mu.Lock()
	p.waiters[nonce] = w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiters, nonce)
		p.mu.Unlock()
	}()

	start := time.Now()
	r.At = start
	tok := src.client.Publish(p.Topic(from, to), 1, false, nonce)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case at := <-w.got:
		r.Latency = at.Sub(start)
		return r
	case <-ctx.Done():
		r.Err = ctx.Err()
		return r
	case <-timer.C:
	}
	switch {
	case !tok.WaitTimeout(0):
		r.Err = fmt.Errorf("no probe message on %s within %s, and no PUBACK from %s", to, timeout, from)
	case tok.Error() != nil:
		r.Err = fmt.Errorf("publish on %s failed: %w", from, tok.Error())
	default:
		r.Err = fmt.Errorf("no probe message on %s within %s (%s acknowledged the publish)", to, timeout, from)
	}
	return r
}

func orUnknown(s string) string {
	if s == "" {
		return "connecting"
	}
	return s
}

// Close disconnects every connection.
func (p *Prober) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*conn{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.disconnect(250) })
	}
	wg.Wait()
}
