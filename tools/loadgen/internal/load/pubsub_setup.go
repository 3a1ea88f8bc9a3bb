package load

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/procfs"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/stats"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/wire"
)

// newPubSubSummary starts a run's summary from its configuration.
func newPubSubSummary(cfg Config, redis bool) *Summary {
	s := &Summary{Mode: cfg.Mode, Addr: cfg.Addr, Topology: cfg.Topology, Pubs: cfg.Pubs, Subs: cfg.Subs,
		N: cfg.N, Size: cfg.Size, PubQoS: cfg.PubQoS, SubQoS: cfg.SubQoS, Inflight: cfg.Inflight, Rate: cfg.Rate}
	if redis {
		s.PubQoS, s.SubQoS = 0, 0
	} else {
		s.Proto = cfg.Version
	}
	return s
}

// newDialer builds the publishers' dialer (and conns and storm modes' one); for a redis run it
// also sets up the redis connection options.
func newDialer(cfg Config, redis bool, deadline time.Time) (*dialer, error) {
	d := &dialer{addr: cfg.Addr, version: byte(cfg.Version), keep: uint16(cfg.KeepAlive),
		timeout: cfg.ConnTimeout, deadline: deadline, maxPkt: cfg.MaxPacket}
	d.tls, _ = cfg.tlsConfig()   // checked by Config.validate
	d.src, _ = parseSrc(cfg.Src) // checked by Config.validate
	d.next = new(atomic.Uint64)
	if redis {
		// Checked by parseFlags (the files were read once); only New's own checks remain.
		var err error
		if d.redis, err = redisconn.New(cfg.Redis.Options()); err != nil {
			return nil, fmt.Errorf("LOADGEN_REDIS_*: %w", err)
		}
	}
	return d, nil
}

// subDialer returns the subscribers' dialer: d itself, or a copy of it aimed at
// -sub-addr and/or with persistent sessions.
func subDialer(cfg Config, d *dialer) *dialer {
	if cfg.SubAddr == "" && !cfg.SubPersist {
		return d
	}
	sdc := *d
	if cfg.SubAddr != "" {
		sdc.addr = cfg.SubAddr
	}
	sdc.persistent = cfg.SubPersist
	return &sdc
}

// noteBrokerBefore resets the broker's peak RSS if asked and records its RSS before
// the run.
func noteBrokerBefore(cfg Config, s *Summary) {
	if cfg.BrokerPID <= 0 {
		return
	}
	if cfg.ResetPeak {
		s.PeakReset = procfs.ResetPeak(cfg.BrokerPID) == nil
	}
	if p, err := procfs.Read(cfg.BrokerPID); err == nil {
		s.RSSBeforeKB = p.RSSKB
	}
}

// connectClients connects and subscribes the subscribers, then, if all of them
// succeeded, connects the publishers, and records the connection figures in s.
// On any failure it closes every connection and returns ok false.
func (r *run) connectClients(s *Summary, d, sd *dialer, runID string) (subs []*subscriber, pubs []*publisher, clients []*client, ok bool) {
	// Subscribers first, each subscribed before any publisher exists.
	var connFail atomic.Int64
	subs, subDur := r.connectSubscribers(sd, runID, &connFail)
	pubs = make([]*publisher, r.cfg.Pubs)
	var pubDur time.Duration
	if connFail.Load() == 0 {
		pubs, pubDur = r.connectPublishers(d, runID, &connFail)
	}
	s.ConnSecs = round((subDur + pubDur).Seconds(), 3)
	s.ConnFail = int(connFail.Load())
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
			c.close(!r.redis)
		}
		return subs, pubs, clients, false
	}
	return subs, pubs, clients, true
}

// connectSubscribers connects and subscribes every subscriber; a failed one is left
// nil, counted in connFail and logged.
func (r *run) connectSubscribers(sd *dialer, runID string, connFail *atomic.Int64) ([]*subscriber, time.Duration) {
	cfg := r.cfg
	subs := make([]*subscriber, cfg.Subs)
	subQoS := byte(cfg.SubQoS)
	dur := connectAll(cfg.Subs, cfg.DialPar, func(i int) {
		var c *client
		var err error
		granted := byte(0)
		if r.redis {
			if c, err = sd.dialRedis(readBuf); err == nil {
				_ = c.nc.SetDeadline(sd.deadline)
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
			r.errs.add(fmt.Errorf("subscriber %d: %w", i, err))
			return
		}
		var allowed func(int) bool
		if cfg.Topology == "pairwise" {
			allowed = func(pub int) bool { return pub == i }
		}
		subs[i] = &subscriber{id: i, c: c, granted: granted, done: make(chan struct{}),
			tr: stats.NewTracker(cfg.Pubs, cfg.N, allowed)}
	})
	return subs, dur
}

// connectPublishers connects every publisher and sizes its window; a failed one is
// left nil, counted in connFail and logged.
func (r *run) connectPublishers(d *dialer, runID string, connFail *atomic.Int64) ([]*publisher, time.Duration) {
	cfg := r.cfg
	pubs := make([]*publisher, cfg.Pubs)
	dur := connectAll(cfg.Pubs, cfg.DialPar, func(i int) {
		p := &publisher{id: i, topic: r.topicFor(runID, i), qos: byte(cfg.PubQoS),
			allAcked: make(chan struct{}), readerDone: make(chan struct{})}
		var err error
		window := cfg.Inflight
		if r.redis {
			p.qos = 0
			p.c, err = d.dialRedis(readBuf)
			if err == nil {
				_ = p.c.nc.SetDeadline(d.deadline)
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
			r.errs.add(fmt.Errorf("publisher %d: %w", i, err))
			return
		}
		if r.redis || p.qos > 0 {
			p.window = make(chan struct{}, window)
		}
		if p.qos > 0 {
			p.pidState = make([]uint8, 65536)
		}
		pubs[i] = p
	})
	return pubs, dur
}

// startReaders starts every connection's read loop (and a QoS 2 publisher's control
// writer) and records the granted subscription QoS, the effective QoS and the
// smallest publisher window in s.
func (r *run) startReaders(s *Summary, subs []*subscriber, pubs []*publisher) {
	s.SubQoS = 2
	if r.redis {
		s.SubQoS = 0
	}
	for _, x := range subs {
		s.SubQoS = min(s.SubQoS, int(x.granted))
		if r.redis {
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
		if r.redis {
			go r.redisAckLoop(p)
		} else {
			if p.qos == 2 {
				p.c.kick = make(chan struct{}, 1)
				go p.c.ctlWriter(r.ctx.Done(), func(err error) { r.readErr("publisher", p.id, err) })
			}
			go r.mqttAckLoop(p)
		}
	}
}
