package bus

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

func presenceEvent(i int) Presence {
	p := Presence{ID: NewMessageID(), Connection: NewMessageID(), Kind: PresenceConnect,
		Time: time.Now().UnixNano() + int64(i), ConnectedAt: time.Now().UnixNano(), Replica: "r1",
		ClientID: "dev-" + strconv.Itoa(i), RemoteAddr: "10.0.0.7:" + strconv.Itoa(40000+i), Protocol: 4,
		KeepAlive: uint16(i * 7), SessionPresent: i%2 == 0, CleanStart: i%3 == 0}
	if i%2 == 1 {
		p.Kind, p.Cause, p.Username = PresenceDisconnect, "keepalive_timeout", "üser"
	}
	return p
}

func TestPresenceRoundTrip(t *testing.T) {
	want := []Presence{presenceEvent(0), presenceEvent(1), {ID: NewMessageID(), Kind: PresenceDisconnect}}
	batch := AppendBatchHeader(nil)
	for i := range want {
		batch = AppendPresence(batch, &want[i])
	}
	size := 1
	for i := range want {
		size += want[i].Size()
	}
	if len(batch) != size {
		t.Fatalf("encoded %d bytes, Size says %d", len(batch), size)
	}
	got, err := DecodePresenceBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestPresenceMalformed(t *testing.T) {
	good := AppendPresence(AppendBatchHeader(nil), &Presence{ID: NewMessageID(), Kind: PresenceConnect, ClientID: "c"})
	bad := map[string][]byte{
		"empty":           nil,
		"version":         append([]byte{9}, good[1:]...),
		"truncated":       good[:len(good)-1],
		"short body":      {1, 3, 0, 0, 0},
		"unknown kind":    func() []byte { b := append([]byte(nil), good...); b[2+32] = 7; return b }(),
		"string too long": func() []byte { b := append([]byte(nil), good...); b[len(b)-3] = 100; return b }(),
	}
	for name, b := range bad {
		if ps, err := DecodePresenceBatch(b); !errors.Is(err, ErrMalformed) || ps != nil {
			t.Errorf("%s: %v, %d events", name, err, len(ps))
		}
	}
}

func FuzzDecodePresenceBatch(f *testing.F) {
	ev := presenceEvent(1)
	f.Add(AppendPresence(AppendBatchHeader(nil), &ev))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := DecodePresenceBatch(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		re := AppendBatchHeader(nil)
		for i := range ps {
			re = AppendPresence(re, &ps[i])
		}
		again, err := DecodePresenceBatch(re)
		if err != nil || !reflect.DeepEqual(again, ps) {
			t.Fatalf("re-encoded batch decodes to %+v, %v; want %+v", again, err, ps)
		}
	})
}

// TestExportPresenceBesideMessages: presence events and messages queued in turn land in entries
// of their own kind, in the order they were queued.
func TestExportPresenceBesideMessages(t *testing.T) {
	srv := redistest.Start(t)
	b := newBus(t, testOptions(t, "r1", srv.Addr()))
	var order []string // "m" or "p" per item, as queued
	var events []Presence
	for i := 0; i < 300; i++ {
		if i%10 == 3 {
			p := presenceEvent(i)
			events = append(events, p)
			if !b.ExportPresence(&p) {
				t.Fatal("refused")
			}
			order = append(order, "p")
			continue
		}
		m := exportMsg(i)
		if !b.Export(&m) {
			t.Fatal("refused")
		}
		order = append(order, "m")
	}
	waitFor(t, "exported", 10*time.Second, func() bool {
		st := b.Stats()
		return st.Exported == 270 && st.ExportPresence == 30
	})
	entries, err := b.Client().XRange(context.Background(), b.Names().Export(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var gotEvents []Presence
	for _, e := range entries {
		if len(e.Values) != 1 {
			t.Fatalf("entry %s has fields %v", e.ID, e.Values)
		}
		if v, ok := e.Values[PresenceField].(string); ok {
			ps, err := DecodePresenceBatch([]byte(v))
			if err != nil {
				t.Fatal(err)
			}
			for range ps {
				got = append(got, "p")
			}
			gotEvents = append(gotEvents, ps...)
			continue
		}
		ms, err := DecodeExportEntry([]byte(e.Values[ExportField].(string)))
		if err != nil {
			t.Fatal(err)
		}
		for range ms {
			got = append(got, "m")
		}
	}
	if !reflect.DeepEqual(got, order) {
		t.Fatalf("stream order %v\nqueued       %v", got, order)
	}
	if !reflect.DeepEqual(gotEvents, events) {
		t.Fatalf("events differ:\n%+v\n%+v", gotEvents, events)
	}
	if st := b.Stats(); st.ExportDropped != 0 || st.ExportPresenceDropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}
