package broker

import (
	"strings"
	"sync"

	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// memoryRetained keeps the last retained message of each topic [MQTT-3.3.1-5], in memory. In a
// cluster every replica holds a full copy (so a wildcard SUBSCRIBE is answered locally), Redis
// the truth (internal/cluster retained.go), and changes travel to every replica.
type memoryRetained struct {
	mu   sync.RWMutex
	msgs map[string]*message
}

func newMemoryRetained() *memoryRetained {
	return &memoryRetained{msgs: make(map[string]*message)}
}

func (r *memoryRetained) Set(m *message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(m.Payload) == 0 {
		delete(r.msgs, m.Topic)
		return
	}
	r.msgs[m.Topic] = m
}

func (r *memoryRetained) Match(filter string, fn func(*message)) {
	r.mu.RLock()
	var found []*message
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

// setNewer stores a retained message from another replica or from Redis, unless a newer one for
// its topic arrived first.
func (r *memoryRetained) setNewer(m *message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.msgs[m.Topic]; old != nil && old.Created.After(m.Created) {
		return
	}
	if len(m.Payload) == 0 {
		delete(r.msgs, m.Topic)
		return
	}
	r.msgs[m.Topic] = m
}

// each calls fn for every retained message.
func (r *memoryRetained) each(fn func(*message)) {
	r.mu.RLock()
	all := make([]*message, 0, len(r.msgs))
	for _, m := range r.msgs {
		all = append(all, m)
	}
	r.mu.RUnlock()
	for _, m := range all {
		fn(m)
	}
}

// prune drops the retained messages drop selects.
func (r *memoryRetained) prune(drop func(*message) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, m := range r.msgs {
		if drop(m) {
			delete(r.msgs, name)
		}
	}
}
