package auth

import (
	"strings"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Where a topic lies relative to the health gateway's probe topics (wire.ProbeTopicPrefix).
const (
	probeOutside  = iota // no probe topic
	probeInside          // a probe topic, or a filter matching only probe topics
	probeOverlaps        // a filter matching probe topics and others: $mcloudtt/#, $mcloudtt/+/x
)

// probeScope places topic (a topic name for Read and Write, a filter for Subscribe, where a shared
// subscription's filter counts). Wildcards in the first level never match '$' topics
// [MQTT-4.7.2-1], so only filters starting with $mcloudtt can reach them.
func probeScope(topic string, access Access) int {
	if access == Subscribe {
		topic = stripShare(topic)
	}
	if !strings.HasPrefix(topic, "$mcloudtt/") {
		return probeOutside
	}
	if strings.HasPrefix(topic, wire.ProbeTopicPrefix) {
		return probeInside
	}
	if access != Subscribe {
		return probeOutside
	}
	levels := strings.SplitN(topic, "/", 3)
	switch {
	case levels[1] == "#":
		return probeOverlaps
	case levels[1] == "+" && len(levels) == 3:
		return probeOverlaps // $mcloudtt/+/... may match $mcloudtt/probe/...
	}
	return probeOutside
}
