package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/procfs"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/stats"
)

// idleReadBuf is the read buffer of an idle connection: enough for any CONNACK the
// tool expects (longer packets go through a scratch buffer), and small enough that
// 10k connections cost the tool little memory.
const idleReadBuf = 512

// runConns opens -conns idle connections with CONNECT/CONNACK, waits -settle, reads
// the broker's RSS and reports (rss_after - rss_before) / connections.
func runConns(parent context.Context, cfg Config, errs *errorLog) *Summary {
	s := &Summary{Mode: cfg.Mode, Addr: cfg.Addr, Proto: cfg.Version}
	deadline := time.Now().Add(cfg.Timeout)
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	d, _ := newDialer(cfg, false, deadline) // fails only for redis
	runID := fmt.Sprintf("%d-%06x", os.Getpid(), rand.Uint32()&0xffffff)
	if cfg.TLSResume && d.tls != nil && !d.firstTicket(runID, errs) {
		return s
	}

	if cfg.BrokerPID > 0 && cfg.ResetPeak {
		s.PeakReset = procfs.ResetPeak(cfg.BrokerPID) == nil
	}
	m := startMeasure(cfg.BrokerPID)

	clients := make([]*client, cfg.Conns)
	var mu sync.Mutex // guards connack and fails
	var connack stats.Histogram
	fails := 0
	dur := connectAll(cfg.Conns, cfg.DialPar, func(i int) {
		if ctx.Err() != nil {
			mu.Lock()
			fails++
			mu.Unlock()
			return
		}
		t0 := now()
		c, _, err := d.connectMQTT(fmt.Sprintf("lg-%s-c%d", runID, i), idleReadBuf)
		t1 := now()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			fails++
			errs.add(fmt.Errorf("connection %d: %w", i, err))
			return
		}
		connack.Record(t1 - t0)
		clients[i] = c
	})
	s.ConnSecs = round(dur.Seconds(), 3)
	s.ConnFail = fails
	s.Conns = cfg.Conns - fails
	if s.ConnSecs > 0 {
		s.ConnRate = round(float64(s.Conns)/s.ConnSecs, 1)
	}
	s.ConnackP50us = round(float64(connack.Quantile(0.5))/1e3, 1)
	s.ConnackP99us = round(float64(connack.Quantile(0.99))/1e3, 1)

	stopPing := make(chan struct{})
	go pinger(cfg.KeepAlive, func() []*client { return clients }, stopPing)
	if s.Conns > 0 {
		sleepCtx(ctx, cfg.Settle)
	}
	m.stop()
	close(stopPing)
	if ctx.Err() != nil {
		if parent.Err() != nil {
			errs.add(fmt.Errorf("interrupted: %w", parent.Err()))
		} else {
			s.TimedOut = true
		}
	}
	m.fill(s, errs)
	if cfg.BrokerPID > 0 && s.Conns > 0 && s.RSSAfterKB > 0 {
		s.RSSPerConnB = round(float64(s.RSSAfterKB-s.RSSBeforeKB)*1024/float64(s.Conns), 1)
	}
	for _, c := range clients {
		if c != nil {
			c.close(true)
		}
	}
	return s
}

// firstTicket makes one full TLS handshake, untimed: its session ticket is what the measured
// connections resume (-tls-resume).
func (d *dialer) firstTicket(runID string, errs *errorLog) bool {
	c, _, err := d.connectMQTT(fmt.Sprintf("lg-%s-first", runID), idleReadBuf)
	if err != nil {
		errs.add(fmt.Errorf("first connection: %w", err))
		return false
	}
	c.close(true)
	return true
}
