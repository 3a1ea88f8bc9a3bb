package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/procfs"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/stats"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/wire"
)

// readBuf is the read buffer of a publisher or subscriber connection.
const readBuf = 64 << 10

// epoch anchors the tool's monotonic clock; payload send times are ns since epoch.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// run is the state one pubsub or redis run shares between its goroutines.
type run struct {
	cfg     Config
	redis   bool
	version byte
	ctx     context.Context // done at the deadline or when the run is being torn down
	errs    *errorLog
	// closing is set before the tool closes its connections, so that the readers'
	// resulting errors are not counted.
	closing atomic.Bool
}

type subscriber struct {
	id      int
	c       *client
	tr      *stats.Tracker
	got     atomic.Int64 // == tr.Received, for the progress watcher
	granted byte
	done    chan struct{} // closed when the read loop returns
}

type publisher struct {
	id     int
	c      *client
	topic  string
	qos    byte
	window chan struct{} // one token per unacknowledged message; nil when not windowed

	// pidMu guards pidState and nextID: 0 free, 1 awaiting PUBACK/PUBREC, 2 awaiting
	// PUBCOMP. Ids are handed out round-robin, skipping ones still in use, so an
	// out-of-order ack can never make two messages share an id.
	pidMu    sync.Mutex
	pidState []uint8
	nextID   uint16

	sent       int64 // owned by the publishing goroutine until it returns
	acked      atomic.Int64
	doneNs     atomic.Int64  // when the last message was written (QoS 0) or acknowledged
	allAcked   chan struct{} // closed by the reader at the last acknowledgement
	readerDone chan struct{} // closed when the reader returns
}

func (r *run) topicFor(runID string, i int) string {
	if r.cfg.Topology == "pairwise" {
		return fmt.Sprintf("%s/%s/p/%d", r.cfg.Topic, runID, i)
	}
	return fmt.Sprintf("%s/%s/t", r.cfg.Topic, runID)
}

// runPubSub connects and subscribes every subscriber, connects every publisher, then
// lets the publishers go and waits for the deliveries.
func runPubSub(parent context.Context, cfg Config, redis bool, errs *errorLog) *Summary {
	s := &Summary{Mode: cfg.Mode, Addr: cfg.Addr, Topology: cfg.Topology, Pubs: cfg.Pubs, Subs: cfg.Subs,
		N: cfg.N, Size: cfg.Size, PubQoS: cfg.PubQoS, SubQoS: cfg.SubQoS, Inflight: cfg.Inflight, Rate: cfg.Rate}
	if redis {
		s.PubQoS, s.SubQoS = 0, 0
	} else {
		s.Proto = cfg.Version
	}
	deadline := time.Now().Add(cfg.Timeout)
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	r := &run{cfg: cfg, redis: redis, version: byte(cfg.Version), ctx: ctx, errs: errs}
	d := &dialer{addr: cfg.Addr, version: byte(cfg.Version), keep: uint16(cfg.KeepAlive),
		timeout: cfg.ConnTimeout, deadline: deadline, maxPkt: cfg.MaxPacket}
	d.tls, _ = cfg.tlsConfig() // checked by Config.validate
	if redis {
		// Checked by parseFlags (the files were read once); only New's own checks remain.
		var err error
		if d.redis, err = redisconn.New(cfg.Redis.Options()); err != nil {
			errs.add(fmt.Errorf("LOADGEN_REDIS_*: %w", err))
			s.ConnFail = 1
			return s
		}
	}
	runID := fmt.Sprintf("%d-%06x", os.Getpid(), rand.Uint32()&0xffffff)
	sd := d // subscribers' dialer
	if cfg.SubAddr != "" || cfg.SubPersist {
		sdc := *d
		if cfg.SubAddr != "" {
			sdc.addr = cfg.SubAddr
		}
		sdc.persistent = cfg.SubPersist
		sd = &sdc
	}

	if cfg.BrokerPID > 0 {
		if cfg.ResetPeak {
			s.PeakReset = procfs.ResetPeak(cfg.BrokerPID) == nil
		}
		if p, err := procfs.Read(cfg.BrokerPID); err == nil {
			s.RSSBeforeKB = p.RSSKB
		}
	}

	// Subscribers first, each subscribed before any publisher exists.
	var connFail atomic.Int64
	subs := make([]*subscriber, cfg.Subs)
	subQoS := byte(cfg.SubQoS)
	subDur := connectAll(cfg.Subs, cfg.DialPar, func(i int) {
		var c *client
		var err error
		granted := byte(0)
		if redis {
			if c, err = sd.dialRedis(readBuf); err == nil {
				_ = c.nc.SetDeadline(deadline)
				err = sd.subscribeRedis(c, r.topicFor(runID, i))
			}
		} else if c, _, err = sd.connectMQTT(fmt.Sprintf("lg-%s-s%d", runID, i), readBuf); err == nil {
			granted, err = sd.subscribeMQTT(c, r.topicFor(runID, i), subQoS)
		}
		if err != nil {
			if c != nil {
				_ = c.nc.Close()
			}
			connFail.Add(1)
			errs.add(fmt.Errorf("subscriber %d: %w", i, err))
			return
		}
		var allowed func(int) bool
		if cfg.Topology == "pairwise" {
			allowed = func(pub int) bool { return pub == i }
		}
		subs[i] = &subscriber{id: i, c: c, granted: granted, done: make(chan struct{}),
			tr: stats.NewTracker(cfg.Pubs, cfg.N, allowed)}
	})

	pubs := make([]*publisher, cfg.Pubs)
	var pubDur time.Duration
	if connFail.Load() == 0 {
		pubDur = connectAll(cfg.Pubs, cfg.DialPar, func(i int) {
			p := &publisher{id: i, topic: r.topicFor(runID, i), qos: byte(cfg.PubQoS),
				allAcked: make(chan struct{}), readerDone: make(chan struct{})}
			var err error
			window := cfg.Inflight
			if redis {
				p.qos = 0
				p.c, err = d.dialRedis(readBuf)
				if err == nil {
					_ = p.c.nc.SetDeadline(deadline)
				}
			} else {
				var ca wire.Connack
				p.c, ca, err = d.connectMQTT(fmt.Sprintf("lg-%s-p%d", runID, i), readBuf)
				window = min(window, int(ca.ReceiveMaximum))
				if err == nil && p.qos > ca.MaximumQoS {
					err = fmt.Errorf("server maximum QoS %d is below -pub-qos %d", ca.MaximumQoS, p.qos)
					_ = p.c.nc.Close()
				}
			}
			if err != nil {
				connFail.Add(1)
				errs.add(fmt.Errorf("publisher %d: %w", i, err))
				return
			}
			if redis || p.qos > 0 {
				p.window = make(chan struct{}, window)
			}
			if p.qos > 0 {
				p.pidState = make([]uint8, 65536)
			}
			pubs[i] = p
		})
	}
	s.ConnSecs = round((subDur + pubDur).Seconds(), 3)
	s.ConnFail = int(connFail.Load())
	var clients []*client
	for _, x := range subs {
		if x != nil {
			clients = append(clients, x.c)
		}
	}
	for _, p := range pubs {
		if p != nil {
			clients = append(clients, p.c)
		}
	}
	s.Conns = len(clients)
	if s.ConnSecs > 0 {
		s.ConnRate = round(float64(s.Conns)/s.ConnSecs, 1)
	}
	if s.ConnFail > 0 {
		for _, c := range clients {
			c.close(!redis)
		}
		return s
	}

	s.SubQoS = 2
	if redis {
		s.SubQoS = 0
	}
	for _, x := range subs {
		s.SubQoS = min(s.SubQoS, int(x.granted))
		if redis {
			go r.redisSubLoop(x)
		} else {
			go r.mqttSubLoop(x)
		}
	}
	s.QoS = min(s.PubQoS, s.SubQoS)
	s.Window = 0
	for _, p := range pubs {
		if p.window != nil && (s.Window == 0 || cap(p.window) < s.Window) {
			s.Window = cap(p.window)
		}
		if redis {
			go r.redisAckLoop(p)
		} else {
			if p.qos == 2 {
				p.c.kick = make(chan struct{}, 1)
				go p.c.ctlWriter(ctx.Done(), func(err error) { r.readErr("publisher", p.id, err) })
			}
			go r.mqttAckLoop(p)
		}
	}
	stopPing := make(chan struct{})
	if !redis {
		go pinger(cfg.KeepAlive, func() []*client { return clients }, stopPing)
	}
	defer close(stopPing)

	// Let the broker finish whatever subscribing costs before the clock starts.
	sleepCtx(ctx, cfg.Warmup)

	m := startMeasure(cfg.BrokerPID)
	start := make(chan struct{})
	var pubWG sync.WaitGroup
	pubStart := now()
	for _, p := range pubs {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			r.publish(p, start, pubStart)
		}()
	}
	close(start)

	pubsDone := make(chan struct{})
	go func() { pubWG.Wait(); close(pubsDone) }()
	select {
	case <-pubsDone:
	case <-ctx.Done():
	}

	// Wait for delivery: everything arrived, or nothing arrived for -drain, or deadline.
	var expected int64
	for _, x := range subs {
		expected += int64(x.tr.Expected())
	}
	tick := time.NewTicker(10 * time.Millisecond)
	lastN, lastChange := int64(-1), time.Now()
wait:
	for ctx.Err() == nil {
		var n int64
		for _, x := range subs {
			n += x.got.Load()
		}
		switch {
		case n >= expected:
			break wait
		case n != lastN:
			lastN, lastChange = n, time.Now()
		case time.Since(lastChange) > cfg.Drain:
			select {
			case <-pubsDone:
				break wait
			default: // publishers still going (paced, or blocked): keep waiting
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	tick.Stop()
	m.stop()
	r.noteDeadline(parent, ctx, s)

	r.closing.Store(true)
	cancel()
	for _, c := range clients {
		c.close(!redis)
	}
	<-pubsDone
	for _, x := range subs {
		<-x.done
	}
	for _, p := range pubs {
		<-p.readerDone
	}

	// Everything has stopped: the trackers and counters can be read without locks.
	var lastPub int64
	for _, p := range pubs {
		s.Sent += p.sent
		if p.window != nil {
			s.Acked += p.acked.Load()
		}
		lastPub = max(lastPub, p.doneNs.Load())
	}
	var lat stats.Histogram
	first, last := int64(-1), int64(0)
	for _, x := range subs {
		t := x.tr
		s.Expected += int64(t.Expected())
		s.Received += int64(t.Received)
		s.Dup += int64(t.Duplicates)
		s.Reordered += int64(t.Reordered)
		s.Unexpected += int64(t.Unexpected)
		if t.Received > 0 {
			if first < 0 || t.First < first {
				first = t.First
			}
			last = max(last, t.Last)
		}
		lat.Merge(&t.Latency)
	}
	s.Lost = s.Expected - s.Received
	if s.Unexpected > 0 {
		errs.add(fmt.Errorf("%d deliveries with a bad payload or from the wrong publisher", s.Unexpected))
	}
	if lastPub > pubStart {
		s.PubSecs = round(float64(lastPub-pubStart)/1e9, 4)
		s.PubRate = round(float64(s.Sent)/s.PubSecs, 1)
	}
	if last > first && first >= 0 {
		s.DelivSecs = round(float64(last-first)/1e9, 4)
		s.DelivRate = round(float64(s.Received)/(float64(last-first)/1e9), 1)
	}
	if last > pubStart {
		s.DelivRateStart = round(float64(s.Received)/(float64(last-pubStart)/1e9), 1)
	}
	latencyInto(s, &lat)
	m.fill(s, errs)
	if s.BrokerCPU > 0 {
		s.DelivPerCPU = round(float64(s.Received)/s.BrokerCPU, 1)
	}
	return s
}

// noteDeadline marks the summary timed out when the run's own deadline passed, and
// records an interruption when the parent context was cancelled.
func (r *run) noteDeadline(parent, ctx context.Context, s *Summary) {
	if ctx.Err() == nil {
		return
	}
	if parent.Err() != nil {
		r.errs.add(fmt.Errorf("interrupted: %w", parent.Err()))
		return
	}
	s.TimedOut = true
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// publish sends p's -n messages: paced (message k of publisher i at
// (k*pubs+i)/rate after the start) or as fast as the window and socket allow.
func (r *run) publish(p *publisher, start <-chan struct{}, base int64) {
	cfg := r.cfg
	c := p.c
	payload := newPayload(cfg.Size, p.id)
	var interval, offset float64
	if cfg.Rate > 0 {
		interval = float64(cfg.Pubs) * 1e9 / cfg.Rate
		offset = float64(p.id) * 1e9 / cfg.Rate
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	<-start
	fail := func(err error) {
		if !r.closing.Load() {
			r.errs.add(fmt.Errorf("publisher %d: %w", p.id, err))
		}
	}
	for seq := 0; seq < cfg.N; seq++ {
		if interval > 0 {
			if wait := base + int64(offset+float64(seq)*interval) - now(); wait > 0 {
				timer.Reset(time.Duration(wait))
				select {
				case <-timer.C:
				case <-r.ctx.Done():
					return
				}
			}
		}
		if p.window != nil {
			select {
			case p.window <- struct{}{}:
			default:
				// Window full: push out what is buffered, then wait for an ack.
				if err := c.flush(); err != nil {
					fail(err)
					return
				}
				select {
				case p.window <- struct{}{}:
				case <-p.readerDone:
					return
				case <-r.ctx.Done():
					return
				}
			}
		}
		var id uint16
		if p.qos > 0 {
			id = p.claimID()
		}
		stampPayload(payload, seq, now())
		c.mu.Lock()
		if r.redis {
			c.out = wire.AppendPublishCommand(c.out, p.topic, payload)
		} else {
			c.out = wire.AppendPublish(c.out, r.version, p.qos, false, p.topic, id, payload)
		}
		var err error
		if interval > 0 || len(c.out) >= flushAt {
			err = c.flushLocked()
		}
		c.mu.Unlock()
		if err != nil {
			fail(err)
			return
		}
		p.sent++
	}
	if err := c.flush(); err != nil {
		fail(err)
		return
	}
	if p.window == nil {
		p.doneNs.Store(now())
		return
	}
	select {
	case <-p.allAcked:
	case <-p.readerDone:
	case <-r.ctx.Done():
	}
}

func (p *publisher) claimID() uint16 {
	p.pidMu.Lock()
	defer p.pidMu.Unlock()
	for {
		p.nextID++
		if p.nextID == 0 {
			p.nextID = 1
		}
		if p.pidState[p.nextID] == 0 {
			p.pidState[p.nextID] = 1
			return p.nextID
		}
	}
}

// acked releases one window slot and notes the last acknowledgement.
func (p *publisher) ackOne(n int) {
	<-p.window
	if p.acked.Add(1) == int64(n) {
		p.doneNs.Store(now())
		close(p.allAcked)
	}
}

// readErr records a reader's error unless the tool itself is closing the connection.
func (r *run) readErr(who string, id int, err error) {
	if !r.closing.Load() {
		r.errs.add(fmt.Errorf("%s %d: %w", who, id, err))
	}
}

// mqttAckLoop reads a publisher's connection: PUBACK (QoS 1), PUBREC → PUBREL and
// PUBCOMP (QoS 2), PINGRESP, and a server's DISCONNECT.
func (r *run) mqttAckLoop(p *publisher) {
	defer close(p.readerDone)
	c := p.c
	var scratch []byte
	pending := false
	for {
		hdr, body, err := wire.ReadPacket(c.r, &scratch, r.cfg.MaxPacket)
		if err != nil {
			if p.qos > 0 && r.cfg.Version == 4 {
				// v3.1.1 has no Receive Maximum; a broker that enforces its own inflight
				// limit (mosquitto: max_inflight_messages, default 20) just disconnects.
				err = fmt.Errorf("%w (is -inflight %d above the broker's inflight limit?)", err, r.cfg.Inflight)
			}
			r.readErr("publisher", p.id, err)
			return
		}
		switch typ := hdr >> 4; typ {
		case wire.PUBACK, wire.PUBREC, wire.PUBCOMP:
			id, reason, err := wire.ParseAck(body)
			if err != nil {
				r.readErr("publisher", p.id, err)
				return
			}
			release, sendRel, bad := false, false, false
			p.pidMu.Lock()
			if p.pidState == nil {
				bad = true
			} else {
				switch st := p.pidState[id]; {
				case typ == wire.PUBACK && p.qos == 1 && st == 1:
					p.pidState[id], release = 0, true
				case typ == wire.PUBREC && p.qos == 2 && st == 1 && reason >= 0x80:
					p.pidState[id], release = 0, true // v5: refused, the flow ends here
				case typ == wire.PUBREC && p.qos == 2 && (st == 1 || st == 2):
					p.pidState[id], sendRel = 2, true // a repeated PUBREC gets PUBREL again
				case typ == wire.PUBCOMP && p.qos == 2 && st == 2:
					p.pidState[id], release = 0, true
				default:
					bad = true
				}
			}
			p.pidMu.Unlock()
			if bad {
				r.errs.add(fmt.Errorf("publisher %d: unexpected packet type %d for packet id %d", p.id, typ, id))
				continue
			}
			if reason >= 0x80 {
				r.errs.add(fmt.Errorf("publisher %d: packet type %d refused with reason %#x", p.id, typ, reason))
			}
			if sendRel {
				c.queueAck(wire.PUBREL, id)
				pending = true
			}
			if release {
				p.ackOne(r.cfg.N)
			}
		case wire.PINGRESP:
		case wire.DISCONNECT:
			r.readErr("publisher", p.id, fmt.Errorf("server sent DISCONNECT, reason %#x", wire.DisconnectReason(body)))
			return
		default:
			r.errs.add(fmt.Errorf("publisher %d: unexpected packet type %d", p.id, typ))
		}
		if pending && c.r.Buffered() == 0 {
			c.kickCtl()
			pending = false
		}
	}
}

// redisAckLoop reads the replies to a publisher's pipelined PUBLISH commands.
func (r *run) redisAckLoop(p *publisher) {
	defer close(p.readerDone)
	rr := wire.NewRESPReader(p.c.r, r.cfg.MaxPacket)
	for {
		rep, err := rr.Read()
		if err != nil && !errors.Is(err, wire.ErrRedis) {
			r.readErr("publisher", p.id, err)
			return
		}
		if err != nil {
			r.errs.add(fmt.Errorf("publisher %d: %w", p.id, err))
		} else if rep.Kind != ':' {
			r.errs.add(fmt.Errorf("publisher %d: unexpected reply type %q", p.id, rep.Kind))
		}
		if p.acked.Load() >= int64(r.cfg.N) {
			continue
		}
		p.ackOne(r.cfg.N)
	}
}

// observe accounts for one delivered payload.
func (x *subscriber) observe(payload []byte) {
	t := now()
	pub, seq, sent, ok := parsePayload(payload)
	if !ok {
		x.tr.Unexpected++
		return
	}
	if x.tr.Observe(pub, seq, sent, t) == stats.New {
		x.got.Add(1)
	}
}

// mqttSubLoop reads a subscriber's connection and acknowledges what needs it:
// PUBACK for QoS 1; PUBREC, then PUBCOMP on PUBREL, for QoS 2. Acks are batched:
// written when the read buffer runs dry.
func (r *run) mqttSubLoop(x *subscriber) {
	defer close(x.done)
	c := x.c
	var scratch []byte
	var awaitingRel []uint8 // QoS 2 packet ids with PUBREC sent and PUBREL not yet received
	pending := 0
	for {
		hdr, body, err := wire.ReadPacket(c.r, &scratch, r.cfg.MaxPacket)
		if err != nil {
			r.readErr("subscriber", x.id, err)
			return
		}
		switch typ := hdr >> 4; typ {
		case wire.PUBLISH:
			pk, err := wire.ParsePublish(hdr, body, c.version)
			if err != nil {
				r.readErr("subscriber", x.id, err)
				return
			}
			x.observe(pk.Payload)
			switch pk.QoS {
			case 1:
				c.mu.Lock()
				c.out = wire.AppendAck(c.out, wire.PUBACK, pk.PacketID)
				c.mu.Unlock()
				pending++
			case 2:
				if awaitingRel == nil {
					awaitingRel = make([]uint8, 65536)
				}
				awaitingRel[pk.PacketID] = 1
				c.mu.Lock()
				c.out = wire.AppendAck(c.out, wire.PUBREC, pk.PacketID)
				c.mu.Unlock()
				pending++
			}
		case wire.PUBREL:
			id, _, err := wire.ParseAck(body)
			if err != nil {
				r.readErr("subscriber", x.id, err)
				return
			}
			if awaitingRel == nil || awaitingRel[id] == 0 {
				r.errs.add(fmt.Errorf("subscriber %d: PUBREL for packet id %d without a PUBREC", x.id, id))
			} else {
				awaitingRel[id] = 0
			}
			c.mu.Lock()
			c.out = wire.AppendAck(c.out, wire.PUBCOMP, id)
			c.mu.Unlock()
			pending++
		case wire.PINGRESP:
		case wire.DISCONNECT:
			r.readErr("subscriber", x.id, fmt.Errorf("server sent DISCONNECT, reason %#x", wire.DisconnectReason(body)))
			return
		default:
			r.errs.add(fmt.Errorf("subscriber %d: unexpected packet type %d", x.id, typ))
		}
		if pending > 0 && (c.r.Buffered() == 0 || pending >= 1024) {
			if err := c.flush(); err != nil {
				r.readErr("subscriber", x.id, err)
				return
			}
			pending = 0
		}
	}
}

// redisSubLoop reads a redis subscriber's pushed messages.
func (r *run) redisSubLoop(x *subscriber) {
	defer close(x.done)
	rr := wire.NewRESPReader(x.c.r, r.cfg.MaxPacket)
	for {
		rep, err := rr.Read()
		if err != nil {
			r.readErr("subscriber", x.id, err)
			return
		}
		if rep.Kind == '*' && len(rep.Elems) == 3 && string(rep.Elems[0]) == "message" {
			x.observe(rep.Elems[2])
		}
	}
}
