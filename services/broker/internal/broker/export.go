package broker

import (
	"sync"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// exportBatch is a connection's messages to export, gathered while it handles a burst of input:
// an export batch (bus.ExportBatch) of n messages, base the publisher frame the last ones follow.
type exportBatch struct {
	buf  []byte
	n    int
	base bus.ExportBase
}

// export adds bm to the connection's export batch, which goes to the export queue at the next
// flushKicks (the end of a burst of input): one lock of the shared queue per burst instead of
// one per message. The batch states the publisher once (a publisher frame, whose id and time
// the messages' are differences from) for all its messages. Called from the reader goroutine
// only.
func (c *client) export(bm *bus.Message) {
	x := c.exp
	if x == nil {
		x = exportBufs.Get().(*exportBatch)
		x.buf = bus.AppendExportBatchHeader(x.buf[:0])
		c.exp = x
	}
	if x.n == 0 || !x.base.Fits(bm) {
		x.base.SetFrom(bm)
		x.buf = bus.AppendExportBase(x.buf, &x.base)
	}
	b, err := bus.AppendExportMessage(x.buf, &x.base, bm)
	if err != nil {
		return // QoS above 2: the codec never lets one in
	}
	x.buf = b
	x.n++
	if len(b) >= exportFlushBytes {
		c.flushExport()
	}
}

// flushExport hands the connection's export batch over.
func (c *client) flushExport() {
	x := c.exp
	if x == nil {
		return
	}
	if x.n > 0 {
		c.srv.cluster.ExportBatch(x.buf, x.n)
	}
	x.n, x.base = 0, bus.ExportBase{}
	if cap(x.buf) <= 4*exportFlushBytes {
		exportBufs.Put(x)
	}
	c.exp = nil
}

// exportFlushBytes hands a connection's export batch over early when it grows this large.
const exportFlushBytes = 64 << 10

// exportBufs are the connections' export batches, held only during a burst of input.
var exportBufs = sync.Pool{New: func() any { return &exportBatch{buf: make([]byte, 0, 4096)} }}
