package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type aclCase struct {
	clientID, user, topic string
	access                Access
	want                  bool
}

func mustParseACL(t testing.TB, text string) *ACL {
	t.Helper()
	a, err := ParseACL(strings.NewReader(text), "acl")
	if err != nil {
		t.Fatalf("ParseACL: %v", err)
	}
	return a
}

func runACLCases(t *testing.T, a *ACL, cases []aclCase) {
	t.Helper()
	for _, c := range cases {
		if got := a.Allowed(c.clientID, c.user, c.topic, c.access); got != c.want {
			t.Errorf("Allowed(client %q, user %q, %q, %v) = %v, want %v", c.clientID, c.user, c.topic, c.access, got, c.want)
		}
	}
}

func TestACLSections(t *testing.T) {
	a := mustParseACL(t, `
# Anonymous clients: lines before the first user line.
topic read public/#
topic write public/inbox

user alice
topic readwrite alice/#
topic read shared/+/status
topic deny alice/secret

user bob
topic bob/#
topic write shared/bob/status

# A second section for alice is merged with the first.
user alice
topic write shared/alice/status
`)
	runACLCases(t, a, []aclCase{
		// anonymous
		{"c", "", "public/news", Read, true},
		{"c", "", "public/news", Write, false},
		{"c", "", "public/inbox", Write, true},
		{"c", "", "public/inbox", Read, true},
		{"c", "", "public", Read, true}, // "public/#" matches its parent too
		{"c", "", "alice/x", Read, false},
		// alice: her section only, not the anonymous one
		{"c", "alice", "alice/x", Read, true},
		{"c", "alice", "alice/x/y", Write, true},
		{"c", "alice", "public/news", Read, false},
		{"c", "alice", "shared/bob/status", Read, true},
		{"c", "alice", "shared/bob/status", Write, false},
		{"c", "alice", "shared/alice/status", Write, true},
		{"c", "alice", "shared/bob/status/x", Read, false},
		// deny beats the readwrite alice/#
		{"c", "alice", "alice/secret", Read, false},
		{"c", "alice", "alice/secret", Write, false},
		{"c", "alice", "alice/secret/x", Read, true},
		// bob: access word omitted means readwrite
		{"c", "bob", "bob/a", Read, true},
		{"c", "bob", "bob/a", Write, true},
		{"c", "bob", "shared/bob/status", Write, true},
		{"c", "bob", "shared/bob/status", Read, false},
		// a user without a section gets nothing
		{"c", "carol", "public/news", Read, false},
		{"c", "carol", "carol/x", Write, false},
		// invalid topic names and access values are never allowed
		{"c", "bob", "bob/+", Write, false},
		{"c", "bob", "bob/#", Read, false},
		{"c", "bob", "", Read, false},
		{"c", "bob", "bob/a", Read | Write, false},
		{"c", "bob", "bob/a", 0, false},
	})
}

func TestACLEmptyDeniesAll(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n\n", "user alice\n"} {
		a := mustParseACL(t, text)
		runACLCases(t, a, []aclCase{
			{"c", "", "a", Read, false},
			{"c", "", "a", Write, false},
			{"c", "", "#", Subscribe, false},
			{"c", "alice", "a", Write, false},
		})
	}
}

func TestACLPatterns(t *testing.T) {
	a := mustParseACL(t, `
pattern readwrite devices/%c/#
pattern read users/%u/#
pattern write dev-%c/u-%u
pattern deny devices/%c/locked
user admin
topic read devices/#
pattern write broadcast/all
`)
	runACLCases(t, a, []aclCase{
		{"d1", "", "devices/d1/temp", Write, true},
		{"d1", "", "devices/d1", Read, true},
		{"d1", "", "devices/d2/temp", Write, false},
		{"d1", "", "devices/d1x/temp", Write, false},
		// %u never matches a client without a user name
		{"d1", "", "users//x", Read, false},
		{"d1", "u1", "users/u1/x", Read, true},
		{"d1", "u1", "users/u1/x", Write, false},
		{"d1", "u1", "users/u2/x", Read, false},
		// substitution inside a level, both in one filter
		{"d1", "u1", "dev-d1/u-u1", Write, true},
		{"d1", "u1", "dev-d1/u-u2", Write, false},
		{"d1", "", "dev-d1/u-", Write, false},
		// a pattern line applies to everyone wherever it stands, even inside a user section
		{"d1", "", "broadcast/all", Write, true},
		{"d1", "u1", "broadcast/all", Write, true},
		// pattern deny wins over pattern grants...
		{"d1", "", "devices/d1/locked", Write, false},
		{"d1", "", "devices/d1/locked", Read, false},
		// ...and over a user's topic grant (mosquitto 2.0 would allow this one; see ACL)
		{"d1", "admin", "devices/d1/locked", Read, false},
		{"d1", "admin", "devices/d2/locked", Read, true},
		// an empty client id never matches %c
		{"", "", "devices//temp", Write, false},
	})
}

func TestACLPatternDangerousIDs(t *testing.T) {
	a := mustParseACL(t, `
pattern readwrite devices/%c/#
pattern read users/%u/#
pattern read everyone/news
pattern deny everyone/private
topic read anon/#
user u#
topic read own/#
`)
	runACLCases(t, a, []aclCase{
		{"d1", "", "everyone/news", Read, true},
		// A client id "+" or "#" would turn devices/%c/# into devices/+/# or devices/#/#.
		{"+", "", "devices/d2/temp", Write, false},
		{"+", "", "devices/+/temp", Subscribe, false},
		{"#", "", "devices/x", Write, false},
		{"a+b", "", "devices/a+b/x", Read, false},
		{"ok", "u+", "users/x/y", Read, false},
		{"ok", "u+", "devices/ok/x", Write, false}, // a bad user name disables every pattern...
		{"d+", "", "everyone/news", Read, false},   // ...even one without %c or %u, as in mosquitto
		{"d+", "", "anon/x", Read, true},           // but the client's topic lines still apply
		{"d+", "u#", "own/x", Read, true},
		{"d+", "", "everyone/private", Read, false},
		// '/' is allowed, as in mosquitto 2.0.x: the client id spans levels.
		{"a/b", "", "devices/a/b/x", Write, true},
		{"a/b", "", "devices/a/x", Write, false},
		{"a/b", "", "devices/a/b/#", Subscribe, true},
		{"a/b", "", "devices/a/+/x", Subscribe, false},
		{"a/b", "u/v", "users/u/v/x", Read, true},
		{"a/b", "u/v", "users/u/x", Read, false},
	})
}

func TestACLSubscribeCoverage(t *testing.T) {
	a := mustParseACL(t, `
topic read a/#
topic read b/+
topic read c/+/d/#
topic read exact/topic
topic write w/#
topic read $SYS/broker/#
topic read x/#
topic deny x/secret/#
topic deny x/+/hidden
pattern read p/%c/+
`)
	runACLCases(t, a, []aclCase{
		{"c", "", "a/#", Subscribe, true},
		{"c", "", "a/+/c", Subscribe, true},
		{"c", "", "a/b/c", Subscribe, true},
		{"c", "", "a", Subscribe, true},
		{"c", "", "a/+", Subscribe, true},
		{"c", "", "+/b", Subscribe, false},
		{"c", "", "#", Subscribe, false},
		{"c", "", "b/x", Subscribe, true},
		{"c", "", "b/+", Subscribe, true},
		{"c", "", "b/#", Subscribe, false},
		{"c", "", "b", Subscribe, false},
		{"c", "", "b/x/y", Subscribe, false},
		{"c", "", "c/1/d", Subscribe, true},
		{"c", "", "c/+/d/#", Subscribe, true},
		{"c", "", "c/+/d/e/+", Subscribe, true},
		{"c", "", "c/#", Subscribe, false},
		{"c", "", "c/+/+", Subscribe, false},
		{"c", "", "exact/topic", Subscribe, true},
		{"c", "", "exact/+", Subscribe, false},
		{"c", "", "w/x", Subscribe, false}, // write access does not allow subscribing
		{"c", "", "$SYS/broker/load", Subscribe, true},
		{"c", "", "$SYS/#", Subscribe, false},
		{"c", "", "$SYS/broker/#", Subscribe, true},
		// deny covering the subscription refuses it; deny only overlapping it does not (the
		// Read check at delivery then filters)
		{"c", "", "x/secret/#", Subscribe, false},
		{"c", "", "x/secret/a", Subscribe, false},
		{"c", "", "x/y/hidden", Subscribe, false},
		{"c", "", "x/#", Subscribe, true},
		{"c", "", "x/+/hidden", Subscribe, false},
		{"c", "", "x/y/#", Subscribe, true},
		{"c", "", "x/secret/a", Read, false},
		{"c", "", "x/y/hidden", Read, false},
		// patterns, and shared subscriptions checked on their filter
		{"c1", "", "p/c1/+", Subscribe, true},
		{"c1", "", "p/c1/#", Subscribe, false},
		{"c1", "", "p/+/x", Subscribe, false},
		{"c", "", "$share/g/a/+/c", Subscribe, true},
		{"c", "", "$share/g/b/#", Subscribe, false},
		{"c", "", "$share/g", Subscribe, false},
		{"c", "", "$share//a/b", Subscribe, false},
		// invalid filters are refused
		{"c", "", "a/b#", Subscribe, false},
		{"c", "", "a/#/c", Subscribe, false},
		{"c", "", "a/+x", Subscribe, false},
		{"c", "", "", Subscribe, false},
	})
}

func TestACLDollarTopics(t *testing.T) {
	a := mustParseACL(t, `
topic readwrite #
topic read +/broker/#
user monitor
topic read $SYS/#
user app
topic readwrite #
topic deny $SYS/broker/secret
`)
	runACLCases(t, a, []aclCase{
		{"c", "", "a/b", Write, true},
		{"c", "", "$SYS/broker/uptime", Read, false},
		{"c", "", "$SYS/broker/uptime", Write, false},
		{"c", "", "$SYS/#", Subscribe, false},
		{"c", "", "#", Subscribe, true},
		{"c", "", "+/broker/x", Subscribe, true},
		{"c", "", "$dollar", Read, false},
		{"c", "monitor", "$SYS/broker/uptime", Read, true},
		{"c", "monitor", "$SYS", Read, true},
		{"c", "monitor", "$SYS/broker/uptime", Write, false},
		{"c", "monitor", "$SYS/#", Subscribe, true},
		{"c", "monitor", "$SYS/broker/+", Subscribe, true},
		{"c", "monitor", "#", Subscribe, false},
		{"c", "monitor", "a", Read, false},
		{"c", "app", "$SYS/broker/secret", Read, false},
		{"c", "app", "$SYS/broker/uptime", Read, false},
	})
}

func TestACLSyntax(t *testing.T) {
	a := mustParseACL(t, "\ufefftopic\tread\t a b/c \r\n  # indented comment\nuser  John Smith \ntopic  write  x y\n")
	runACLCases(t, a, []aclCase{
		{"c", "", "a b/c", Read, true},
		{"c", "", "a b/c", Write, false},
		{"c", "John Smith", "x y", Write, true},
	})
}

func TestACLMalformed(t *testing.T) {
	cases := []struct{ line, reason string }{
		{"topic", "missing topic filter"},
		{"pattern", "missing topic filter"},
		{"topic read", "topic read: missing topic filter"},
		{"topic deny", "missing topic filter"},
		{"topic reed a/b", `unknown access "reed"`},
		{"topic READ a/b", `unknown access "READ"`},
		{"topic read a/b#", "'#' must be the whole last level"},
		{"topic read a/#/b", "'#' must be the whole last level"},
		{"topic read a+/b", "'+' must be a whole level"},
		{"pattern write %c+", "'+' must be a whole level"},
		{"user", "missing user name"},
		{"user   ", "missing user name"},
		{"topics read a", `unknown keyword "topics"`},
		{"read a/b", `unknown keyword "read"`},
		{"topic read " + strings.Repeat("a", 65536), "longer than 65535"},
	}
	for _, c := range cases {
		t.Run(c.line[:min(len(c.line), 20)], func(t *testing.T) {
			_, err := ParseACL(strings.NewReader("# acl\ntopic read ok\n\n"+c.line+"\ntopic ok2\n"), "aclfile")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a ParseError", err)
			}
			if pe.Line != 4 || !strings.HasPrefix(err.Error(), "aclfile:line 4: ") || !strings.Contains(pe.Reason, c.reason) {
				t.Errorf("err = %q, want aclfile:line 4 with %q", err, c.reason)
			}
		})
	}
}

func TestLoadACL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(path, []byte("topic read a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := LoadACL(path)
	if err != nil || !a.Allowed("c", "", "a", Read) {
		t.Fatalf("LoadACL: %v", err)
	}
	if _, err := LoadACL(path + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// refMatch is a slow, obviously-right topic matcher: split both on '/' and compare level by level.
// cover asks whether every topic the subscription sub matches is matched by filter.
func refMatch(filter, s string, cover bool) bool {
	f, t := strings.Split(filter, "/"), strings.Split(s, "/")
	if strings.HasPrefix(s, "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(t) {
			return false
		}
		switch {
		case fl == "+":
			if cover && t[i] == "#" {
				return false
			}
		case fl != t[i]:
			return false
		}
	}
	return len(f) == len(t)
}

// TestMatchersAgree checks the compiled matcher and the string matcher against refMatch over
// every pair from a set of filters and topics built from a few levels.
func TestMatchersAgree(t *testing.T) {
	parts := []string{"a", "b", "", "+", "#", "$SYS"}
	// Every string of one to three levels drawn from parts.
	all := append([]string(nil), parts...)
	two := []string{}
	for _, x := range parts {
		for _, y := range parts {
			two = append(two, x+"/"+y)
		}
	}
	all = append(all, two...)
	for _, x := range two {
		for _, y := range parts {
			all = append(all, x+"/"+y)
		}
	}
	n := 0
	for _, f := range all {
		if checkFilter(f) != nil {
			continue
		}
		levels := compileFilter(f, true)
		for _, s := range all {
			for _, cover := range []bool{false, true} {
				if cover && checkFilter(s) != nil || !cover && !validTopicName(s) {
					continue
				}
				n++
				want := refMatch(f, s, cover)
				if got := matchLevels(levels, s, cover, "", ""); got != want {
					t.Errorf("matchLevels(%q, %q, cover %v) = %v, want %v", f, s, cover, got, want)
				}
				if got := matchString(f, s, cover); got != want {
					t.Errorf("matchString(%q, %q, cover %v) = %v, want %v", f, s, cover, got, want)
				}
			}
		}
	}
	if n < 1000 {
		t.Fatalf("only %d pairs checked", n)
	}
}

func FuzzMatchers(f *testing.F) {
	for _, s := range [][2]string{{"a/#", "a"}, {"+/+", "/"}, {"$SYS/#", "$SYS/x"}, {"a/+/#", "a/b"}, {"#", "$x"}} {
		f.Add(s[0], s[1], false)
		f.Add(s[0], s[1], true)
	}
	f.Fuzz(func(t *testing.T, filter, s string, cover bool) {
		if checkFilter(filter) != nil || (cover && checkFilter(s) != nil) || (!cover && !validTopicName(s)) {
			return
		}
		want := refMatch(filter, s, cover)
		if got := matchLevels(compileFilter(filter, false), s, cover, "", ""); got != want {
			t.Errorf("matchLevels(%q, %q, %v) = %v, want %v", filter, s, cover, got, want)
		}
		if got := matchString(filter, s, cover); got != want {
			t.Errorf("matchString(%q, %q, %v) = %v, want %v", filter, s, cover, got, want)
		}
	})
}

func TestACLAllowedAllocs(t *testing.T) {
	a := benchACL(t)
	for _, c := range []aclCase{
		{"dev7", "user7", "home/user7/kitchen/temp", Write, true},
		{"dev7", "user7", "devices/dev7/status", Read, true},
		{"dev7", "user7", "home/+/kitchen/#", Subscribe, false},
		{"dev7", "", "public/weather/now", Read, true},
	} {
		if got := a.Allowed(c.clientID, c.user, c.topic, c.access); got != c.want {
			t.Fatalf("Allowed(%+v) = %v", c, got)
		}
		if n := testing.AllocsPerRun(100, func() { a.Allowed(c.clientID, c.user, c.topic, c.access) }); n != 0 {
			t.Errorf("Allowed(%+v) allocates %v times", c, n)
		}
	}
}
