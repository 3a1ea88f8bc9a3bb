package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Management requests and replies on the control channels (wire.AdminRequest, wire.AdminReply):
// Request sends one to a replica and waits for its answer on this process's own control channel;
// a replica answers with Options.OnRequest. A replica that does not answer within the caller's
// context is reported as such, never waited on longer.

// Sentinel errors of Request.
var (
	// ErrNoReply: the request was delivered but no reply came before the context ended (the
	// replica is stopped, overloaded or cut off from Redis).
	ErrNoReply = errors.New("bus: no reply in time")
	// ErrRefused: the replica answered with an error (see RemoteError).
	ErrRefused = errors.New("bus: request refused")
)

// RemoteError is a replica's error answer to a request. It wraps ErrRefused.
type RemoteError struct {
	Replica string
	Text    string
}

func (e *RemoteError) Error() string { return e.Replica + ": " + e.Text }

// Unwrap makes errors.Is(err, ErrRefused) hold.
func (e *RemoteError) Unwrap() error { return ErrRefused }

// RequestHandler answers one management request: op and its JSON body in, a value to encode as
// the reply's JSON body (nil: none) or an error whose text the caller receives. ctx ends when
// the bus closes or after requestHandlerTimeout.
type RequestHandler func(ctx context.Context, op string, body []byte) (any, error)

const (
	// requestHandlerTimeout bounds one handler call.
	requestHandlerTimeout = 10 * time.Second
	// maxHandling bounds the requests handled at once; beyond it a request is refused at once.
	maxHandling = 64
)

// requests are the replies this process waits for, by request id.
type requests struct {
	mu sync.Mutex
	// prefix starts every request id: random per bus, so a late reply to an earlier incarnation
	// of this process (same replica id) is never taken for the answer to a new request.
	prefix   string
	seq      uint64
	waiting  map[string]chan wire.AdminReply
	handling chan struct{} // a slot per request being handled
}

// onControl splits the control channel: management requests and replies are handled here,
// everything else goes to Options.OnControl.
func (b *Bus) onControl(p []byte) {
	if len(p) > 0 {
		switch p[0] {
		case wire.ControlRequest:
			b.serveRequest(p[1:])
			return
		case wire.ControlReply:
			b.deliverReply(p[1:])
			return
		}
	}
	if b.opts.OnControl != nil {
		b.opts.OnControl(p)
	}
}

// Request sends op with body (encoded as JSON; nil: none) to replica and returns its reply's
// body. It fails with ErrNoReceiver when nobody listens on the replica's control channel (the
// replica is gone), ErrNoReply when no answer came before ctx ended, a *RemoteError when the
// replica refused, or ErrUnavailable when Redis did not take the request.
func (b *Bus) Request(ctx context.Context, replica, op string, body any) (json.RawMessage, error) {
	req := wire.AdminRequest{From: b.opts.ReplicaID, Op: op}
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("bus: request %s: %w", op, err)
		}
		req.Body = raw
	}
	ch := make(chan wire.AdminReply, 1)
	r := &b.reqs
	r.mu.Lock()
	r.seq++
	req.ID = r.prefix + strconv.FormatUint(r.seq, 36)
	if r.waiting == nil {
		r.waiting = make(map[string]chan wire.AdminReply)
	}
	r.waiting[req.ID] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, req.ID)
		r.mu.Unlock()
	}()
	payload, err := wire.EncodeAdmin(wire.ControlRequest, &req)
	if err != nil {
		return nil, err
	}
	if err := b.PublishControl(ctx, replica, payload); err != nil {
		return nil, err
	}
	select {
	case rep := <-ch:
		if rep.Error != "" {
			return nil, &RemoteError{Replica: replica, Text: rep.Error}
		}
		return rep.Body, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", ErrNoReply, replica, ctx.Err())
	}
}

// Answer is one replica's answer to RequestAll.
type Answer struct {
	Replica string
	Body    json.RawMessage
	Err     error
}

// RequestAll sends the same request to every replica at once and returns their answers in the
// order of replicas, each within ctx.
func (b *Bus) RequestAll(ctx context.Context, replicas []string, op string, body any) []Answer {
	out := make([]Answer, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() {
			raw, err := b.Request(ctx, r, op, body)
			out[i] = Answer{Replica: r, Body: raw, Err: err}
		})
	}
	wg.Wait()
	return out
}

func (b *Bus) deliverReply(p []byte) {
	var rep wire.AdminReply
	if err := json.Unmarshal(p, &rep); err != nil {
		b.log.Debug().Err(err).Msg("bus: undecodable management reply ignored")
		return
	}
	b.reqs.mu.Lock()
	ch := b.reqs.waiting[rep.ID]
	delete(b.reqs.waiting, rep.ID)
	b.reqs.mu.Unlock()
	if ch != nil {
		ch <- rep // buffered, and the only send: the entry is gone
	}
}

// serveRequest answers a request off the subscription goroutine (a handler may take a while:
// a kick waits for the connection to close), at most maxHandling at once.
func (b *Bus) serveRequest(p []byte) {
	var req wire.AdminRequest
	if err := json.Unmarshal(p, &req); err != nil || req.From == "" || req.ID == "" {
		b.log.Debug().Msg("bus: undecodable management request ignored")
		return
	}
	select {
	case b.reqs.handling <- struct{}{}:
	default:
		b.reply(req, nil, errors.New("busy: too many management requests at once"))
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() { <-b.reqs.handling }()
		if b.opts.OnRequest == nil {
			b.reply(req, nil, errors.New(wire.ErrTextUnknownOp))
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, requestHandlerTimeout)
		defer cancel()
		v, err := b.opts.OnRequest(ctx, req.Op, req.Body)
		b.reply(req, v, err)
	}()
}

// reply sends the answer to req to its sender's control channel.
func (b *Bus) reply(req wire.AdminRequest, v any, herr error) {
	rep := wire.AdminReply{ID: req.ID, Replica: b.opts.ReplicaID}
	if herr != nil {
		rep.Error = herr.Error()
	} else if v != nil {
		raw, err := json.Marshal(v)
		if err != nil {
			rep.Error = "encoding the reply: " + err.Error()
		} else {
			rep.Body = raw
		}
	}
	payload, err := wire.EncodeAdmin(wire.ControlReply, &rep)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.ReadTimeout)
	defer cancel()
	if err := b.PublishControl(ctx, req.From, payload); err != nil {
		b.log.Debug().Err(err).Str("to", req.From).Str("op", req.Op).Msg("bus: management reply not delivered")
	}
}
