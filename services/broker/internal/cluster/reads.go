package cluster

import (
	"context"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

type pendingRead struct {
	r  *bus.LogRead
	fn func([]bus.LogEntry, error)
}

// Read reads up to n entries of session id's log from entry from (after it, with after), and
// calls fn with them from the reader goroutine.
func (s *Store) Read(id, from string, after bool, n int, fn func([]bus.LogEntry, error)) {
	s.rmu.Lock()
	s.reads = append(s.reads, &pendingRead{r: &bus.LogRead{Session: id, From: from, After: after, Count: n}, fn: fn})
	s.rmu.Unlock()
	select {
	case s.rkick <- struct{}{}:
	default:
	}
}

func (s *Store) readLoop() {
	for {
		select {
		case <-s.stopped:
			return
		case <-s.rkick:
		}
		for {
			s.rmu.Lock()
			rs := s.reads
			s.reads = nil
			s.rmu.Unlock()
			if len(rs) == 0 {
				break
			}
			lrs := make([]*bus.LogRead, len(rs))
			for i, r := range rs {
				lrs[i] = r.r
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.c.bus.ReadLogs(ctx, lrs)
			cancel()
			for _, r := range rs {
				r.fn(r.r.Entries, r.r.Err)
			}
		}
	}
}
