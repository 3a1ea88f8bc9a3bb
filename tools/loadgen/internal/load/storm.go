package load

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/stats"
)

// runStorm is -mode storm, a reconnect storm: -conns clients with persistent sessions connect to
// -addr, and after -settle the tool sends SIGKILL to -storm-kill (that broker's process). Every
// client then reconnects at once, with the same client id, to the -reconnect-addrs in turn, and
// retries after 50–150 ms whatever fails (a refused dial, a failed handshake, a refusing CONNACK,
// a timeout), as devices do, until it is back or the run's -timeout passes. It reports how long
// until all were back (from the kill), the percentiles per client, the refusals and errors, and
// how many found their session.
func runStorm(parent context.Context, cfg Config, errs *errorLog) *Summary {
	s := &Summary{Mode: cfg.Mode, Addr: cfg.Addr, Proto: cfg.Version}
	deadline := time.Now().Add(cfg.Timeout)
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	d, _ := newDialer(cfg, false, deadline) // fails only for redis
	d.persistent = true
	runID := fmt.Sprintf("%d-%06x", os.Getpid(), rand.Uint32()&0xffffff)
	id := func(i int) string { return fmt.Sprintf("lg-%s-s%d", runID, i) }

	clients := make([]*client, cfg.Conns)
	var mu sync.Mutex
	fails := 0
	dur := connectAll(cfg.Conns, cfg.DialPar, func(i int) {
		c, _, err := d.connectMQTT(id(i), idleReadBuf)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			fails++
			errs.add(fmt.Errorf("connection %d: %w", i, err))
			return
		}
		clients[i] = c
	})
	s.Conns, s.ConnFail, s.ConnSecs = cfg.Conns-fails, fails, round(dur.Seconds(), 3)
	if fails > 0 {
		return s
	}
	sleepCtx(ctx, cfg.Settle)

	// Each client notices its connection drop (its reader sees EOF or a reset), then reconnects.
	var st stormState
	st.began = make(chan struct{})
	addrs := strings.Split(cfg.ReconnectAddrs, ",")
	var wg sync.WaitGroup
	backs := make([]*client, len(clients)) // kept open until all are back
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c.nc)
			_ = c.nc.Close()
			<-st.began
			rd := *d
			rd.addr = addrs[i%len(addrs)]
			backs[i] = st.reconnect(ctx, &rd, id(i), errs)
		}()
	}
	st.t0 = time.Now()
	if err := syscall.Kill(cfg.StormKill, syscall.SIGKILL); err != nil {
		errs.add(fmt.Errorf("-storm-kill %d: %w", cfg.StormKill, err))
		for _, c := range clients {
			_ = c.nc.Close()
		}
	}
	close(st.began)
	wg.Wait()
	st.fill(s, cfg.Conns)
	for _, c := range backs {
		if c != nil {
			_ = c.nc.Close()
		}
	}
	return s
}

// stormState gathers the reconnections of a storm.
type stormState struct {
	t0    time.Time
	began chan struct{}

	mu                       sync.Mutex
	back                     stats.Histogram // time from the kill to each client's CONNACK
	last                     time.Duration
	present, refused, errors int
	failed                   int
	attempts                 int
}

// reconnect connects id through d until it is accepted (the connection is returned) or ctx ends.
func (st *stormState) reconnect(ctx context.Context, d *dialer, id string, errs *errorLog) *client {
	for {
		c, ca, err := d.connectMQTT(id, idleReadBuf)
		st.mu.Lock()
		st.attempts++
		switch {
		case err == nil:
			took := time.Since(st.t0)
			st.back.Record(int64(took))
			st.last = max(st.last, took)
			if ca.SessionPresent {
				st.present++
			}
			st.mu.Unlock()
			return c
		case ca.Code != 0:
			st.refused++
		default:
			st.errors++
		}
		st.mu.Unlock()
		if ctx.Err() != nil {
			st.mu.Lock()
			st.failed++
			st.mu.Unlock()
			errs.add(fmt.Errorf("%s not back before the run's end: %w", id, err))
			return nil
		}
		sleepCtx(ctx, time.Duration(50+rand.IntN(100))*time.Millisecond)
	}
}

func (st *stormState) fill(s *Summary, n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s.StormClients = n
	s.StormSecs = round(st.last.Seconds(), 3)
	s.StormP50ms = round(float64(st.back.Quantile(0.5))/1e6, 1)
	s.StormP99ms = round(float64(st.back.Quantile(0.99))/1e6, 1)
	s.StormRefused = st.refused
	s.StormErrors = st.errors
	s.StormFailed = st.failed
	s.StormAttempts = st.attempts
	s.StormPresent = st.present
}
