package auth

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// HashKind selects how HashPassword hashes a password.
type HashKind uint8

const (
	// PBKDF2 is mosquitto 2.x's default: `$7$<iterations>$<salt>$<hash>`, PBKDF2-HMAC-SHA512 with a
	// 12-byte salt and a 64-byte key, both standard base64 with padding. The zero HashKind.
	PBKDF2 HashKind = iota
	// Bcrypt is `$2a$<cost>$…` at DefaultBcryptCost. mosquitto itself cannot read these lines.
	Bcrypt
	// SHA512 is mosquitto 1.x's `$6$<salt>$<hash>`, one round of sha512(password || salt). It is
	// here to read and write files for old brokers; a single SHA-512 is cheap to brute-force, so
	// prefer PBKDF2.
	SHA512
)

const (
	// DefaultIterations is the PBKDF2 iteration count mosquitto_passwd 2.0 writes
	// (PW_DEFAULT_ITERATIONS in mosquitto's src/password_mosq.h).
	DefaultIterations = 101
	// DefaultBcryptCost is the bcrypt cost HashPassword uses.
	DefaultBcryptCost = 10

	saltLen   = 12 // SALT_LEN in mosquitto 2.0
	saltLen21 = 64 // mosquitto's development branch (2.1) writes 64-byte salts and reads both
	hashLen   = 64 // SHA-512 output; mosquitto asks PBKDF2 for EVP_MAX_MD_SIZE = 64 bytes too
	maxIter   = 1<<31 - 1
)

// ErrEmptyPassword is returned by HashPassword for an empty password. Check never accepts an empty
// password either: MQTT cannot tell "no password" from "empty password" through this API, and
// mosquitto refuses a known user who sends none.
var ErrEmptyPassword = errors.New("auth: empty password")

// String returns the name `broker passwd -H` takes: sha512-pbkdf2, bcrypt or sha512.
func (k HashKind) String() string {
	switch k {
	case PBKDF2:
		return "sha512-pbkdf2"
	case Bcrypt:
		return "bcrypt"
	case SHA512:
		return "sha512"
	}
	return "HashKind(" + strconv.Itoa(int(k)) + ")"
}

// ParseHashKind is the inverse of HashKind.String.
func ParseHashKind(name string) (HashKind, error) {
	for _, k := range []HashKind{PBKDF2, Bcrypt, SHA512} {
		if name == k.String() {
			return k, nil
		}
	}
	return 0, fmt.Errorf("auth: unknown hash kind %q (want sha512-pbkdf2, bcrypt or sha512)", name)
}

// HashOption adjusts HashPassword.
type HashOption func(*hashOptions)

type hashOptions struct {
	iterations int
	bcryptCost int
}

// WithIterations sets the PBKDF2 iteration count (default DefaultIterations, mosquitto_passwd's
// -I). More iterations make every CONNECT of that user cost more CPU.
func WithIterations(n int) HashOption {
	return func(o *hashOptions) { o.iterations = n }
}

// withBcryptCost lets tests use bcrypt.MinCost.
func withBcryptCost(n int) HashOption {
	return func(o *hashOptions) { o.bcryptCost = n }
}

// HashPassword returns the hash part of a password file line for password. PBKDF2 and SHA512 output
// is byte-for-byte what mosquitto_passwd writes (a fresh random 12-byte salt each call).
func HashPassword(password string, kind HashKind, opts ...HashOption) (string, error) {
	o := hashOptions{iterations: DefaultIterations, bcryptCost: DefaultBcryptCost}
	for _, opt := range opts {
		opt(&o)
	}
	if password == "" {
		return "", ErrEmptyPassword
	}
	switch kind {
	case PBKDF2, SHA512:
		if kind == PBKDF2 && (o.iterations < 1 || o.iterations > maxIter) {
			return "", fmt.Errorf("auth: PBKDF2 iterations %d out of range 1..%d", o.iterations, maxIter)
		}
		c := credential{kind: kind, iterations: o.iterations, salt: make([]byte, saltLen)}
		if _, err := rand.Read(c.salt); err != nil {
			return "", fmt.Errorf("auth: salt: %w", err)
		}
		sum, err := c.digest([]byte(password))
		if err != nil {
			return "", err
		}
		salt, hash := base64.StdEncoding.EncodeToString(c.salt), base64.StdEncoding.EncodeToString(sum)
		if kind == SHA512 {
			return "$6$" + salt + "$" + hash, nil
		}
		return "$7$" + strconv.Itoa(o.iterations) + "$" + salt + "$" + hash, nil
	case Bcrypt:
		h, err := bcrypt.GenerateFromPassword([]byte(password), o.bcryptCost)
		if err != nil {
			return "", fmt.Errorf("auth: bcrypt: %w", err)
		}
		return string(h), nil
	}
	return "", fmt.Errorf("auth: unknown hash kind %d", kind)
}

// credential is one parsed hash.
type credential struct {
	kind       HashKind
	iterations int    // PBKDF2
	salt       []byte // PBKDF2, SHA512
	hash       []byte // the 64-byte digest, or the whole bcrypt hash string
}

// digest computes the PBKDF2 or SHA512 digest of password with c's salt and iterations.
func (c *credential) digest(password []byte) ([]byte, error) {
	if c.kind == SHA512 {
		h := sha512.New()
		h.Write(password)
		h.Write(c.salt)
		return h.Sum(nil), nil
	}
	// crypto/pbkdf2 only fails in FIPS 140-only mode, which refuses mosquitto's 12-byte salts.
	return pbkdf2.Key(sha512.New, string(password), c.salt, c.iterations, hashLen)
}

// verify reports whether password hashes to c, in time that depends on c's parameters only.
func (c *credential) verify(password []byte) bool {
	if c.kind == Bcrypt {
		return bcrypt.CompareHashAndPassword(c.hash, password) == nil
	}
	sum, err := c.digest(password)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(sum, c.hash) == 1
}

// cost identifies the work verify does, so the dummy credential for unknown users can match the
// file's usual entry.
func (c *credential) cost() [2]int {
	switch c.kind {
	case PBKDF2:
		return [2]int{int(c.kind), c.iterations}
	case Bcrypt:
		n, _ := bcrypt.Cost(c.hash)
		return [2]int{int(c.kind), n}
	}
	return [2]int{int(c.kind), 0}
}

// parseHash parses the hash field of a password line. Errors are reasons for a ParseError, so they
// name what is wrong without repeating the hash.
func parseHash(s string) (credential, error) {
	switch {
	case strings.HasPrefix(s, "$7$"):
		f := strings.Split(s[3:], "$")
		if len(f) != 3 {
			return credential{}, errors.New("malformed $7$ hash: want $7$<iterations>$<salt>$<hash>")
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 || n > maxIter || f[0][0] == '+' {
			return credential{}, fmt.Errorf("bad $7$ iteration count %q", f[0])
		}
		c, err := parseSaltHash(PBKDF2, f[1], f[2])
		c.iterations = n
		return c, err
	case strings.HasPrefix(s, "$6$"):
		f := strings.Split(s[3:], "$")
		if len(f) != 2 {
			return credential{}, errors.New("malformed $6$ hash: want $6$<salt>$<hash>")
		}
		return parseSaltHash(SHA512, f[0], f[1])
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if len(s) != 60 {
			return credential{}, fmt.Errorf("malformed bcrypt hash: %d characters, want 60", len(s))
		}
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return credential{}, fmt.Errorf("malformed bcrypt hash: %v", err)
		}
		return credential{kind: Bcrypt, hash: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2"):
		return credential{}, errors.New("unknown hash kind: argon2 hashes (newer mosquitto) are not supported; use sha512-pbkdf2 or bcrypt")
	case !strings.HasPrefix(s, "$"):
		return credential{}, errors.New("unknown hash kind: not a hash (a plain-text password? hash it with 'broker passwd')")
	}
	kind := s
	if i := strings.IndexByte(s[1:], '$'); i >= 0 {
		kind = s[:i+2]
	}
	if len(kind) > 12 {
		kind = kind[:12] + "…"
	}
	return credential{}, fmt.Errorf("unknown hash kind %q (want $7$, $6$, $2a$, $2b$ or $2y$)", kind)
}

func parseSaltHash(kind HashKind, salt64, hash64 string) (credential, error) {
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return credential{}, errors.New("bad base64 in salt")
	}
	if len(salt) != saltLen && len(salt) != saltLen21 {
		return credential{}, fmt.Errorf("salt is %d bytes, want %d", len(salt), saltLen)
	}
	hash, err := base64.StdEncoding.DecodeString(hash64)
	if err != nil {
		return credential{}, errors.New("bad base64 in hash")
	}
	if len(hash) != hashLen {
		return credential{}, fmt.Errorf("hash is %d bytes, want %d", len(hash), hashLen)
	}
	return credential{kind: kind, salt: salt, hash: hash}, nil
}
