// Package auth owns client authentication and topic authorisation for the broker, in the file
// formats mosquitto users already have: a password file of `username:hash` lines (mosquitto's
// `$7$` PBKDF2-SHA512 and `$6$` salted SHA-512 hashes, plus bcrypt) and an ACL file of `user`,
// `topic` and `pattern` lines.
//
// Passwords and ACL are immutable once parsed and safe for concurrent use. Store holds one of each
// behind an atomic pointer so a reload swaps both at once while connections keep checking.
// RunPasswd is the `broker passwd` subcommand, a mosquitto_passwd look-alike.
//
// JWT authenticates clients whose password is a JSON Web Token, with the keys of a
// DeviceKeySource (package devices: the registry in Redis) or of an identity provider's JWKS;
// the broker decides which method applies (client certificate, password file, then JWT).
//
// Where mosquitto versions differ, or where we deliberately differ from mosquitto, the comment on
// the type or function concerned says so.
package auth

import "fmt"

// ParseError reports a malformed line in a password or ACL file. Loading stops at the first one:
// a half-loaded security file is worse than none.
type ParseError struct {
	File   string // the name given to Parse*, or the path given to Load*
	Line   int    // 1-based
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:line %d: %s", e.File, e.Line, e.Reason)
}
