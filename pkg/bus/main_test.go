package bus

import (
	"os"
	"testing"

	"github.com/rs/zerolog"
)

func TestMain(m *testing.M) {
	// go-redis' pool logs every failed dial to stderr; the bus logs its own attempts per test.
	SetRedisLogger(zerolog.Nop())
	os.Exit(m.Run())
}
