package bqtest

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// GRPCFaultProxy forwards gRPC calls (the Storage Write API) to a target and fails a share of
// them, in two ways: before forwarding (UNAVAILABLE; the target never saw the request), or after
// the target answered (its answer is thrown away and the client gets UNAVAILABLE): the case
// where a client cannot know whether its append took effect. On AppendRows, a bidirectional
// stream, each request is a separate chance of failure and a failure ends the stream, as a
// broken connection does; other methods fail per call. Messages are forwarded as raw bytes.
type GRPCFaultProxy struct {
	Addr string

	before, after atomic.Int64 // shares failed, in 1/1000

	Appends, FailedBefore, FailedAfter atomic.Int64
	rolls                              atomic.Int64
	forcedBefore, forcedAfter          atomic.Bool
}

// rawCodec passes messages through undecoded.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" } // what the client and server speak on the wire

// StartGRPCFaultProxy starts a proxy to target (host:port, plain text) on a free loopback port.
func StartGRPCFaultProxy(t testing.TB, target string) *GRPCFaultProxy {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &GRPCFaultProxy{Addr: ln.Addr().String()}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.MaxRecvMsgSize(64<<20),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error { return p.serve(conn, ss) }))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		_ = conn.Close()
	})
	return p
}

// SetFaults sets the shares (0 to 1) of requests failed before and after forwarding.
func (p *GRPCFaultProxy) SetFaults(before, after float64) {
	p.before.Store(int64(before * 1000))
	p.after.Store(int64(after * 1000))
}

// roll decides one request's fate: 0 forward, 1 fail before, 2 fail after (see rollFault).
func (p *GRPCFaultProxy) roll() int {
	fate := rollFault(p.rolls.Add(1), p.before.Load(), p.after.Load(), &p.forcedBefore, &p.forcedAfter)
	if fate == faultBefore {
		p.FailedBefore.Add(1)
	}
	return fate
}

var (
	errBefore = status.Error(codes.Unavailable, "injected: backend unavailable")
	errAfter  = status.Error(codes.Unavailable, "injected: answer lost")
)

func (p *GRPCFaultProxy) serve(conn *grpc.ClientConn, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	md, _ := metadata.FromIncomingContext(ss.Context())
	// The forwarded call does not end when the client goes away: like BigQuery, the emulator
	// completes what it received, which is the case the adapter must survive.
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 10*time.Minute)
	defer cancel()
	if !strings.HasSuffix(method, "/AppendRows") {
		return p.unary(ctx, conn, method, ss)
	}
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	// Let the target finish what it received before the stream is torn down.
	defer func() {
		_ = cs.CloseSend()
		var drain []byte
		for cs.RecvMsg(&drain) == nil {
		}
	}()
	for {
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		p.Appends.Add(1)
		fate := p.roll()
		if fate == 1 {
			return errBefore
		}
		if err := cs.SendMsg(&req); err != nil {
			return err
		}
		var resp []byte
		if err := cs.RecvMsg(&resp); err != nil {
			return err
		}
		if fate == 2 {
			p.FailedAfter.Add(1)
			return errAfter
		}
		if err := ss.SendMsg(&resp); err != nil {
			return err
		}
	}
}

// unary forwards a call of one request and one answer (CreateWriteStream, GetWriteStream,
// FinalizeWriteStream, ...).
func (p *GRPCFaultProxy) unary(ctx context.Context, conn *grpc.ClientConn, method string, ss grpc.ServerStream) error {
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	fate := p.roll()
	if fate == 1 {
		return errBefore
	}
	var resp []byte
	if err := conn.Invoke(ctx, method, &req, &resp); err != nil {
		return err
	}
	if fate == 2 {
		p.FailedAfter.Add(1)
		return errAfter
	}
	return ss.SendMsg(&resp)
}
