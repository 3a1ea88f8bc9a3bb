package bus

import (
	"fmt"

	"github.com/klauspost/compress/s2"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Reading the export stream's entries (the adapter's side of export.go).

// maxExportEntry bounds the decompressed size of an export entry: four times the chunk limit,
// far above what a broker writes; anything larger is refused as malformed, unread.
const maxExportEntry = 4 * exportChunkBytes

// DecodeExportEntry decodes the messages of an export stream entry, compressed or not, an
// export batch (ExportVersion, what brokers write) or an envelope batch (EnvelopeVersion, what
// brokers wrote before): both give the same messages. The messages alias the entry (or the
// buffer it was decompressed into).
func DecodeExportEntry(entry []byte) ([]Message, error) {
	plain := entry
	if len(entry) > 0 && entry[0] == ExportCompressed {
		n, err := s2.DecodedLen(entry[1:])
		if err != nil || n > maxExportEntry {
			return nil, malformed(1, fmt.Sprintf("compressed entry of %d bytes (%v)", n, err))
		}
		if plain, err = s2.Decode(make([]byte, n), entry[1:]); err != nil {
			return nil, malformed(1, "compressed entry: "+err.Error())
		}
	}
	if len(plain) > 0 && plain[0] == ExportVersion {
		return wire.DecodeExportBatch(nil, plain)
	}
	return DecodeBatch(plain)
}
