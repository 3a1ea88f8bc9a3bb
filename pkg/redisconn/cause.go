package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"syscall"
)

// Cause names why err, an error from opening a connection to Redis or from a command on it, keeps
// the process from using Redis, in words an operator can act on; "" when err says nothing about
// the connection's security set-up (Redis is down, a timeout, ...). tlsOn says whether the client
// spoke TLS: a Redis that only speaks TLS closes a plain-text connection without a reply.
func Cause(err error, tlsOn bool) string {
	if err == nil {
		return ""
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError
	var hs *HandshakeError
	switch {
	case errors.As(err, &unknownCA):
		return "the Redis server's certificate is not trusted: no CA in the TLS CA file signed it"
	case errors.As(err, &hostname):
		return "the Redis server's certificate is not valid for the TLS server name"
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "the Redis server's certificate has expired or is not valid yet"
		}
		return "the Redis server's certificate is invalid"
	case errors.As(err, &record):
		return "the Redis server does not speak TLS"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "remote error: tls:"):
		// The server sent an alert: most often a client certificate it wants or rejects (with TLS
		// 1.3 the client hears of it only at its first read).
		return "the Redis server refused the TLS handshake (client certificate missing or not accepted?)"
	case errors.As(err, &hs) && errors.Is(err, context.DeadlineExceeded):
		return "no TLS answer from the Redis server in time: it may not speak TLS"
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"):
		return "wrong Redis user name or password"
	case strings.Contains(msg, "NOAUTH"):
		return "Redis requires a password and none is configured"
	case strings.Contains(msg, "NOPERM"):
		return "the Redis user is not allowed a command, key or channel it needs (Redis ACL)"
	case strings.Contains(msg, "without any password configured"), strings.Contains(msg, "no password is set"):
		return "a password is configured but Redis has none set"
	case strings.Contains(msg, "redis password file"):
		return "the Redis password file cannot be read"
	}
	if !tlsOn && !errors.As(err, &hs) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET)) {
		return "Redis closed the connection at once: a Redis that only speaks TLS does that to plain-text clients"
	}
	return ""
}

// Explain returns err prefixed with its Cause, or err itself when Cause has nothing to say.
func (c *Connector) Explain(err error) error {
	if cause := Cause(err, c.TLS()); cause != "" {
		return &CausedError{Cause: cause, Err: err}
	}
	return err
}

// CausedError is an error with the reason Cause found for it.
type CausedError struct {
	Cause string
	Err   error
}

func (e *CausedError) Error() string { return e.Cause + ": " + e.Err.Error() }

func (e *CausedError) Unwrap() error { return e.Err }
