package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Lines written by mosquitto_passwd 2.0.11 (Debian bookworm), kept as fixed interop vectors:
//
//	mosquitto_passwd -c -b pw alice 'secret pass'
//	mosquitto_passwd -b -H sha512 pw bob hunter2
//	mosquitto_passwd -b -I 1000 pw carol x
const mosquittoFile = `alice:$7$101$mi235ifpdmZoYl+1$7ydDsCrOpu5nhD//TgmpM42AcCmJgJysC8ERMdw4pEuO4N3gvooxs0comuJ2NMP7RVxv5Id/cxVWfYwVOkhBlQ==
bob:$6$zjFP1YpSIRXFVaOJ$pUywAMRFd3BqewMeDBoB4FBdXdVvYL/nQTMtT5ZFOC4bIJA49vRk6++nQxv13W0g0fxgS4/TJ3Zdd4BrHKRymA==
carol:$7$1000$oRZF5yxA8iE16ykY$+aZA3DWONvruu12ryNguUTpDUy3/XT3tnTiqOmF8JqKlyNOrdvqLCN7Dyw4V/Ij3r5BDDabCkJASXtIPr2tMkA==
`

func mustParsePasswords(t testing.TB, text string) *Passwords {
	t.Helper()
	p, err := ParsePasswords(strings.NewReader(text), "pw")
	if err != nil {
		t.Fatalf("ParsePasswords: %v", err)
	}
	return p
}

func TestPasswordsMosquittoVectors(t *testing.T) {
	p := mustParsePasswords(t, mosquittoFile)
	if p.Len() != 3 {
		t.Fatalf("Len = %d, want 3", p.Len())
	}
	for _, c := range []struct {
		user, pw string
		want     bool
	}{
		{"alice", "secret pass", true},
		{"alice", "secret pass ", false},
		{"alice", "Secret pass", false},
		{"bob", "hunter2", true},
		{"bob", "hunter", false},
		{"carol", "x", true},
		{"carol", "", false},
		{"dave", "x", false},
		{"", "", false},
	} {
		if got := p.Check(c.user, []byte(c.pw)); got != c.want {
			t.Errorf("Check(%q, %q) = %v, want %v", c.user, c.pw, got, c.want)
		}
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	cases := []struct {
		kind   HashKind
		opts   []HashOption
		prefix string
	}{
		{PBKDF2, nil, "$7$101$"},
		{PBKDF2, []HashOption{WithIterations(1000)}, "$7$1000$"},
		{SHA512, nil, "$6$"},
		{Bcrypt, []HashOption{withBcryptCost(bcrypt.MinCost)}, "$2a$04$"},
	}
	for _, c := range cases {
		t.Run(c.prefix, func(t *testing.T) {
			h, err := HashPassword("pässword with spaces", c.kind, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(h, c.prefix) {
				t.Fatalf("hash %q does not start with %q", h, c.prefix)
			}
			if c.kind != Bcrypt {
				// mosquitto's layout: 12-byte salt = 16 base64 characters, 64-byte hash = 88.
				f := strings.Split(h, "$")
				salt, hash := f[len(f)-2], f[len(f)-1]
				if len(salt) != 16 || len(hash) != 88 || !strings.HasSuffix(hash, "==") {
					t.Errorf("salt %q / hash %q not in mosquitto's encoding", salt, hash)
				}
			}
			p := mustParsePasswords(t, "u:"+h+"\n")
			if !p.Check("u", []byte("pässword with spaces")) {
				t.Error("Check refused the right password")
			}
			if p.Check("u", []byte("password with spaces")) {
				t.Error("Check accepted a wrong password")
			}
			h2, _ := HashPassword("pässword with spaces", c.kind, c.opts...)
			if h2 == h {
				t.Error("two hashes of one password are equal: salt not random")
			}
		})
	}
}

func TestHashPasswordErrors(t *testing.T) {
	if _, err := HashPassword("", PBKDF2); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("empty password: %v, want ErrEmptyPassword", err)
	}
	if _, err := HashPassword("x", PBKDF2, WithIterations(0)); err == nil {
		t.Error("0 iterations accepted")
	}
	if _, err := HashPassword(strings.Repeat("x", 73), Bcrypt); err == nil {
		t.Error("bcrypt of a 73-byte password accepted")
	}
	if _, err := HashPassword("x", HashKind(9)); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestParseHashKind(t *testing.T) {
	for _, k := range []HashKind{PBKDF2, Bcrypt, SHA512} {
		got, err := ParseHashKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseHashKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := ParseHashKind("md5"); err == nil {
		t.Error("md5 accepted")
	}
}

func TestPasswordsFileSyntax(t *testing.T) {
	h, err := HashPassword("pw", PBKDF2)
	if err != nil {
		t.Fatal(err)
	}
	text := "\ufeff# comment\n\n   # indented comment\r\n  spaced user  :  " + h + "  \r\nlast:" + h // no final newline
	p := mustParsePasswords(t, text)
	if p.Len() != 2 || !p.Check("spaced user", []byte("pw")) || !p.Check("last", []byte("pw")) {
		t.Errorf("Len %d; blanks around user and hash, CRLF, BOM and a missing final newline should all be fine", p.Len())
	}
	if p.Check(" spaced user ", []byte("pw")) {
		t.Error("the untrimmed name matched")
	}
	if p := mustParsePasswords(t, "# nobody\n"); p.Len() != 0 || p.Check("", nil) {
		t.Error("an empty file has users")
	}
}

func TestPasswordsMalformed(t *testing.T) {
	good := "ok:$6$zjFP1YpSIRXFVaOJ$pUywAMRFd3BqewMeDBoB4FBdXdVvYL/nQTMtT5ZFOC4bIJA49vRk6++nQxv13W0g0fxgS4/TJ3Zdd4BrHKRymA==\n"
	salt, hash := "zjFP1YpSIRXFVaOJ", "pUywAMRFd3BqewMeDBoB4FBdXdVvYL/nQTMtT5ZFOC4bIJA49vRk6++nQxv13W0g0fxgS4/TJ3Zdd4BrHKRymA=="
	cases := []struct {
		name, line, reason string
	}{
		{"no colon", "alice", "no ':'"},
		{"no hash", "alice:", "no hash"},
		{"blank hash", "alice:   ", "no hash"},
		{"empty user", ":" + "$6$" + salt + "$" + hash, "empty user name"},
		{"plain text", "alice:secret", "plain-text"},
		{"unknown kind", "alice:$5$abc$def", `unknown hash kind "$5$"`},
		{"argon2", "alice:$argon2id$v=19$m=65536,t=3,p=4$abc$def", "argon2"},
		{"6 missing field", "alice:$6$" + salt, "malformed $6$"},
		{"6 extra field", "alice:$6$" + salt + "$" + hash + "$x", "malformed $6$"},
		{"7 missing iterations", "alice:$7$" + salt + "$" + hash, "malformed $7$"},
		{"7 bad iterations", "alice:$7$abc$" + salt + "$" + hash, "iteration count"},
		{"7 zero iterations", "alice:$7$0$" + salt + "$" + hash, "iteration count"},
		{"7 negative iterations", "alice:$7$-5$" + salt + "$" + hash, "iteration count"},
		{"bad base64 salt", "alice:$6$zjFP1YpS*RXFVaOJ$" + hash, "bad base64 in salt"},
		{"unpadded hash", "alice:$6$" + salt + "$" + strings.TrimRight(hash, "="), "bad base64 in hash"},
		{"short salt", "alice:$6$zjFP1YpS$" + hash, "salt is 6 bytes"},
		{"short hash", "alice:$6$" + salt + "$" + hash[:44], "hash is 33 bytes"},
		{"colon in hash", "alice:$6$" + salt + ":" + hash, "unexpected ':'"},
		{"bcrypt short", "alice:$2y$10$abc", "malformed bcrypt"},
		{"bcrypt bad cost", "alice:$2b$99$" + strings.Repeat("a", 53), "malformed bcrypt"},
		{"duplicate", "ok:$6$" + salt + "$" + hash, `duplicate user "ok" (first on line 2)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The bad line is line 4: a comment, the good user, a blank line come first.
			text := "# users\n" + good + "\n" + c.line + "\n" + good
			_, err := ParsePasswords(strings.NewReader(text), "pwfile")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a ParseError", err)
			}
			if pe.Line != 4 || pe.File != "pwfile" || !strings.Contains(pe.Reason, c.reason) {
				t.Errorf("err = %q, want pwfile:line 4 with %q", err, c.reason)
			}
			if !strings.HasPrefix(err.Error(), "pwfile:line 4: ") {
				t.Errorf("message %q does not start with pwfile:line 4: ", err)
			}
			if strings.Contains(err.Error(), hash[:20]) {
				t.Errorf("message %q repeats the hash", err)
			}
		})
	}
}

func TestPasswordsLongLine(t *testing.T) {
	_, err := ParsePasswords(strings.NewReader("# ok\n"+strings.Repeat("x", maxLine+1)), "pw")
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 2 {
		t.Errorf("err = %v, want a ParseError on line 2", err)
	}
}

func TestPasswordsSalt64(t *testing.T) {
	// mosquitto's 2.1 branch writes 64-byte salts; build such a line with our own digest.
	c := credential{kind: PBKDF2, iterations: 3, salt: []byte(strings.Repeat("s", 64))}
	sum, err := c.digest([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	line := "u:$7$3$" + b64(c.salt) + "$" + b64(sum)
	if p := mustParsePasswords(t, line); !p.Check("u", []byte("pw")) {
		t.Error("64-byte salt refused")
	}
}

func TestPasswordsDummy(t *testing.T) {
	pb, _ := HashPassword("pw", PBKDF2, WithIterations(7))
	bc, _ := HashPassword("pw", Bcrypt, withBcryptCost(5))
	sh, _ := HashPassword("pw", SHA512)
	cases := []struct {
		name, text string
		kind       HashKind
		param      int
	}{
		{"empty file", "", PBKDF2, DefaultIterations},
		{"pbkdf2", "a:" + pb + "\n", PBKDF2, 7},
		{"mostly bcrypt", "a:" + pb + "\nb:" + bc + "\nc:" + bc + "\n", Bcrypt, 5},
		{"tie goes to the first", "a:" + sh + "\nb:" + pb + "\n", SHA512, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustParsePasswords(t, c.text)
			if got := p.dummy.cost(); got != [2]int{int(c.kind), c.param} {
				t.Errorf("dummy cost = %v, want %v/%d", got, c.kind, c.param)
			}
			if c.kind == Bcrypt {
				// The dummy must be a hash bcrypt works through, not one it rejects at once.
				err := bcrypt.CompareHashAndPassword(p.dummy.hash, []byte("pw"))
				if !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
					t.Errorf("bcrypt dummy: %v, want a mismatch after hashing", err)
				}
			}
			if p.Check("nobody", []byte("pw")) || p.Check("nobody", nil) {
				t.Error("an unknown user was accepted")
			}
		})
	}
}

func TestLoadPasswords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte(mosquittoFile), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPasswords(path)
	if err != nil || !p.Check("bob", []byte("hunter2")) {
		t.Fatalf("LoadPasswords: %v", err)
	}
	if err := os.WriteFile(path, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPasswords(path); err == nil || !strings.HasPrefix(err.Error(), path+":line 1: ") {
		t.Errorf("err = %v, want it to name %s:line 1", err, path)
	}
	if _, err := LoadPasswords(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidUsername(t *testing.T) {
	for name, ok := range map[string]bool{
		"alice": true, "Jöhn Smith": true, "a/b+c#": true,
		"": false, "a:b": false, " a": false, "a ": false, "#a": false, "a\tb": false, "a\x00": false,
		"a\u0085": false, "\xff": false, strings.Repeat("x", 65536): false,
	} {
		if got := validUsername(name) == ""; got != ok {
			t.Errorf("validUsername(%.20q) ok = %v, want %v", name, got, ok)
		}
	}
}
