package cluster

import (
	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// Exports reports whether messages on name go to the export stream.
func (c *Cluster) Exports(name string) bool {
	return c.exports != nil && !topic.IsSystem(name) && c.exports.HasMatch(name)
}

// Export appends bm to the export stream for the BigQuery adapter (see Exports). The bus counts
// what it could not queue.
func (c *Cluster) Export(bm *bus.Message) { c.bus.Export(bm) }

// ExportBatch queues the n messages of an export batch on the export stream (bus.ExportBatch).
func (c *Cluster) ExportBatch(batch []byte, n int) { c.bus.ExportBatch(batch, n) }

// ExportsPresence reports whether presence events can go to the export stream: once started.
func (c *Cluster) ExportsPresence() bool { return c.bus != nil }

// ExportPresence queues p, from this replica, on the export stream; a full queue drops it,
// counted by the bus.
func (c *Cluster) ExportPresence(p *bus.Presence) {
	p.Replica = c.self
	c.bus.ExportPresence(p)
}
