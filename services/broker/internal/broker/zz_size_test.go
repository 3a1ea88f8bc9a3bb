package broker

import (
	"testing"
	"unsafe"

	"github.com/mcloudtt/mcloudtt/pkg/sockio"
)

func TestZZSizes(t *testing.T) {
	t.Logf("client %d outbound %d connReader %d session %d sockio.Conn %d presenceConn %d", unsafe.Sizeof(client{}), unsafe.Sizeof(outbound{}), unsafe.Sizeof(connReader{}), unsafe.Sizeof(session{}), unsafe.Sizeof(sockio.Conn{}), unsafe.Sizeof(presenceConn{}))
}
