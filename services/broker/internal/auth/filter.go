package auth

import (
	"errors"
	"strings"
)

// Topic matching for ACL entries. A filter is compiled once into levels; matching walks the topic
// with strings.IndexByte and allocates nothing. The same walk answers two questions:
//
//   - match: does the filter match a topic name (PUBLISH, delivery)?
//   - cover: does the filter match every topic a subscription filter can match (SUBSCRIBE)? ACL
//     `a/#` covers `a/+/c`, `a/#` and `a`; ACL `a/+` covers `a/b` and `a/+` but not `a/#`.
//
// The `$` rule of MQTT [MQTT-4.7.2-1] applies to both: a wildcard in the first level does not
// match a level starting with '$', so `#` grants nothing under $SYS and `$SYS/#` must be explicit.

type levelKind uint8

const (
	levelLiteral  levelKind = iota
	levelPlus               // "+"
	levelHash               // "#", always last
	levelTemplate           // a pattern level containing %c or %u
)

type level struct {
	kind  levelKind
	lit   string
	parts []part // levelTemplate
}

// part is a piece of a template level: literal text, or the client id or user name.
type part struct {
	lit   string
	subst byte // 0 for lit, 'c' or 'u'
}

// checkFilter validates a topic filter as mosquitto_sub_topic_check does: not empty, at most 65535
// bytes, '+' and '#' each a whole level, '#' only last.
func checkFilter(f string) error {
	if f == "" {
		return errors.New("empty topic filter")
	}
	if len(f) > 65535 {
		return errors.New("topic filter longer than 65535 bytes")
	}
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '+':
			if (i > 0 && f[i-1] != '/') || (i+1 < len(f) && f[i+1] != '/') {
				return errors.New("'+' must be a whole level of the topic filter")
			}
		case '#':
			if (i > 0 && f[i-1] != '/') || i+1 != len(f) {
				return errors.New("'#' must be the whole last level of the topic filter")
			}
		}
	}
	return nil
}

// validTopicName reports whether t can be a PUBLISH topic: not empty, no wildcards.
func validTopicName(t string) bool {
	return t != "" && strings.IndexByte(t, '+') < 0 && strings.IndexByte(t, '#') < 0
}

// compileFilter splits a valid filter into levels. With templates, levels containing %c or %u
// become template levels.
func compileFilter(f string, templates bool) []level {
	levels := make([]level, 0, strings.Count(f, "/")+1)
	for pos := 0; pos >= 0; {
		var s string
		s, pos = nextLevel(f, pos)
		switch {
		case s == "+":
			levels = append(levels, level{kind: levelPlus})
		case s == "#":
			levels = append(levels, level{kind: levelHash})
		case templates && (strings.Contains(s, "%c") || strings.Contains(s, "%u")):
			levels = append(levels, level{kind: levelTemplate, parts: templateParts(s)})
		default:
			levels = append(levels, level{kind: levelLiteral, lit: s})
		}
	}
	return levels
}

// templateParts splits s at each %c and %u, scanning left to right as mosquitto's substitution
// does (so "%%c" is a literal '%' then the client id).
func templateParts(s string) []part {
	var parts []part
	start := 0
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '%' && (s[i+1] == 'c' || s[i+1] == 'u') {
			if i > start {
				parts = append(parts, part{lit: s[start:i]})
			}
			parts = append(parts, part{subst: s[i+1]})
			i++
			start = i + 1
		}
	}
	if start < len(s) {
		parts = append(parts, part{lit: s[start:]})
	}
	return parts
}

// nextLevel returns the level of s that starts at pos, and where the next one starts (-1 after
// the last).
func nextLevel(s string, pos int) (string, int) {
	if i := strings.IndexByte(s[pos:], '/'); i >= 0 {
		return s[pos : pos+i], pos + i + 1
	}
	return s[pos:], -1
}

// matchLevels reports whether the compiled filter matches the topic name s (cover false) or covers
// the subscription filter s (cover true). s is non-empty and valid for its kind. Template levels
// are compared with the client id and user name substituted; the caller ensures those contain no
// '/' (see pattern.match).
func matchLevels(levels []level, s string, cover bool, clientID, username string) bool {
	if s[0] == '$' && (levels[0].kind == levelPlus || levels[0].kind == levelHash) {
		return false
	}
	pos := 0
	for i := range levels {
		lv := &levels[i]
		if lv.kind == levelHash {
			return true // "a/#" matches "a" and everything below it
		}
		if pos < 0 {
			return false
		}
		var seg string
		seg, pos = nextLevel(s, pos)
		switch lv.kind {
		case levelPlus:
			if cover && seg == "#" {
				return false
			}
		case levelLiteral:
			if seg != lv.lit {
				return false
			}
		case levelTemplate:
			if !matchTemplate(lv.parts, seg, clientID, username) {
				return false
			}
		}
	}
	return pos < 0
}

func matchTemplate(parts []part, seg, clientID, username string) bool {
	for i := range parts {
		v := parts[i].lit
		switch parts[i].subst {
		case 'c':
			v = clientID
		case 'u':
			v = username
		}
		if !strings.HasPrefix(seg, v) {
			return false
		}
		seg = seg[len(v):]
	}
	return seg == ""
}

// matchString is matchLevels on an uncompiled filter f. It serves patterns whose substituted
// client id or user name contains '/', which spreads over several levels.
func matchString(f, s string, cover bool) bool {
	if s[0] == '$' && (f[0] == '+' || f[0] == '#') {
		return false
	}
	fpos, spos := 0, 0
	for fpos >= 0 {
		var fl string
		fl, fpos = nextLevel(f, fpos)
		if fl == "#" {
			return true
		}
		if spos < 0 {
			return false
		}
		var seg string
		seg, spos = nextLevel(s, spos)
		if fl == "+" {
			if cover && seg == "#" {
				return false
			}
			continue
		}
		if fl != seg {
			return false
		}
	}
	return spos < 0
}
