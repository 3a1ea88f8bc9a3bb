package auth

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Access is the kind of operation Allowed checks. The values are mosquitto's MOSQ_ACL_READ,
// MOSQ_ACL_WRITE and MOSQ_ACL_SUBSCRIBE.
type Access uint8

const (
	// Read: a message with this topic name may be delivered to the client (including retained
	// messages and messages queued in a resumed session).
	Read Access = 1 << iota
	// Write: the client may PUBLISH to this topic name (its will message included).
	Write
	// Subscribe: the client may SUBSCRIBE with this topic filter.
	Subscribe
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Subscribe:
		return "subscribe"
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// perm is what an ACL line grants: read and/or write, or deny.
type perm uint8

const (
	permRead perm = 1 << iota
	permWrite
	permDeny
)

// ACL is a parsed mosquitto-style ACL file. It is immutable and safe for concurrent use.
//
// File syntax (mosquitto's acl_file):
//
//	# comment
//	topic [read|write|readwrite|deny] <filter>    applies to the current section
//	user <username>                               starts a user's section
//	pattern [read|write|readwrite|deny] <filter>  applies to every client; %c = client id, %u = user name
//
// Lines before the first `user` line form the anonymous section, for clients without a user name.
// A client with a user name gets its user's section (none if the file has no `user` line for it;
// never the anonymous one) plus the patterns. The access word defaults to readwrite. The filter is
// the rest of the line and may contain spaces. A `pattern` line applies to everyone wherever it
// appears, and sections of the same user are merged, both as in mosquitto.
//
// Decisions, following mosquitto 2.0's default check (acl_check in src/security_default.c):
//   - Write (PUBLISH) needs an entry with write access whose filter matches the topic name; Read
//     (delivery) one with read access. MQTT wildcard matching, with the `$` rule: `#` and `+/…` do
//     not match $SYS/…; an entry must itself start with `$SYS` for that.
//   - A matching `deny` entry wins over every grant. In mosquitto a deny wins within the user's
//     entries and within the patterns, but a user's `topic` grant is checked before the patterns
//     and so beats a `pattern deny`; here the deny still wins. This is the only case where this ACL
//     is stricter than mosquitto 2.0 on PUBLISH and delivery.
//   - Patterns: %c and %u are replaced by the client id and user name anywhere in the filter. If
//     either the client id or the user name contains '+' or '#', no pattern grants that client
//     anything: mosquitto's fix for CVE-2017-7650 (1.4.12), unchanged through 2.0.x. That fix
//     first refused '/' too; 1.4.13 allowed it again, and so do we: the substituted value then
//     spans levels (client id "a/b" with `devices/%c/#` gets devices/a/b/#).
//     A pattern using %u never matches a client without a user name, nor one using %c an empty
//     client id. Pattern `deny` lines apply whatever the client id (a dangerous one can only
//     make them match more).
//   - An ACL file with no entry for a client denies that client everything; an empty file denies
//     everyone everything (mosquitto since CVE-2018-12550).
//
// Subscribe: mosquitto 2.0's default check (and the development branch's) allows every SUBSCRIBE
// and relies on the Read check at delivery. Here a SUBSCRIBE is allowed only if an entry with read
// access covers the whole subscription filter (ACL `a/#` allows `a/+/c`; ACL `a/+` does not allow
// `a/#`), the rule mosquitto's dynamic-security plugin uses (mosquitto_sub_matches_acl), and
// refused if a deny entry covers it. A deny that only overlaps the filter (deny `a/secret`,
// subscription `a/#`) does not refuse the SUBSCRIBE, so the broker must still check Read for every
// delivered message, as mosquitto does. For a shared subscription `$share/<group>/<filter>` the
// check applies to <filter>.
//
// Parsing follows mosquitto's with two differences: `topic read` (or write, readwrite, deny) with
// no filter is rejected, where mosquitto reads it as readwrite access to the topic named "read";
// and an indented `#` comment and tabs between words are accepted, where mosquitto, which only
// knows comments in column one and words separated by spaces, rejects the line.
type ACL struct {
	anon  *section            // lines before the first `user` line; nil if none
	users map[string]*section // by user name

	patternDeny  []pattern
	patternRead  []pattern // grants with read access
	patternWrite []pattern // grants with write access
}

// section holds the `topic` lines of one user, or of anonymous clients.
type section struct {
	exact map[string]perm // filters without wildcards, looked up by topic (or subscription) text
	deny  [][]level       // wildcard filters of deny lines
	read  [][]level       // wildcard filters granting read
	write [][]level       // wildcard filters granting write
}

type pattern struct {
	parts        []part // the whole filter, for expand
	levels       []level
	usesC, usesU bool
}

// LoadACL reads and parses the ACL file at path.
func LoadACL(path string) (*ACL, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseACL(f, path)
}

// ParseACL parses an ACL file read from r; name is used in error messages.
func ParseACL(r io.Reader, name string) (*ACL, error) {
	a := &ACL{users: make(map[string]*section)}
	var cur *section // nil until the first topic line of a section
	var user string
	inUser := false
	err := eachLine(r, name, func(n int, line string) error {
		fail := func(format string, args ...any) error {
			return &ParseError{File: name, Line: n, Reason: fmt.Sprintf(format, args...)}
		}
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			return nil
		}
		keyword, rest := cutWord(t)
		switch keyword {
		case "user":
			if rest == "" {
				return fail("user: missing user name")
			}
			user, inUser, cur = rest, true, nil
			return nil
		case "topic", "pattern":
		default:
			return fail("unknown keyword %q (want topic, pattern or user)", keyword)
		}
		if rest == "" {
			return fail("%s: missing topic filter", keyword)
		}
		access := permRead | permWrite
		word, filter := cutWord(rest)
		if filter == "" {
			if _, isAccess := parseAccess(word); isAccess {
				return fail("%s %s: missing topic filter", keyword, word)
			}
			filter = word
		} else {
			p, ok := parseAccess(word)
			if !ok {
				return fail("%s: unknown access %q (want read, write, readwrite or deny)", keyword, word)
			}
			access = p
		}
		if err := checkFilter(filter); err != nil {
			return fail("%s %q: %v", keyword, filter, err)
		}
		if keyword == "pattern" {
			a.addPattern(filter, access)
			return nil
		}
		if cur == nil {
			cur = a.section(user, inUser)
		}
		cur.add(filter, access)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// cutWord splits s at its first run of spaces or tabs; rest is trimmed.
func cutWord(s string) (word, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func parseAccess(s string) (perm, bool) {
	switch s {
	case "read":
		return permRead, true
	case "write":
		return permWrite, true
	case "readwrite":
		return permRead | permWrite, true
	case "deny":
		return permDeny, true
	}
	return 0, false
}

// section returns the section of user (or the anonymous one), creating it.
func (a *ACL) section(user string, inUser bool) *section {
	if !inUser {
		if a.anon == nil {
			a.anon = &section{exact: make(map[string]perm)}
		}
		return a.anon
	}
	s := a.users[user]
	if s == nil {
		s = &section{exact: make(map[string]perm)}
		a.users[user] = s
	}
	return s
}

func (s *section) add(filter string, access perm) {
	if strings.IndexByte(filter, '+') < 0 && strings.IndexByte(filter, '#') < 0 {
		s.exact[filter] |= access
		return
	}
	levels := compileFilter(filter, false)
	if access&permDeny != 0 {
		s.deny = append(s.deny, levels)
	}
	if access&permRead != 0 {
		s.read = append(s.read, levels)
	}
	if access&permWrite != 0 {
		s.write = append(s.write, levels)
	}
}

func (a *ACL) addPattern(filter string, access perm) {
	p := pattern{
		parts:  templateParts(filter),
		levels: compileFilter(filter, true),
		usesC:  strings.Contains(filter, "%c"),
		usesU:  strings.Contains(filter, "%u"),
	}
	if access&permDeny != 0 {
		a.patternDeny = append(a.patternDeny, p)
	}
	if access&permRead != 0 {
		a.patternRead = append(a.patternRead, p)
	}
	if access&permWrite != 0 {
		a.patternWrite = append(a.patternWrite, p)
	}
}

// who is the client a check is for, with what patterns need to know precomputed.
type who struct {
	clientID, username string
	slash              bool // clientID or username contains '/'
}

// match reports whether p, with w's client id and user name substituted, matches (or covers) s.
func (p *pattern) match(s string, cover bool, w *who) bool {
	if (p.usesC && w.clientID == "") || (p.usesU && w.username == "") {
		return false
	}
	if w.slash && (p.usesC || p.usesU) {
		// The substituted value spans levels: expand and match the text. Rare, so it may allocate.
		return matchString(p.expand(w.clientID, w.username), s, cover)
	}
	return matchLevels(p.levels, s, cover, w.clientID, w.username)
}

// expand substitutes %c and %u in the filter as mosquitto does.
func (p *pattern) expand(clientID, username string) string {
	var b strings.Builder
	for _, pt := range p.parts {
		switch pt.subst {
		case 'c':
			b.WriteString(clientID)
		case 'u':
			b.WriteString(username)
		default:
			b.WriteString(pt.lit)
		}
	}
	return b.String()
}

// Allowed reports whether the client may perform access on topic: a topic name for Read and
// Write, a subscription filter for Subscribe. username "" means the client has no user name (the
// anonymous section applies). access must be exactly one of Read, Write and Subscribe; an invalid
// topic name or filter is never allowed. See ACL for the rules.
//
// Allowed does not allocate unless a pattern must substitute a client id or user name containing '/'.
func (a *ACL) Allowed(clientID, username, topic string, access Access) bool {
	topic, need, ok := checkAccess(topic, access)
	if !ok {
		return false
	}
	cover := access == Subscribe

	var s *section
	if username == "" {
		s = a.anon
	} else {
		s = a.users[username]
	}
	w := who{clientID: clientID, username: username}
	if len(a.patternDeny)+len(a.patternRead)+len(a.patternWrite) > 0 {
		w.slash = strings.IndexByte(clientID, '/') >= 0 || strings.IndexByte(username, '/') >= 0
	}

	// Deny lines first: any match refuses.
	exact, deny := a.denied(s, topic, cover, &w)
	if deny {
		return false
	}
	// Then grants.
	return a.granted(s, exact, need, topic, cover, &w)
}

// checkAccess returns the topic (a shared subscription's filter for Subscribe) and the
// permission access needs, and false when access is not one of Read, Write and
// Subscribe or the topic name or filter is invalid.
func checkAccess(topic string, access Access) (string, perm, bool) {
	switch access {
	case Read, Write:
		if !validTopicName(topic) {
			return topic, 0, false
		}
		if access == Read {
			return topic, permRead, true
		}
		return topic, permWrite, true
	case Subscribe:
		topic = stripShare(topic)
		if checkFilter(topic) != nil {
			return topic, 0, false
		}
		return topic, permRead, true
	default:
		return topic, 0, false
	}
}

// denied reports whether a deny line of section s (which may be nil) or a deny pattern
// matches topic. It also returns s's exact-filter permissions for topic.
func (a *ACL) denied(s *section, topic string, cover bool, w *who) (exact perm, deny bool) {
	if s != nil {
		exact = s.exact[topic]
		if exact&permDeny != 0 {
			return exact, true
		}
		for _, f := range s.deny {
			if matchLevels(f, topic, cover, "", "") {
				return exact, true
			}
		}
	}
	for i := range a.patternDeny {
		if a.patternDeny[i].match(topic, cover, w) {
			return exact, true
		}
	}
	return exact, false
}

// granted reports whether an exact filter, a wildcard filter of section s (which may be
// nil) or a pattern grants need on topic. Patterns are not consulted for a client id or
// user name containing a wildcard.
func (a *ACL) granted(s *section, exact, need perm, topic string, cover bool, w *who) bool {
	if exact&need != 0 {
		return true
	}
	if s != nil {
		grants := s.write
		if need == permRead {
			grants = s.read
		}
		for _, f := range grants {
			if matchLevels(f, topic, cover, "", "") {
				return true
			}
		}
	}
	patterns := a.patternWrite
	if need == permRead {
		patterns = a.patternRead
	}
	if len(patterns) == 0 || dangerous(w.clientID) || dangerous(w.username) {
		return false
	}
	for i := range patterns {
		if patterns[i].match(topic, cover, w) {
			return true
		}
	}
	return false
}

// dangerous reports whether s contains an MQTT wildcard, which would let a client that picks its
// own client id or user name widen a pattern.
func dangerous(s string) bool {
	return strings.IndexByte(s, '+') >= 0 || strings.IndexByte(s, '#') >= 0
}

// stripShare returns the topic filter of a shared subscription `$share/<group>/<filter>`, and any
// other filter unchanged. A malformed share (no group or no filter) comes back empty, so it is
// refused.
func stripShare(f string) string {
	const prefix = "$share/"
	if !strings.HasPrefix(f, prefix) {
		return f
	}
	rest := f[len(prefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return ""
	}
	return rest[i+1:]
}
