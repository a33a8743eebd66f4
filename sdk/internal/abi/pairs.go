package abi

import "encoding/binary"

// AppendPairs appends the Proxy-Wasm serialization of pairs to dst: u32
// count, count × (u32 key length, u32 value length), then each key NUL value
// NUL.
func AppendPairs(dst []byte, pairs [][2]string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(pairs)))
	for _, p := range pairs {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p[0])))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p[1])))
	}
	for _, p := range pairs {
		dst = append(dst, p[0]...)
		dst = append(dst, 0)
		dst = append(dst, p[1]...)
		dst = append(dst, 0)
	}
	return dst
}

// ParsePairs decodes a serialized map, appending to dst. The strings share
// b's memory (the caller owns b and must not change it). It reports false on
// malformed input.
func ParsePairs(dst [][2]string, b []byte) ([][2]string, bool) {
	if len(b) == 0 {
		return dst, true
	}
	if len(b) < 4 {
		return dst, false
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n)*8 > uint64(len(b)-4) {
		return dst, false
	}
	sizes := b[4 : 4+8*n]
	data := b[4+8*n:]
	for i := uint32(0); i < n; i++ {
		kl := uint64(binary.LittleEndian.Uint32(sizes[8*i:]))
		vl := uint64(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if kl+vl+2 > uint64(len(data)) {
			return dst, false
		}
		k := data[:kl]
		v := data[kl+1 : kl+1+vl]
		if data[kl] != 0 || data[kl+1+vl] != 0 {
			return dst, false
		}
		dst = append(dst, [2]string{bytesString(k), bytesString(v)})
		data = data[kl+vl+2:]
	}
	return dst, true
}
