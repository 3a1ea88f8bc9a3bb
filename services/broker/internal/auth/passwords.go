package auth

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxUsername is MQTT's limit on a UTF-8 string, and so on a user name.
const maxUsername = 65535

// Passwords is a parsed mosquitto-style password file: `username:hash` lines, blank lines and
// `#` comments. It is immutable and safe for concurrent use.
//
// Loading is stricter than mosquitto 2.0, which logs a bad line and drops that user (or, for a line
// without ':', skips it silently): here any malformed line, unknown hash kind or duplicate user
// fails the whole load with a ParseError, so a typo cannot quietly lock a user out or leave an old
// entry in force. Salts of 12 bytes (mosquitto 2.0) and 64 bytes (mosquitto's 2.1 branch) are read.
type Passwords struct {
	users map[string]*credential
	// dummy is checked for unknown users so a miss costs what a hit costs. Its parameters are
	// those of the file's most common entry; its salt and digest are random, so nothing matches it.
	dummy credential
}

// LoadPasswords reads and parses the password file at path.
func LoadPasswords(path string) (*Passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParsePasswords(f, path)
}

// ParsePasswords parses a password file read from r; name is used in error messages.
func ParsePasswords(r io.Reader, name string) (*Passwords, error) {
	p := &Passwords{users: make(map[string]*credential)}
	firstLine := make(map[string]int)
	costs := make(map[[2]int]int)
	var common [2]int
	err := eachLine(r, name, func(n int, line string) error {
		user, hash, ok, reason := splitPasswordLine(line)
		if !ok {
			return nil
		}
		if reason == "" {
			if prev, dup := firstLine[user]; dup {
				reason = fmt.Sprintf("duplicate user %q (first on line %d)", user, prev)
			}
		}
		if reason != "" {
			return &ParseError{File: name, Line: n, Reason: reason}
		}
		c, err := parseHash(hash)
		if err != nil {
			return &ParseError{File: name, Line: n, Reason: fmt.Sprintf("user %q: %v", user, err)}
		}
		p.users[user] = &c
		firstLine[user] = n
		k := c.cost()
		costs[k]++
		if costs[k] > costs[common] || len(p.users) == 1 {
			common = k
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(p.users) == 0 {
		common = [2]int{int(PBKDF2), DefaultIterations}
	}
	p.dummy, err = dummyCredential(HashKind(common[0]), common[1])
	if err != nil {
		return nil, err
	}
	return p, nil
}

// splitPasswordLine splits one line of a password file. ok is false for blank and comment lines.
// A non-empty reason says why the line is malformed; user is set whenever the line has one.
// Like mosquitto, blanks around the user name and the hash are trimmed.
func splitPasswordLine(line string) (user, hash string, ok bool, reason string) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' {
		return "", "", false, ""
	}
	i := strings.IndexByte(t, ':')
	if i < 0 {
		return "", "", true, "no ':' between user name and hash"
	}
	user, hash = strings.TrimSpace(t[:i]), strings.TrimSpace(t[i+1:])
	switch {
	case user == "":
		return user, hash, true, "empty user name"
	case len(user) > maxUsername:
		return user, hash, true, "user name longer than 65535 bytes"
	case hash == "":
		return user, hash, true, fmt.Sprintf("user %q: no hash", user)
	case strings.IndexByte(hash, ':') >= 0:
		return user, hash, true, fmt.Sprintf("user %q: unexpected ':' in hash", user)
	}
	return user, hash, true, ""
}

// dummyCredential returns a credential that costs what (kind, param) costs to verify and that no
// password matches.
func dummyCredential(kind HashKind, param int) (credential, error) {
	c := credential{kind: kind, iterations: param, salt: make([]byte, saltLen), hash: make([]byte, hashLen)}
	if _, err := rand.Read(c.salt); err != nil {
		return credential{}, fmt.Errorf("auth: dummy salt: %w", err)
	}
	if _, err := rand.Read(c.hash); err != nil {
		return credential{}, fmt.Errorf("auth: dummy hash: %w", err)
	}
	if kind == Bcrypt {
		// A well-formed bcrypt string with a random salt and digest: CompareHashAndPassword does
		// the full key schedule at this cost, then finds a mismatch.
		const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		b := []byte("$2a$" + fmt.Sprintf("%02d", param) + "$")
		for _, r := range c.hash[:53] {
			b = append(b, alphabet[int(r)%len(alphabet)])
		}
		c.hash, c.salt = b, nil
	}
	return c, nil
}

// Check reports whether password is username's password. It runs in time that does not depend
// on whether username exists (an unknown user costs a comparison against a dummy hash) or on how
// much of the password is right. An empty password never matches.
//
// The whole password is hashed. mosquitto hashes it as a C string, so a password containing a NUL
// byte is compared only up to the NUL there; here it simply does not match.
func (p *Passwords) Check(username string, password []byte) bool {
	c, ok := p.users[username]
	if !ok {
		c = &p.dummy
	}
	match := c.verify(password)
	return ok && match && len(password) > 0
}

// Has reports whether the file has username.
func (p *Passwords) Has(username string) bool {
	_, ok := p.users[username]
	return ok
}

// Len returns the number of users.
func (p *Passwords) Len() int { return len(p.users) }

// hashLine formats one password file line.
func hashLine(user, hash string) string { return user + ":" + hash + "\n" }

// validUsername says why name cannot go into a password file, or "" if it can.
func validUsername(name string) string {
	switch {
	case name == "":
		return "user name is empty"
	case len(name) > maxUsername:
		return "user name must be at most 65535 bytes"
	case strings.IndexByte(name, ':') >= 0:
		return "user name must not contain ':'"
	case strings.TrimSpace(name) != name:
		return "user name must not start or end with white space"
	case name[0] == '#':
		return "user name must not start with '#' (the line would be a comment)"
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "user name must not contain control characters"
		}
	}
	if !utf8.ValidString(name) {
		return "user name must be valid UTF-8"
	}
	return ""
}
