package wasm

import (
	"bytes"
	"compress/zlib"
	"io"
)

// Envoy's compress and uncompress foreign functions: zlib (RFC 1950)
// streams, as its compress2/uncompress. uncompress bounds its output so a
// small bomb cannot take the host's memory.

// maxUncompressed bounds what uncompress returns.
const maxUncompressed = 16 << 20

// foreignCompress is "compress": args zlib-compressed.
func foreignCompress(_ *vm, args []byte) ([]byte, uint32) {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write(args); err != nil {
		return nil, statusSerializationFailed
	}
	if err := w.Close(); err != nil {
		return nil, statusSerializationFailed
	}
	return b.Bytes(), statusOK
}

// foreignUncompress is "uncompress": args a zlib stream, the bytes it
// holds; a malformed or oversized stream answers SerializationFailure.
func foreignUncompress(_ *vm, args []byte) ([]byte, uint32) {
	r, err := zlib.NewReader(bytes.NewReader(args))
	if err != nil {
		return nil, statusSerializationFailed
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, maxUncompressed+1))
	if err != nil || len(out) > maxUncompressed {
		return nil, statusSerializationFailed
	}
	return out, statusOK
}
