// Package devices is the device registry for JWT authentication: each device's public keys (RSA
// or EC P-256, as a PEM public key or an X.509 certificate, each with an optional expiry time),
// kept in Redis so that every broker replica sees a change at its next CONNECT. The broker's
// `broker devices` subcommand and the health gateway's management API change it through this
// package. Only public keys are ever stored; private material is refused.
package devices

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// The key formats, named as in Cloud IoT Core.
const (
	FormatRSA      = "RSA_PEM"
	FormatRSAX509  = "RSA_X509_PEM"
	FormatES256    = "ES256_PEM"
	FormatES25X509 = "ES256_X509_PEM"
)

// MinRSABits is the smallest RSA key accepted.
const MinRSABits = 2048

// MaxDeviceIDLength bounds a device id.
const MaxDeviceIDLength = 256

// ErrPrivateKey is returned for PEM input that holds a private key: the registry keeps public keys
// only, and a private key given to it has leaked already.
var ErrPrivateKey = errors.New("this is a PRIVATE key: give the public key (openssl pkey -pubout) or the " +
	"certificate; the private key stays on the device and is never stored")

// Key is a parsed public key as the registry stores it.
type Key struct {
	ID     string // fingerprint: hex SHA-256 of the SubjectPublicKeyInfo, first 16 bytes
	Format string // FormatRSA, FormatRSAX509, FormatES256 or FormatES25X509
	PEM    string // the block given: PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE
	Public crypto.PublicKey
}

// ParseKey reads one PEM block: a PUBLIC KEY (PKIX), an RSA PUBLIC KEY (PKCS #1) or a
// CERTIFICATE. It refuses private keys (ErrPrivateKey), RSA keys under MinRSABits and EC keys on
// other curves than P-256 (tokens are RS256 or ES256).
func ParseKey(data []byte) (Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		if strings.Contains(string(data), "PRIVATE KEY") {
			return Key{}, ErrPrivateKey
		}
		return Key{}, errors.New("no PEM block found (want -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----)")
	}
	if strings.Contains(block.Type, "PRIVATE KEY") || strings.Contains(string(rest), "PRIVATE KEY") {
		return Key{}, ErrPrivateKey
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return Key{}, errors.New("more than one PEM block: give one key per call")
	}
	pub, cert, err := parseBlock(block)
	if err != nil {
		return Key{}, err
	}
	k := Key{PEM: string(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: block.Bytes})), Public: pub}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < MinRSABits {
			return Key{}, fmt.Errorf("RSA key of %d bits: at least %d are required", p.N.BitLen(), MinRSABits)
		}
		k.Format = pick(cert, FormatRSA, FormatRSAX509)
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return Key{}, fmt.Errorf("EC key on %s: only P-256 (ES256) is accepted", p.Curve.Params().Name)
		}
		k.Format = pick(cert, FormatES256, FormatES25X509)
	default:
		return Key{}, fmt.Errorf("unsupported key type %T: RSA or EC P-256", pub)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Key{}, err
	}
	sum := sha256.Sum256(spki)
	k.ID = hex.EncodeToString(sum[:16])
	return k, nil
}

func pick(cert bool, plain, x509 string) string {
	if cert {
		return x509
	}
	return plain
}

// parseBlock returns the public key of a PEM block, and whether it came from a certificate.
func parseBlock(b *pem.Block) (crypto.PublicKey, bool, error) {
	switch b.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		return pub, false, err
	case "RSA PUBLIC KEY":
		pub, err := x509.ParsePKCS1PublicKey(b.Bytes)
		return pub, false, err
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, true, err
		}
		return c.PublicKey, true, nil
	}
	return nil, false, fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", b.Type)
}

// ValidateDeviceID reports whether id can name a device: 1 to MaxDeviceIDLength bytes, no
// spaces, control characters or braces (the braces would break its Redis hash tag).
func ValidateDeviceID(id string) error {
	if id == "" {
		return errors.New("device id is empty")
	}
	if len(id) > MaxDeviceIDLength {
		return fmt.Errorf("device id longer than %d bytes", MaxDeviceIDLength)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == '{' || c == '}' || c == 0x7f {
			return fmt.Errorf("device id %q: character %q not allowed", id, c)
		}
	}
	return nil
}
