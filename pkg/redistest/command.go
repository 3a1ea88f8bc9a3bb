package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
)

// Do sends one command as the default user (with the WithPassword password), over TLS for a
// WithTLS server; see the package function Do for the reply.
func (s *Server) Do(args ...string) (string, error) {
	if s.pki == nil {
		return Do(s.Addr(), s.pass, args...)
	}
	pool, err := redisconn.LoadCAFile(s.pki.CAFile)
	if err != nil {
		return "", err
	}
	conf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	cert, err := tls.LoadX509KeyPair(s.pki.ClientCertFile, s.pki.ClientKeyFile)
	if err != nil {
		return "", err
	}
	conf.Certificates = []tls.Certificate{cert}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: conf}
	c, err := d.Dial("tcp", s.Addr())
	if err != nil {
		return "", err
	}
	return do(c, s.pass, args...)
}

// Do sends one command to the server at addr on a fresh connection (after AUTH when password is
// set) and returns the reply: a status or bulk string as is, an integer in decimal, an array's
// elements joined by newlines. An error reply is returned as an error. It is for test set-up, not
// for speed.
func Do(addr, password string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	return do(c, password, args...)
}

func do(c net.Conn, password string, args ...string) (string, error) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var cmd []byte
	if password != "" {
		cmd = appendCommand(cmd, "AUTH", password)
	}
	cmd = appendCommand(cmd, args...)
	if _, err := c.Write(cmd); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	if password != "" {
		if _, err := readReply(r); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	return readReply(r)
}

func appendCommand(dst []byte, args ...string) []byte {
	dst = fmt.Appendf(dst, "*%d\r\n", len(args))
	for _, a := range args {
		dst = fmt.Appendf(dst, "$%d\r\n%s\r\n", len(a), a)
	}
	return dst
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return "", nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for i := 0; i < n; i++ {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

// Info returns one field of INFO section (as "calls" of "cmdstat_publish" in commandstats, or a
// plain "field:value" line when sub is ""). It fails the test on error.
func (s *Server) Info(section, field, sub string) string {
	s.t.Helper()
	info, err := s.Do("INFO", section)
	if err != nil {
		s.t.Fatalf("redistest: INFO %s: %v", section, err)
	}
	return InfoField(info, field, sub)
}

// InfoField picks field (and, for "a=1,b=2" values, its sub-field) out of INFO output; "" when
// absent.
func InfoField(info, field, sub string) string {
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != field {
			continue
		}
		if sub == "" {
			return v
		}
		for _, kv := range strings.Split(v, ",") {
			if sk, sv, ok := strings.Cut(kv, "="); ok && sk == sub {
				return sv
			}
		}
	}
	return ""
}

// CommandCalls returns how many times the server ran command (lowercase, "publish") since it
// started or since CONFIG RESETSTAT.
func (s *Server) CommandCalls(command string) int {
	s.t.Helper()
	n, _ := strconv.Atoi(s.Info("commandstats", "cmdstat_"+command, "calls"))
	return n
}
