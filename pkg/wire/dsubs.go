package wire

import (
	"encoding/binary"
	"fmt"
)

// The index of persistent subscriptions (Names.DurableSubs): its values and the notices of its
// changes (Names.DurableSubsChanges).

// DurableSub is one indexed subscription.
type DurableSub struct {
	Filter            string
	QoS               byte // 1 or 2
	NoLocal           bool
	RetainAsPublished bool
}

// DurableSubs are a persistent session's indexed subscriptions.
type DurableSubs struct {
	Inc  uint64 // the session's incarnation: appends carry it (see bus.Append)
	Subs []DurableSub
}

// DurableSubsChange announces a change of one entry.
type DurableSubsChange struct {
	Client string
	Subs   *DurableSubs // nil: the entry was deleted
	Origin string       // the replica that wrote it
	Seq    uint64       // that replica's counter, to recognise its own notices
}

const dsubsVersion = 1

// EncodeDurableSubs is the binary form: version, inc, count, then per subscription filter
// (uvarint length + bytes) and a flags byte (bits 0-1 QoS, 2 no local, 3 retain as published).
func EncodeDurableSubs(dst []byte, ds DurableSubs) []byte {
	dst = append(dst, dsubsVersion)
	dst = binary.AppendUvarint(dst, ds.Inc)
	dst = binary.AppendUvarint(dst, uint64(len(ds.Subs)))
	for _, s := range ds.Subs {
		dst = appendStr(dst, s.Filter)
		f := s.QoS & 3
		if s.NoLocal {
			f |= 4
		}
		if s.RetainAsPublished {
			f |= 8
		}
		dst = append(dst, f)
	}
	return dst
}

// DecodeDurableSubs parses EncodeDurableSubs' output; the strings are copied.
func DecodeDurableSubs(p []byte) (DurableSubs, error) {
	var ds DurableSubs
	if len(p) < 1 || p[0] != dsubsVersion {
		return ds, fmt.Errorf("%w: durable subscriptions: bad version", ErrMalformed)
	}
	d := decoder{b: p, off: 1}
	ds.Inc = d.uvarint("incarnation")
	n := d.uvarint("count")
	if d.err == nil && n > uint64(len(p)) {
		d.fail("count exceeds the value")
	}
	for i := uint64(0); d.err == nil && i < n; i++ {
		f := string(d.bytes("filter"))
		if d.err != nil {
			break
		}
		if d.off >= len(p) {
			d.fail("flags")
			break
		}
		fl := p[d.off]
		d.off++
		ds.Subs = append(ds.Subs, DurableSub{Filter: f, QoS: fl & 3, NoLocal: fl&4 != 0, RetainAsPublished: fl&8 != 0})
	}
	if d.err == nil && d.off != len(p) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return DurableSubs{}, d.err
	}
	return ds, nil
}

const dsubsChangeVersion = 1

// AppendDurableSubsChange appends c's binary form, the notice on Names.DurableSubsChanges:
// version, op (1 set, 2 delete), client, origin, seq, [value].
func AppendDurableSubsChange(dst []byte, c DurableSubsChange) []byte {
	op := byte(2)
	if c.Subs != nil {
		op = 1
	}
	dst = append(dst, dsubsChangeVersion, op)
	dst = appendStr(dst, c.Client)
	dst = appendStr(dst, c.Origin)
	dst = binary.AppendUvarint(dst, c.Seq)
	if c.Subs != nil {
		dst = EncodeDurableSubs(dst, *c.Subs)
	}
	return dst
}

// DecodeDurableSubsChange parses a notice.
func DecodeDurableSubsChange(p []byte) (DurableSubsChange, error) {
	var c DurableSubsChange
	if len(p) < 2 || p[0] != dsubsChangeVersion || (p[1] != 1 && p[1] != 2) {
		return c, fmt.Errorf("%w: durable subscriptions notice: bad header", ErrMalformed)
	}
	d := decoder{b: p, off: 2}
	c.Client = string(d.bytes("client"))
	c.Origin = string(d.bytes("origin"))
	c.Seq = d.uvarint("seq")
	if d.err != nil {
		return DurableSubsChange{}, d.err
	}
	if p[1] == 1 {
		ds, err := DecodeDurableSubs(p[d.off:])
		if err != nil {
			return DurableSubsChange{}, err
		}
		c.Subs = &ds
	} else if d.off != len(p) {
		return DurableSubsChange{}, fmt.Errorf("%w: durable subscriptions notice: trailing bytes", ErrMalformed)
	}
	return c, nil
}
