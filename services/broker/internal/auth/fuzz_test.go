package auth

import (
	"strings"
	"testing"
)

// The file parsers and Allowed take operator files and client-chosen strings: no input may make
// them panic.

func FuzzParseACL(f *testing.F) {
	f.Add(diffACL, "c", "u", "a/b", uint8(Write))
	f.Add("pattern read %c/%u/#\n", "a/b", "", "$share/g/a/+", uint8(Subscribe))
	f.Add("topic deny #\nuser x\ntopic +/+\n", "+", "x", "$SYS/x", uint8(Read))
	f.Fuzz(func(t *testing.T, text, clientID, username, topic string, access uint8) {
		a, err := ParseACL(strings.NewReader(text), "fuzz")
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %v is not a ParseError", err)
			}
			return
		}
		a.Allowed(clientID, username, topic, Access(access))
	})
}

func FuzzParsePasswords(f *testing.F) {
	f.Add(mosquittoFile, "alice", "secret pass")
	f.Add("u:$7$1$AAAAAAAAAAAAAAAA$"+strings.Repeat("A", 86)+"==\n", "u", "x")
	f.Add("u:$2y$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234\n", "u", "x")
	f.Fuzz(func(t *testing.T, text, user, password string) {
		p, err := ParsePasswords(strings.NewReader(text), "fuzz")
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %v is not a ParseError", err)
			}
			return
		}
		if strings.Contains(text, "$7$") || strings.Contains(text, "$2") {
			return // a fuzzed iteration count or bcrypt cost can make one Check take minutes
		}
		p.Check(user, []byte(password))
	})
}
