package bus

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

func TestRouteTable(t *testing.T) {
	s := redistest.Start(t)
	changes := make(chan RouteChange, 16)
	ow := testOptions(t, "r2", s.Addr())
	ow.OnRouteChange = func(rc RouteChange) { changes <- rc }
	r2 := newBus(t, ow)
	r1 := newBus(t, testOptions(t, "r1", s.Addr()))
	waitConnected(t, r1, r2)
	ctx := context.Background()
	next := func() RouteChange {
		t.Helper()
		select {
		case rc := <-changes:
			return rc
		case <-time.After(3 * time.Second):
			t.Fatal("no route change notice")
			return RouteChange{}
		}
	}

	if err := r1.AddRoutes(ctx, "r1", "sensors/#", "$share/g/a/+", "x/y"); err != nil {
		t.Fatal(err)
	}
	if rc := next(); !reflect.DeepEqual(rc, RouteChange{Op: RouteAdd, Replica: "r1",
		Filters: []string{"sensors/#", "$share/g/a/+", "x/y"}}) {
		t.Fatalf("add notice %+v", rc)
	}
	if err := r1.RemoveRoutes(ctx, "r1", "x/y"); err != nil {
		t.Fatal(err)
	}
	if rc := next(); rc.Op != RouteRemove || !reflect.DeepEqual(rc.Filters, []string{"x/y"}) {
		t.Fatalf("remove notice %+v", rc)
	}
	fs, err := r2.Routes(ctx, "r1")
	if err != nil || !reflect.DeepEqual(fs, []string{"$share/g/a/+", "sensors/#"}) {
		t.Fatalf("Routes = %v, %v", fs, err)
	}
	if err := r1.TouchReplica(ctx, "r1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r2.DropReplica(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if rc := next(); rc.Op != RouteDrop || rc.Replica != "r1" || len(rc.Filters) != 0 {
		t.Fatalf("drop notice %+v", rc)
	}
	if fs, _ := r2.Routes(ctx, "r1"); len(fs) != 0 {
		t.Fatalf("routes after drop: %v", fs)
	}
	if rs, _ := r2.Replicas(ctx); len(rs) != 0 {
		t.Fatalf("replicas after drop: %v", rs)
	}
	if err := r1.AddRoutes(ctx, "bad{id}", "a"); err == nil {
		t.Fatal("bad replica id accepted")
	}
	if err := r1.AddRoutes(ctx, "r1"); err != nil {
		t.Fatal("no filters:", err)
	}
}

func TestRouteChangeCodec(t *testing.T) {
	for _, rc := range []RouteChange{
		{Op: RouteAdd, Replica: "r1", Filters: []string{"a/#", "", "$share/g/+/b"}},
		{Op: RouteRemove, Replica: "broker-0", Filters: []string{"x"}},
		{Op: RouteDrop, Replica: "r9"},
	} {
		b := AppendRouteChange(nil, rc)
		got, err := DecodeRouteChange(b)
		if err != nil || !reflect.DeepEqual(got, rc) {
			t.Fatalf("%+v: got %+v, %v", rc, got, err)
		}
		for n := 0; n < len(b); n++ {
			if _, err := DecodeRouteChange(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%+v truncated to %d: %v", rc, n, err)
			}
		}
	}
	for _, bad := range [][]byte{{2, 1, 0, 0}, {1, 0, 0, 0}, {1, 4, 0, 0}, {1, 1, 0, 0x7f}, {1, 1, 0, 0, 9}} {
		if _, err := DecodeRouteChange(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

func FuzzDecodeRouteChange(f *testing.F) {
	f.Add(AppendRouteChange(nil, RouteChange{Op: RouteAdd, Replica: "r1", Filters: []string{"a/#"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		rc, err := DecodeRouteChange(data)
		if err != nil {
			return
		}
		again, err := DecodeRouteChange(AppendRouteChange(nil, rc))
		if err != nil || !reflect.DeepEqual(rc, again) {
			t.Fatalf("round trip: %+v -> %+v, %v", rc, again, err)
		}
	})
}
