package topic_test

import (
	"fmt"
	"slices"

	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

func ExampleIndex() {
	type opts struct{ QoS byte }
	ix := topic.NewIndex[string, opts]() // client id → subscription options

	ix.Subscribe("sport/tennis/+", "alice", opts{QoS: 1})
	ix.Subscribe("sport/#", "alice", opts{QoS: 0})
	ix.Subscribe("#", "monitor", opts{QoS: 0})
	ix.Subscribe("$share/workers/sport/+/results", "w1", opts{QoS: 1})
	ix.Subscribe("$share/workers/sport/+/results", "w2", opts{QoS: 1})

	var lines []string
	ix.Match("sport/tennis/results",
		func(filter, client string, o opts) {
			// One call per matching filter: alice gets two, which the broker merges into one delivery.
			lines = append(lines, fmt.Sprintf("%s via %s (QoS %d)", client, filter, o.QoS))
		},
		func(g topic.SharedGroup[string, opts]) {
			// The broker picks one member, e.g. round-robin over g.Members.
			lines = append(lines, fmt.Sprintf("group %s on %s: %d members", g.Group, g.Filter, len(g.Members)))
		})
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	fmt.Println(ix.HasMatch("$SYS/uptime")) // '#' does not match $ topics
	// Output:
	// alice via sport/# (QoS 0)
	// alice via sport/tennis/+ (QoS 1)
	// group workers on sport/+/results: 2 members
	// monitor via # (QoS 0)
	// false
}

func ExampleParseShare() {
	s, shared, err := topic.ParseShare("$share/consumers/sensors/+/temp")
	fmt.Printf("%q %q %v %v\n", s.Group, s.Filter, shared, err)
	_, _, err = topic.ParseShare("$share/consumers")
	fmt.Println(err)
	// Output:
	// "consumers" "sensors/+/temp" true <nil>
	// invalid topic filter: invalid shared subscription: share name "consumers" is not followed by '/' and a topic filter
}
