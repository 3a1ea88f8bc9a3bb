package bus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// secureOptions are testOptions logged in as s's ACL user over TLS, as a deployment on
// Memorystore with AUTH and in-transit encryption would be.
func secureOptions(t testing.TB, id string, s *redistest.Server) Options {
	o := testOptions(t, id, s.Addr())
	c := s.Conn()
	o.Username, o.Password, o.TLS = c.Username, c.Password, c.TLS
	return o
}

// The bus over TLS to a Redis with requirepass, as an ACL user limited to mcloudtt:* keys and
// channels: messages, control, heartbeats, route changes and the route table all work, and the
// subscription connection is the ACL user's too.
func TestBusOverTLSAsACLUser(t *testing.T) {
	s := redistest.Start(t, redistest.WithTLS(), redistest.WithPassword("admin-secret"),
		redistest.WithACLUser("mcloudtt", "bus-secret"))
	r2 := newReceiver()
	o2 := secureOptions(t, "r2", s)
	r2.attach(&o2)
	changes := make(chan RouteChange, 4)
	o2.OnRouteChange = func(rc RouteChange) { changes <- rc }
	beats := make(chan Heartbeat, 4)
	o2.OnHeartbeat = func(hb Heartbeat) {
		select {
		case beats <- hb:
		default:
		}
	}
	b2 := newBus(t, o2)
	b1 := newBus(t, secureOptions(t, "r1", s))
	waitConnected(t, b1, b2)

	d := newDoneRecorder()
	for i := uint64(0); i < 100; i++ {
		b1.Publish("r2", seqMessage("r1", i), d.done(i))
	}
	d.wait(t, 5*time.Second)
	if len(d.ok) != 100 {
		t.Fatalf("delivered %d of 100: %v", len(d.ok), d.errs)
	}
	waitFor(t, "100 messages over TLS", 5*time.Second, func() bool { return r2.count() == 100 })

	ctx := context.Background()
	if err := b1.PublishControl(ctx, "r2", []byte("kick c1")); err != nil {
		t.Fatal(err)
	}
	if err := b1.PublishHeartbeat(ctx, Heartbeat{Kind: KindBroker}); err != nil {
		t.Fatal(err)
	}
	if err := b1.AddRoutes(ctx, "r1", "sensors/#"); err != nil {
		t.Fatal(err)
	}
	select {
	case rc := <-changes:
		if rc.Replica != "r1" {
			t.Fatalf("route change %+v", rc)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no route change")
	}
	select {
	case <-beats:
	case <-time.After(3 * time.Second):
		t.Fatal("no heartbeat")
	}
	if rs, err := b2.Routes(ctx, "r1"); err != nil || len(rs) != 1 {
		t.Fatalf("routes %v %v", rs, err)
	}
	clients, err := s.Do("CLIENT", "LIST")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(clients, "\n") {
		if strings.Contains(line, "name=mcloudtt-r2-sub") && !strings.Contains(line, "user=mcloudtt") {
			t.Fatalf("subscription connection not logged in as the ACL user: %s", line)
		}
	}
	if !strings.Contains(clients, "name=mcloudtt-r2-sub") {
		t.Fatalf("no subscription connection in CLIENT LIST:\n%s", clients)
	}
}

// A wrong password, an untrusted server certificate and plain TCP to a TLS-only Redis each keep
// the bus not connected, with the cause in Status.LastError, while it keeps retrying; the first
// becomes connected once the password file is right.
func TestBusRefusedConnectionsSayWhy(t *testing.T) {
	s := redistest.Start(t, redistest.WithTLS(), redistest.WithACLUser("mcloudtt", "right"))
	for _, c := range []struct {
		name  string
		mod   func(o *Options)
		cause string
	}{
		{"wrong password", func(o *Options) { o.Password = "wrong" }, "wrong Redis user name or password"},
		{"untrusted certificate", func(o *Options) {
			o.TLS = &redisconn.TLS{CAFile: redistest.NewPKI(t).CAFile}
		}, "certificate is not trusted"},
		{"plain TCP to TLS-only", func(o *Options) { o.TLS = nil }, "only speaks TLS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := secureOptions(t, "r1", s)
			c.mod(&o)
			var statuses []Status
			o.OnStatus = func(st Status) { statuses = append(statuses, st) }
			b := newBus(t, o)
			waitFor(t, "the cause in LastError", 5*time.Second, func() bool {
				return strings.Contains(b.Status().LastError, c.cause)
			})
			// Still retrying, still not connected.
			time.Sleep(3 * tBackoffMax)
			if st := b.Status(); st.Connected || !strings.Contains(st.LastError, c.cause) {
				t.Fatalf("status %+v", st)
			}
		})
	}
}
