package broker

import (
	"strings"
	"sync"

	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// RetainedStore keeps the last retained message of each topic [MQTT-3.3.1-5]. The single-replica
// broker uses memoryRetained; the cluster provides one backed by Redis.
type RetainedStore interface {
	// Set stores m as the topic's retained message; an empty payload removes it [MQTT-3.3.1-6],
	// [MQTT-3.3.1-7].
	Set(m *Message)
	// Match calls fn for every retained message whose topic matches filter.
	Match(filter string, fn func(*Message))
	// Len is the number of retained messages.
	Len() int
}

// memoryRetained is an in-process RetainedStore.
type memoryRetained struct {
	mu   sync.RWMutex
	msgs map[string]*Message
}

var _ RetainedStore = (*memoryRetained)(nil)

func newMemoryRetained() *memoryRetained {
	return &memoryRetained{msgs: make(map[string]*Message)}
}

func (r *memoryRetained) Set(m *Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(m.Payload) == 0 {
		delete(r.msgs, m.Topic)
		return
	}
	r.msgs[m.Topic] = m
}

func (r *memoryRetained) Match(filter string, fn func(*Message)) {
	r.mu.RLock()
	var found []*Message
	if !strings.ContainsAny(filter, "+#") {
		if m, ok := r.msgs[filter]; ok {
			found = append(found, m)
		}
	} else {
		for name, m := range r.msgs {
			if topic.Match(filter, name) {
				found = append(found, m)
			}
		}
	}
	r.mu.RUnlock()
	for _, m := range found {
		fn(m)
	}
}

func (r *memoryRetained) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.msgs)
}
