package wire

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"
)

// TestMessageIDLayout: an id is a version 7 UUID of the RFC 9562 variant carrying the
// millisecond it was stamped with, and the string form shows the version.
func TestMessageIDLayout(t *testing.T) {
	at := time.Date(2026, 12, 7, 17, 30, 0, 123_456_789, time.UTC)
	id := NewMessageIDAt(at.UnixNano())
	if v := id[6] >> 4; v != 7 {
		t.Fatalf("version %d, want 7 (%s)", v, id)
	}
	if id[8]>>6 != 0b10 {
		t.Fatalf("variant bits %02b, want 10 (%s)", id[8]>>6, id)
	}
	ms := binary.BigEndian.Uint64(id[0:8]) >> 16
	if want := uint64(at.UnixMilli()); ms != want {
		t.Fatalf("timestamp %d ms, want %d", ms, want)
	}
	if s := id.String(); s[14] != '7' || len(s) != 36 {
		t.Fatalf("string form %q", s)
	}
	if id.IsZero() {
		t.Fatal("zero id")
	}
}

// TestMessageIDsUniqueAndTimeOrdered: ids made in the same millisecond by many goroutines at
// once are all different, and an id of a later millisecond sorts after them.
func TestMessageIDsUniqueAndTimeOrdered(t *testing.T) {
	now := time.Now().UnixNano()
	const workers, each = 8, 50_000
	ids := make([][]MessageID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				ids[w] = append(ids[w], NewMessageIDAt(now))
			}
		}()
	}
	wg.Wait()
	seen := make(map[MessageID]bool, workers*each)
	for _, l := range ids {
		for _, id := range l {
			if seen[id] {
				t.Fatalf("id %s made twice", id)
			}
			seen[id] = true
		}
	}
	later := NewMessageIDAt(now + int64(time.Millisecond))
	for id := range seen {
		if string(later[:]) <= string(id[:]) {
			t.Fatalf("%s of the next millisecond does not sort after %s", later, id)
		}
	}
}
