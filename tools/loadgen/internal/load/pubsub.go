package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

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
	s := newPubSubSummary(cfg, redis)
	deadline := time.Now().Add(cfg.Timeout)
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	r := &run{cfg: cfg, redis: redis, version: byte(cfg.Version), ctx: ctx, errs: errs}
	d, err := newDialer(cfg, redis, deadline)
	if err != nil {
		errs.add(err)
		s.ConnFail = 1
		return s
	}
	runID := fmt.Sprintf("%d-%06x", os.Getpid(), rand.Uint32()&0xffffff)
	sd := subDialer(cfg, d)
	noteBrokerBefore(cfg, s)

	subs, pubs, clients, ok := r.connectClients(s, d, sd, runID)
	if !ok {
		return s
	}
	r.startReaders(s, subs, pubs)
	stopPing := make(chan struct{})
	if !redis {
		go pinger(cfg.KeepAlive, func() []*client { return clients }, stopPing)
	}
	defer close(stopPing)

	// Let the broker finish whatever subscribing costs before the clock starts.
	sleepCtx(ctx, cfg.Warmup)

	m := startMeasure(cfg.BrokerPID)
	pubStart := now()
	pubsDone := r.startPublishers(pubs, pubStart)
	select {
	case <-pubsDone:
	case <-ctx.Done():
	}
	r.waitDelivery(subs, pubsDone)
	m.stop()
	r.noteDeadline(parent, ctx, s)

	r.shutdown(cancel, clients, pubsDone, subs, pubs)
	r.summarize(s, subs, pubs, pubStart)
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

// startPublishers starts one publishing goroutine per publisher, releases them all at
// once, and returns a channel closed when every one of them has returned.
func (r *run) startPublishers(pubs []*publisher, pubStart int64) <-chan struct{} {
	start := make(chan struct{})
	var pubWG sync.WaitGroup
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
	return pubsDone
}

// publish sends p's -n messages: paced (message k of publisher i at
// (k*pubs+i)/rate after the start) or as fast as the window and socket allow.
func (r *run) publish(p *publisher, start <-chan struct{}, base int64) {
	payload := newPayload(r.cfg.Size, p.id)
	pace := newPacer(r.cfg, p.id, base)
	<-start
	for seq := 0; seq < r.cfg.N; seq++ {
		if !pace.wait(r.ctx, seq) || !r.takeSlot(p) {
			return
		}
		if err := r.writePublish(p, payload, seq, pace.interval > 0); err != nil {
			r.pubFail(p, err)
			return
		}
		p.sent++
	}
	if err := p.c.flush(); err != nil {
		r.pubFail(p, err)
		return
	}
	r.awaitAcks(p)
}

// pacer spaces one publisher's messages when -rate is set.
type pacer struct {
	base     int64
	interval float64 // ns between two of this publisher's messages; 0 when not paced
	offset   float64 // ns from the start to this publisher's first message
	timer    *time.Timer
}

func newPacer(cfg Config, id int, base int64) *pacer {
	pc := &pacer{base: base}
	if cfg.Rate > 0 {
		pc.interval = float64(cfg.Pubs) * 1e9 / cfg.Rate
		pc.offset = float64(id) * 1e9 / cfg.Rate
	}
	pc.timer = time.NewTimer(time.Hour)
	pc.timer.Stop()
	return pc
}

// wait sleeps until message seq is due; false when ctx ended first.
func (pc *pacer) wait(ctx context.Context, seq int) bool {
	if pc.interval <= 0 {
		return true
	}
	if wait := pc.base + int64(pc.offset+float64(seq)*pc.interval) - now(); wait > 0 {
		pc.timer.Reset(time.Duration(wait))
		select {
		case <-pc.timer.C:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// takeSlot takes one window slot for the next message, if p is windowed. False when
// the publisher has to stop: its reader returned, the run ended, or a flush failed.
func (r *run) takeSlot(p *publisher) bool {
	if p.window == nil {
		return true
	}
	select {
	case p.window <- struct{}{}:
		return true
	default:
	}
	// Window full: push out what is buffered, then wait for an ack.
	if err := p.c.flush(); err != nil {
		r.pubFail(p, err)
		return false
	}
	select {
	case p.window <- struct{}{}:
		return true
	case <-p.readerDone:
		return false
	case <-r.ctx.Done():
		return false
	}
}

// writePublish stamps message seq and appends it to p's output buffer, flushing when
// paced or when the buffer has grown past flushAt.
func (r *run) writePublish(p *publisher, payload []byte, seq int, paced bool) error {
	var id uint16
	if p.qos > 0 {
		id = p.claimID()
	}
	stampPayload(payload, seq, now())
	c := p.c
	c.mu.Lock()
	if r.redis {
		c.out = wire.AppendPublishCommand(c.out, p.topic, payload)
	} else {
		c.out = wire.AppendPublish(c.out, r.version, p.qos, false, p.topic, id, payload)
	}
	var err error
	if paced || len(c.out) >= flushAt {
		err = c.flushLocked()
	}
	c.mu.Unlock()
	return err
}

// awaitAcks notes when p finished: now for an unwindowed publisher, else once the
// last acknowledgement arrives, the reader returns or the run ends.
func (r *run) awaitAcks(p *publisher) {
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

// pubFail records a publisher's write error unless the tool itself is closing.
func (r *run) pubFail(p *publisher, err error) {
	if !r.closing.Load() {
		r.errs.add(fmt.Errorf("publisher %d: %w", p.id, err))
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

// ackOne releases one window slot and notes the last acknowledgement.
func (p *publisher) ackOne(n int) {
	<-p.window
	if p.acked.Add(1) == int64(n) {
		p.doneNs.Store(now())
		close(p.allAcked)
	}
}
