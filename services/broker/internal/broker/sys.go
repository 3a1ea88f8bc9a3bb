package broker

import (
	"strconv"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// Version is the broker version reported in $SYS/broker/version.
var Version = "dev"

// sysLoop refreshes the $SYS/broker/... topics every SysInterval, as retained messages, the way
// mosquitto does, so a client subscribing to $SYS/# sees current values at once.
func (s *Server) sysLoop() {
	t := time.NewTicker(s.cfg.SysInterval)
	defer t.Stop()
	s.publishSys()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.publishSys()
		}
	}
}

func (s *Server) publishSys() {
	now := time.Now()
	s.mu.Lock()
	sessions := len(s.sessions)
	s.mu.Unlock()
	vals := []struct {
		topic string
		value string
	}{
		{"$SYS/broker/version", "mcloudtt " + Version},
		{"$SYS/broker/id", s.cfg.ID},
		{"$SYS/broker/uptime", strconv.FormatInt(int64(now.Sub(s.started)/time.Second), 10) + " seconds"},
		{"$SYS/broker/clients/connected", strconv.FormatInt(s.stats.clients.Load(), 10)},
		{"$SYS/broker/clients/total", strconv.Itoa(sessions)},
		{"$SYS/broker/messages/received", strconv.FormatInt(s.stats.received(), 10)},
		{"$SYS/broker/messages/sent", strconv.FormatInt(s.stats.sent(), 10)},
		{"$SYS/broker/messages/dropped", strconv.FormatInt(s.stats.droppedTotal(), 10)},
		{"$SYS/broker/bytes/received", strconv.FormatInt(s.stats.bytesRecv.Load(), 10)},
		{"$SYS/broker/bytes/sent", strconv.FormatInt(s.stats.bytesSent.Load(), 10)},
		{"$SYS/broker/retained messages/count", strconv.Itoa(s.retained.Len())},
		{"$SYS/broker/subscriptions/count", strconv.Itoa(s.router.subs.Len())},
	}
	for _, v := range vals {
		s.publish(&message{ID: bus.NewMessageID(), Topic: v.topic, Payload: []byte(v.value), Retain: true, Created: now}, nil, nil)
	}
}

// PublishSys refreshes the $SYS topics now.
func (s *Server) PublishSys() { s.publishSys() }
