package listener

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// Session ticket keys shared by the replicas.
//
// A TLS client that resumes a session skips the certificate signature and the key exchange of a
// full handshake: several times less CPU on both sides. Go's TLS server makes and rotates its own
// ticket keys, per process, so a device that comes back to another replica (the usual case after a
// replica dies) cannot resume there. With TLSOptions.TicketKeyFile every replica encrypts tickets
// with the same keys, so a ticket from any replica resumes at any other.
//
// The file holds one key per line, 32 random bytes in base64 (`openssl rand -base64 32`); blank
// lines and lines starting with # are skipped. New tickets are made with the first key; the
// others are still accepted, so keys rotate by putting a new one on top and dropping the last a
// ticket lifetime later (Go's tickets live 7 days). The file is re-read with the certificate
// (Watch, Reload). Anyone with a key can decrypt the sessions resumed with it: keep the file as
// secret as the private key, and rotate it.

// loadTicketKeys reads a ticket key file.
func loadTicketKeys(path string) ([][32]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("listener: TLS ticket keys: %w", err)
	}
	var keys [][32]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(text)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("listener: TLS ticket keys %s line %d: want 32 bytes in base64 (openssl rand -base64 32)", path, line)
		}
		keys = append(keys, [32]byte(raw))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("listener: TLS ticket keys %s: no key", path)
	}
	return keys, nil
}
