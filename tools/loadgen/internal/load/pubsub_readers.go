package load

import (
	"errors"
	"fmt"

	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/stats"
	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/wire"
)

// readErr records a reader's error unless the tool itself is closing the connection.
func (r *run) readErr(who string, id int, err error) {
	if !r.closing.Load() {
		r.errs.add(fmt.Errorf("%s %d: %w", who, id, err))
	}
}

// mqttAckLoop reads a publisher's connection: PUBACK (QoS 1), PUBREC → PUBREL and
// PUBCOMP (QoS 2), PINGRESP, and a server's DISCONNECT.
func (r *run) mqttAckLoop(p *publisher) {
	defer close(p.readerDone)
	c := p.c
	var scratch []byte
	pending := false
	for {
		hdr, body, err := wire.ReadPacket(c.r, &scratch, r.cfg.MaxPacket)
		if err != nil {
			if p.qos > 0 && r.cfg.Version == 4 {
				// v3.1.1 has no Receive Maximum; a broker that enforces its own inflight
				// limit (mosquitto: max_inflight_messages, default 20) just disconnects.
				err = fmt.Errorf("%w (is -inflight %d above the broker's inflight limit?)", err, r.cfg.Inflight)
			}
			r.readErr("publisher", p.id, err)
			return
		}
		switch typ := hdr >> 4; typ {
		case wire.PUBACK, wire.PUBREC, wire.PUBCOMP:
			id, reason, err := wire.ParseAck(body)
			if err != nil {
				r.readErr("publisher", p.id, err)
				return
			}
			release, sendRel, bad := false, false, false
			p.pidMu.Lock()
			if p.pidState == nil {
				bad = true
			} else {
				switch st := p.pidState[id]; {
				case typ == wire.PUBACK && p.qos == 1 && st == 1:
					p.pidState[id], release = 0, true
				case typ == wire.PUBREC && p.qos == 2 && st == 1 && reason >= 0x80:
					p.pidState[id], release = 0, true // v5: refused, the flow ends here
				case typ == wire.PUBREC && p.qos == 2 && (st == 1 || st == 2):
					p.pidState[id], sendRel = 2, true // a repeated PUBREC gets PUBREL again
				case typ == wire.PUBCOMP && p.qos == 2 && st == 2:
					p.pidState[id], release = 0, true
				default:
					bad = true
				}
			}
			p.pidMu.Unlock()
			if bad {
				r.errs.add(fmt.Errorf("publisher %d: unexpected packet type %d for packet id %d", p.id, typ, id))
				continue
			}
			if reason >= 0x80 {
				r.errs.add(fmt.Errorf("publisher %d: packet type %d refused with reason %#x", p.id, typ, reason))
			}
			if sendRel {
				c.queueAck(wire.PUBREL, id)
				pending = true
			}
			if release {
				p.ackOne(r.cfg.N)
			}
		case wire.PINGRESP:
		case wire.DISCONNECT:
			r.readErr("publisher", p.id, fmt.Errorf("server sent DISCONNECT, reason %#x", wire.DisconnectReason(body)))
			return
		default:
			r.errs.add(fmt.Errorf("publisher %d: unexpected packet type %d", p.id, typ))
		}
		if pending && c.r.Buffered() == 0 {
			c.kickCtl()
			pending = false
		}
	}
}

// redisAckLoop reads the replies to a publisher's pipelined PUBLISH commands.
func (r *run) redisAckLoop(p *publisher) {
	defer close(p.readerDone)
	rr := wire.NewRESPReader(p.c.r, r.cfg.MaxPacket)
	for {
		rep, err := rr.Read()
		if err != nil && !errors.Is(err, wire.ErrRedis) {
			r.readErr("publisher", p.id, err)
			return
		}
		if err != nil {
			r.errs.add(fmt.Errorf("publisher %d: %w", p.id, err))
		} else if rep.Kind != ':' {
			r.errs.add(fmt.Errorf("publisher %d: unexpected reply type %q", p.id, rep.Kind))
		}
		if p.acked.Load() >= int64(r.cfg.N) {
			continue
		}
		p.ackOne(r.cfg.N)
	}
}

// observe accounts for one delivered payload.
func (x *subscriber) observe(payload []byte) {
	t := now()
	pub, seq, sent, ok := parsePayload(payload)
	if !ok {
		x.tr.Unexpected++
		return
	}
	if x.tr.Observe(pub, seq, sent, t) == stats.New {
		x.got.Add(1)
	}
}

// mqttSubLoop reads a subscriber's connection and acknowledges what needs it:
// PUBACK for QoS 1; PUBREC, then PUBCOMP on PUBREL, for QoS 2. Acks are batched:
// written when the read buffer runs dry.
func (r *run) mqttSubLoop(x *subscriber) {
	defer close(x.done)
	c := x.c
	var scratch []byte
	var awaitingRel []uint8 // QoS 2 packet ids with PUBREC sent and PUBREL not yet received
	pending := 0
	for {
		hdr, body, err := wire.ReadPacket(c.r, &scratch, r.cfg.MaxPacket)
		if err != nil {
			r.readErr("subscriber", x.id, err)
			return
		}
		switch typ := hdr >> 4; typ {
		case wire.PUBLISH:
			pk, err := wire.ParsePublish(hdr, body, c.version)
			if err != nil {
				r.readErr("subscriber", x.id, err)
				return
			}
			x.observe(pk.Payload)
			switch pk.QoS {
			case 1:
				c.mu.Lock()
				c.out = wire.AppendAck(c.out, wire.PUBACK, pk.PacketID)
				c.mu.Unlock()
				pending++
			case 2:
				if awaitingRel == nil {
					awaitingRel = make([]uint8, 65536)
				}
				awaitingRel[pk.PacketID] = 1
				c.mu.Lock()
				c.out = wire.AppendAck(c.out, wire.PUBREC, pk.PacketID)
				c.mu.Unlock()
				pending++
			}
		case wire.PUBREL:
			id, _, err := wire.ParseAck(body)
			if err != nil {
				r.readErr("subscriber", x.id, err)
				return
			}
			if awaitingRel == nil || awaitingRel[id] == 0 {
				r.errs.add(fmt.Errorf("subscriber %d: PUBREL for packet id %d without a PUBREC", x.id, id))
			} else {
				awaitingRel[id] = 0
			}
			c.mu.Lock()
			c.out = wire.AppendAck(c.out, wire.PUBCOMP, id)
			c.mu.Unlock()
			pending++
		case wire.PINGRESP:
		case wire.DISCONNECT:
			r.readErr("subscriber", x.id, fmt.Errorf("server sent DISCONNECT, reason %#x", wire.DisconnectReason(body)))
			return
		default:
			r.errs.add(fmt.Errorf("subscriber %d: unexpected packet type %d", x.id, typ))
		}
		if pending > 0 && (c.r.Buffered() == 0 || pending >= 1024) {
			if err := c.flush(); err != nil {
				r.readErr("subscriber", x.id, err)
				return
			}
			pending = 0
		}
	}
}

// redisSubLoop reads a redis subscriber's pushed messages.
func (r *run) redisSubLoop(x *subscriber) {
	defer close(x.done)
	rr := wire.NewRESPReader(x.c.r, r.cfg.MaxPacket)
	for {
		rep, err := rr.Read()
		if err != nil {
			r.readErr("subscriber", x.id, err)
			return
		}
		if rep.Kind == '*' && len(rep.Elems) == 3 && string(rep.Elems[0]) == "message" {
			x.observe(rep.Elems[2])
		}
	}
}
