package topic

import (
	"errors"
	"fmt"
	"iter"
	"strings"
	"unicode/utf8"
)

// MaxLength is the longest topic name or filter in bytes: both are UTF-8 Encoded Strings, whose
// length prefix is two bytes [MQTT-4.7.3-3]. Tighter limits are the broker's policy.
const MaxLength = 65535

// Errors. Every error this package returns wraps one (or two) of them with detail, so callers pick a
// reason code with errors.Is: ErrInvalidName → 0x90 Topic Name invalid, ErrInvalidFilter → 0x8F Topic
// Filter invalid. An error about $share syntax wraps both ErrInvalidShare and ErrInvalidFilter: it is
// a filter error, and a broker without shared subscriptions may prefer 0x9E for it.
var (
	ErrInvalidName   = errors.New("invalid topic name")
	ErrInvalidFilter = errors.New("invalid topic filter")
	ErrInvalidShare  = errors.New("invalid shared subscription")
)

// IsSystem reports whether name starts with '$'. Such topics ($SYS/...) are the server's: a filter
// starting with a wildcard does not match them [MQTT-4.7.2-1].
func IsSystem(name string) bool { return len(name) > 0 && name[0] == '$' }

// ValidateName checks a topic name, as carried by PUBLISH and the Will Topic. It does not allocate
// unless it fails.
func ValidateName(name string) error {
	if err := checkString(name); err != "" {
		return fmt.Errorf("%w: %s", ErrInvalidName, err)
	}
	if i := strings.IndexAny(name, "+#"); i >= 0 {
		return fmt.Errorf("%w: wildcard %q at byte %d", ErrInvalidName, name[i], i) // [MQTT-3.3.2-2]
	}
	return nil
}

// ValidateFilter checks a topic filter, as carried by SUBSCRIBE and UNSUBSCRIBE. A filter whose first
// level is "$share" is a shared subscription and must also satisfy ParseShare. It does not allocate
// unless it fails.
func ValidateFilter(filter string) error {
	if isShare(filter) {
		_, _, err := ParseShare(filter)
		return err
	}
	if err := checkString(filter); err != "" {
		return fmt.Errorf("%w: %s", ErrInvalidFilter, err)
	}
	if err := checkLevels(filter); err != "" {
		return fmt.Errorf("%w: %s", ErrInvalidFilter, err)
	}
	return nil
}

// checkString checks what topic names and filters have in common and returns what is wrong, or "".
// Strings, not errors, so that the caller picks the sentinel and the success path allocates nothing.
func checkString(s string) string {
	switch {
	case len(s) == 0:
		return "empty" // [MQTT-4.7.3-1]
	case len(s) > MaxLength:
		return fmt.Sprintf("%d bytes, longer than %d", len(s), MaxLength) // [MQTT-4.7.3-3]
	case strings.IndexByte(s, 0) >= 0:
		return "contains U+0000" // [MQTT-4.7.3-2]
	case !utf8.ValidString(s):
		// The codec rejects these first [MQTT-1.5.4-1]; checked again so that the package stands alone.
		// utf8.ValidString also rejects the surrogates U+D800..U+DFFF, as the spec asks.
		return "not well-formed UTF-8"
	}
	return ""
}

// checkLevels checks the wildcards of a filter: '#' alone in the last level [MQTT-4.7.1-2] (MQTT 5.0
// numbers it 4.7.1-1), '+' alone in its level [MQTT-4.7.1-3] (5.0: 4.7.1-2).
func checkLevels(filter string) string {
	for rest, more := filter, true; more; {
		var level string
		level, rest, more = cut(rest)
		if len(level) == 1 {
			if level == "#" && more {
				return "'#' is not the last level"
			}
			continue
		}
		if strings.IndexByte(level, '#') >= 0 {
			return fmt.Sprintf("'#' is not alone in level %q", level)
		}
		if strings.IndexByte(level, '+') >= 0 {
			return fmt.Sprintf("'+' is not alone in level %q", level)
		}
	}
	return ""
}

// cut splits s at its first '/': the first level, what follows the '/', and whether there was one.
// "a/" has two levels, "a" and "", which is why more is needed besides rest.
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// LevelCount returns the number of levels in a topic name or filter: one more than its number of
// '/'. The empty string has none. The broker compares it with its maximum topic depth.
func LevelCount(s string) int {
	if s == "" {
		return 0
	}
	return strings.Count(s, "/") + 1
}

// Levels yields the levels of a topic name or filter, which are substrings of s (nothing is copied).
// It yields LevelCount(s) levels: none for "", two empty ones for "/".
func Levels(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		if s == "" {
			return
		}
		for rest, more := s, true; more; {
			var level string
			level, rest, more = cut(rest)
			if !yield(level) {
				return
			}
		}
	}
}
