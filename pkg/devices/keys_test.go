package devices

import (
	"errors"
	"testing"
)

func TestParseKeyRefusesPrivateKeys(t *testing.T) {
	for _, in := range []string{
		"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
	} {
		if _, err := ParseKey([]byte(in)); !errors.Is(err, ErrPrivateKey) {
			t.Errorf("%q: %v", in[:30], err)
		}
	}
}
