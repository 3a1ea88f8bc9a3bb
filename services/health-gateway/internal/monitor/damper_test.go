package monitor

import (
	"testing"
	"time"
)

func TestDamperNeedsAPersistentFailureAndRecovery(t *testing.T) {
	const failAfter, recoverAfter = 3 * time.Second, 5 * time.Second
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	d := newDamper(t0)
	steps := []struct {
		at      float64
		ok      bool
		want    Status
		pending bool
	}{
		{1, false, Green, true}, // a failure starts the clock
		{2, true, Green, false}, // one success in between resets it
		{3, false, Green, true},
		{5.9, false, Green, true},
		{6, false, Red, false}, // failing for 3 s
		{7, true, Red, true},   // recovering
		{11.9, true, Red, true},
		{12, true, Green, false}, // healthy for 5 s
	}
	for _, s := range steps {
		d.observe(at(s.at), s.ok, "probe lost", failAfter, recoverAfter)
		if d.status != s.want || d.pending() != s.pending {
			t.Fatalf("t=%v ok=%v: status %s pending %v, want %s pending %v", s.at, s.ok, d.status, d.pending(), s.want, s.pending)
		}
	}
	if d.since != at(12) || d.detail != "probe lost" {
		t.Fatalf("since %v detail %q", d.since, d.detail)
	}
	// eval alone turns it red on time, without a new observation.
	d.observe(at(20), false, "again", failAfter, recoverAfter)
	d.eval(at(22.9), failAfter, recoverAfter)
	if d.status != Green {
		t.Fatal("red too early")
	}
	d.eval(at(23), failAfter, recoverAfter)
	if d.status != Red {
		t.Fatal("not red after failAfter")
	}
}

func TestDamperWithoutDampingFollowsAtOnce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := newDamper(t0)
	d.observe(t0.Add(time.Millisecond), false, "x", 0, 0)
	if d.status != Red {
		t.Fatal("want red at once")
	}
	d.observe(t0.Add(2*time.Millisecond), true, "", 0, 0)
	if d.status != Green {
		t.Fatal("want green at once")
	}
}
