package monitor

import "time"

// Status is the damped colour of a pair, a member or the cluster.
type Status string

// Statuses.
const (
	Green Status = "green"
	Red   Status = "red"
)

// damper turns a stream of raw observations (healthy or not) into a status that changes only when
// the new observation has held for a while: failAfter to turn red, recoverAfter to turn green. One
// slow probe or one late heartbeat therefore never flips the status. A single healthy observation
// in the middle of failures restarts the clock, as it should: the path worked.
//
// A damper starts green: a new pair or member has to fail for failAfter before it is red.
type damper struct {
	status   Status
	since    time.Time // when status last changed
	rawOK    bool      // the latest observation
	rawSince time.Time // since when the observations have been rawOK
	detail   string    // what the latest failing observation said
}

func newDamper(now time.Time) damper {
	return damper{status: Green, since: now, rawOK: true, rawSince: now}
}

// observe records an observation at now and re-evaluates the status. detail describes a failure.
func (d *damper) observe(now time.Time, ok bool, detail string, failAfter, recoverAfter time.Duration) {
	if ok != d.rawOK {
		d.rawOK, d.rawSince = ok, now
	}
	if !ok {
		d.detail = detail
	}
	d.eval(now, failAfter, recoverAfter)
}

// eval changes the status when the observations have disagreed with it for long enough.
func (d *damper) eval(now time.Time, failAfter, recoverAfter time.Duration) {
	held := now.Sub(d.rawSince)
	switch {
	case d.status == Green && !d.rawOK && held >= failAfter:
		d.status, d.since = Red, now
	case d.status == Red && d.rawOK && held >= recoverAfter:
		d.status, d.since = Green, now
	}
}

// pending reports whether the latest observations disagree with the status: a failure not yet old
// enough to turn red, or a recovery not yet old enough to turn green.
func (d *damper) pending() bool { return (d.status == Green) != d.rawOK }
