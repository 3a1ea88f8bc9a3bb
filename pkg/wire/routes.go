package wire

import (
	"encoding/binary"
	"fmt"
)

// Route-table notices: what a replica announces on Names.RouteChanges when its route table
// (Names.Routes) changes.

// RouteOp is what a RouteChange does.
type RouteOp byte

// Route operations.
const (
	RouteAdd    RouteOp = 1 // Filters were added to Replica's table
	RouteRemove RouteOp = 2 // Filters were removed from Replica's table
	RouteDrop   RouteOp = 3 // Replica is gone: forget its whole table (Filters is empty)
)

func (op RouteOp) String() string {
	switch op {
	case RouteAdd:
		return "add"
	case RouteRemove:
		return "remove"
	case RouteDrop:
		return "drop"
	}
	return fmt.Sprintf("RouteOp(%d)", byte(op))
}

// RouteChange is one announced change of a route table.
type RouteChange struct {
	Op      RouteOp
	Replica string
	Filters []string
}

// routeChangeVersion starts every encoded RouteChange.
const routeChangeVersion = 1

// AppendRouteChange appends rc's compact binary form: version byte, op byte, replica, filter
// count, filters; strings as uvarint length + bytes.
func AppendRouteChange(dst []byte, rc RouteChange) []byte {
	dst = append(dst, routeChangeVersion, byte(rc.Op))
	dst = appendStr(dst, rc.Replica)
	dst = binary.AppendUvarint(dst, uint64(len(rc.Filters)))
	for _, f := range rc.Filters {
		dst = appendStr(dst, f)
	}
	return dst
}

// DecodeRouteChange parses a notice. The strings are copied (notices are small and rare, and
// receivers keep the filters). It never panics and allocates at most 16 bytes of slice per input
// byte.
func DecodeRouteChange(p []byte) (RouteChange, error) {
	var rc RouteChange
	if len(p) < 2 || p[0] != routeChangeVersion {
		return rc, fmt.Errorf("%w: route change: bad header", ErrMalformed)
	}
	rc.Op = RouteOp(p[1])
	if rc.Op < RouteAdd || rc.Op > RouteDrop {
		return rc, fmt.Errorf("%w: route change: unknown op %d", ErrMalformed, p[1])
	}
	d := decoder{b: p, off: 2}
	rc.Replica = string(d.bytes("replica"))
	n := d.uvarint("filter count")
	if d.err == nil && n > uint64(len(p)-d.off) {
		d.fail("filter count exceeds the notice")
	}
	if d.err == nil && n > 0 {
		rc.Filters = make([]string, n)
		for i := range rc.Filters {
			rc.Filters[i] = string(d.bytes("filter"))
		}
	}
	if d.err == nil && d.off != len(p) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return RouteChange{}, d.err
	}
	return rc, nil
}
