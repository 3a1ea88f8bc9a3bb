package topic

import (
	"fmt"
	"strings"
)

// sharePrefix starts every shared subscription filter [MQTT-4.8.2-1].
const sharePrefix = "$share/"

// Share is a parsed shared subscription filter "$share/<Group>/<Filter>" (MQTT 5.0 section 4.8.2).
// Group is the ShareName; Filter is the topic filter the group's members match names against.
type Share struct{ Group, Filter string }

// isShare reports whether filter's first level is "$share", which puts it in the shared subscription
// namespace. "$shared/x" and "$SHARE/x" are ordinary filters.
func isShare(filter string) bool {
	return filter == "$share" || strings.HasPrefix(filter, sharePrefix)
}

// ParseShare splits a shared subscription filter "$share/<group>/<filter>".
//
// shared reports whether the filter's first level is "$share", even when err != nil: such a filter
// is never an ordinary one. When shared is false, s.Filter is filter unchanged, err is nil, and
// filter itself is not validated (ValidateFilter does that).
//
// When shared is true, the whole filter is validated: the share name must be at least one character
// [MQTT-4.8.2-1] without '/', '+' or '#', and must be followed by '/' and a valid, non-empty topic
// filter [MQTT-4.8.2-2]. The inner filter is checked as an ordinary filter, so "$share/g/$share/x" is
// the group g on the filter "$share/x". s is the zero Share when err != nil. Errors wrap both
// ErrInvalidShare and ErrInvalidFilter.
//
// s.Group and s.Filter are substrings of filter; ParseShare does not allocate unless it fails.
func ParseShare(filter string) (s Share, shared bool, err error) {
	if !isShare(filter) {
		return Share{Filter: filter}, false, nil
	}
	if msg := checkString(filter); msg != "" {
		return Share{}, true, shareError(msg)
	}
	if filter == "$share" {
		return Share{}, true, shareError("no share name") // [MQTT-4.8.2-1]
	}
	group, inner, found := strings.Cut(filter[len(sharePrefix):], "/")
	switch {
	case group == "":
		return Share{}, true, shareError("empty share name") // [MQTT-4.8.2-1]
	case strings.ContainsAny(group, "+#"):
		return Share{}, true, shareError(fmt.Sprintf("share name %q contains a wildcard", group)) // [MQTT-4.8.2-2]
	case !found:
		return Share{}, true, shareError(fmt.Sprintf("share name %q is not followed by '/' and a topic filter", group)) // [MQTT-4.8.2-2]
	case inner == "":
		return Share{}, true, shareError(fmt.Sprintf("share name %q is followed by an empty topic filter", group)) // [MQTT-4.8.2-2]
	}
	if msg := checkLevels(inner); msg != "" {
		return Share{}, true, shareError(msg)
	}
	return Share{Group: group, Filter: inner}, true, nil
}

func shareError(msg string) error {
	return fmt.Errorf("%w: %w: %s", ErrInvalidFilter, ErrInvalidShare, msg)
}

// String returns the filter that ParseShare parses into s: "$share/<Group>/<Filter>".
func (s Share) String() string { return sharePrefix + s.Group + "/" + s.Filter }
