package cluster

import (
	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// Forward is one destination replica of a message, with what it is for there.
type Forward struct {
	Replica string
	Plain   bool     // the replica has non-shared subscriptions for it
	Groups  []string // shared groups ("group/filter") the replica serves it to
}

// recvLoop routes what other replicas forwarded to this one, and passes wake-ups on.
func (c *Cluster) recvLoop() {
	var msgs []bus.Message
	for {
		var b []byte
		select {
		case <-c.stop:
			return
		case b = <-c.inbox:
		}
		var err error
		msgs, err = bus.DecodeBatchInto(msgs[:0], b)
		if err != nil {
			c.log.Warn().Err(err).Msg("undecodable batch from the bus dropped")
			continue
		}
		n := 0
		for i := range msgs {
			if msgs[i].Flags&flagWake != 0 {
				c.host.Wake(msgs[i].ClientID)
				continue
			}
			msgs[n] = msgs[i]
			n++
		}
		if n > 0 {
			c.received.Add(int64(n))
			c.host.Deliver(msgs[:n])
		}
		clear(msgs)
	}
}

// Forward sends bm to the destinations (bm.Plain and bm.Groups are set per destination). done,
// when not nil, is called once per destination with the bus's verdict.
func (c *Cluster) Forward(bm *bus.Message, fws []Forward, done func(error)) {
	for i := range fws {
		f := &fws[i]
		bm.Plain, bm.Groups = f.Plain, f.Groups
		c.forwarded.Add(1)
		c.bus.Publish(f.Replica, bm, done)
	}
}
