package adapter

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/feed"
)

// TestBatchesStayUnderTheRequestLimit: entries of large messages go into batches whose rows fit
// one append (10 MB) whatever ADAPTER_BATCH_BYTES says, and a batch always takes its first entry.
func TestBatchesStayUnderTheRequestLimit(t *testing.T) {
	a := New(Options{BatchRows: 100000, BatchBytes: 8 << 20, DedupCache: 10}, nil, nil, NewMetrics(nil), zerolog.Nop())
	payload := strings.Repeat("x", 1<<20) // text: payload and payload_text, about 2 MiB a row
	var es []feed.Entry
	for i := 0; i < 12; i++ {
		m := bus.Message{ID: bus.NewMessageID(), Topic: "t/" + strconv.Itoa(i), Payload: []byte(payload), Created: time.Now().UnixNano()}
		b, _ := bus.AppendMessage(bus.AppendBatchHeader(nil), &m)
		es = append(es, feed.Entry{ID: "1-" + strconv.Itoa(i), Data: b})
	}
	bs := a.makeBatches(es, false)
	n := 0
	for _, b := range bs {
		if b.bytes > maxBatchBytes || len(b.entries) == 0 {
			t.Errorf("a batch of %d entries and %d bytes", len(b.entries), b.bytes)
		}
		n += len(b.entries)
	}
	if n != len(es) || len(bs) < 3 {
		t.Fatalf("%d entries in %d batches", n, len(bs))
	}
}
