// Package jsonscan finds the members of one JSON object and leaves their
// values raw, to be decoded when used. encoding/json decodes through
// reflection and allocates per member, which in a Wasm guest costs more than
// the work around it; this scanner allocates nothing for valid input without
// escapes. It accepts exactly RFC 8259 JSON (nesting at most MaxDepth deep);
// escaped names and strings go through encoding/json, so invalid UTF-8 in
// them becomes U+FFFD as there.
//
// The auth plugin (a guest) and the host's JWS verifier (proxy/wasm/jws)
// share it, so both read a token's claims the same way.
package jsonscan

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth bounds nesting inside a member's value: deeper values are
// refused.
const MaxDepth = 32

// Member is one member of a JSON object: the name (unescaped) and the raw
// value (a valid JSON value, whitespace trimmed).
type Member struct {
	Name string
	Raw  []byte
}

// Lookup returns the raw value of the last member named name (a repeated
// name counts once, the last one, as with encoding/json).
func Lookup(ms []Member, name string) ([]byte, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Name == name {
			return ms[i].Raw, true
		}
	}
	return nil, false
}

// Object appends the members of the JSON object b to dst, in order, and
// reports whether b is exactly one valid JSON object (RFC 8259; whitespace
// around allowed). Names (and strings from String) may point into b: b must
// not change while they are in use.
func Object(b []byte, dst []Member) ([]Member, bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return dst, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return dst, skipWS(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return dst, false
		}
		end, escaped := scanString(b, i)
		if end < 0 {
			return dst, false
		}
		name, ok := stringValue(b[i:end], escaped)
		if !ok {
			return dst, false
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return dst, false
		}
		i = skipWS(b, i+1)
		vend := scanValue(b, i, 0)
		if vend < 0 {
			return dst, false
		}
		dst = append(dst, Member{Name: name, Raw: b[i:vend]})
		i = skipWS(b, vend)
		if i >= len(b) {
			return dst, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return dst, skipWS(b, i+1) == len(b)
		default:
			return dst, false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanValue returns the end of the value at b[i], or -1.
func scanValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		end, _ := scanString(b, i)
		return end
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == '[' || c == '{':
		if depth >= MaxDepth {
			return -1
		}
		return scanComposite(b, i, depth)
	}
	return -1
}

// scanComposite scans an array or object at b[i].
func scanComposite(b []byte, i, depth int) int {
	obj := b[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1
	}
	for {
		if obj {
			if i >= len(b) || b[i] != '"' {
				return -1
			}
			end, _ := scanString(b, i)
			if end < 0 {
				return -1
			}
			i = skipWS(b, end)
			if i >= len(b) || b[i] != ':' {
				return -1
			}
			i = skipWS(b, i+1)
		}
		end := scanValue(b, i, depth+1)
		if end < 0 {
			return -1
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case closer:
			return i + 1
		default:
			return -1
		}
	}
}

// scanString returns the end of the string at b[i] (just past the closing
// quote) and whether it has escapes, or -1.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped
		case c < 0x20:
			return -1, false
		case c == '\\':
			escaped = true
			i++
			if i >= len(b) {
				return -1, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1, false
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1, false
					}
				}
				i += 4
			default:
				return -1, false
			}
		}
	}
	return -1, false
}

// scanNumber returns the end of the number at b[i] (RFC 8259 grammar), or
// -1.
func scanNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// stringValue decodes a scanned JSON string token (quotes included).
// Strings without escapes are the bytes between the quotes; the rare
// escaped ones go through encoding/json.
func stringValue(tok []byte, escaped bool) (string, bool) {
	if !escaped && utf8.Valid(tok) {
		// A view, not a copy: an allocation costs more in the VM than
		// the rest of a claim's parsing, and the callers' buffers (a
		// decoded token or header) never change once parsed.
		if len(tok) == 2 {
			return "", true
		}
		return unsafe.String(&tok[1], len(tok)-2), true
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return "", false
	}
	return s, true
}

// String decodes raw when it is a JSON string.
func String(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	return stringValue(raw, strings.IndexByte(string(raw), '\\') >= 0)
}

// Array calls fn with each element of the JSON array raw until fn
// returns false; it reports whether raw is an array.
func Array(raw []byte, fn func(elem []byte) bool) bool {
	if len(raw) == 0 || raw[0] != '[' {
		return false
	}
	i := skipWS(raw, 1)
	if i < len(raw) && raw[i] == ']' {
		return true
	}
	for i < len(raw) {
		end := scanValue(raw, i, 0)
		if end < 0 {
			return false
		}
		if !fn(raw[i:end]) {
			return true
		}
		i = skipWS(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = skipWS(raw, i+1)
			continue
		}
		break
	}
	return true
}

// MaxSeconds bounds a NumericDate: beyond ±10^15 seconds (some 31 million
// years) a date is refused rather than rounded.
const MaxSeconds = 1e15

// NumericDate reads an RFC 7519 NumericDate (seconds since the epoch, a JSON
// number, fractions allowed). ok is false when raw is not a number or is out
// of ±MaxSeconds.
func NumericDate(raw []byte) (t time.Time, ok bool) {
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return time.Time{}, false
	}
	if sec, ok := smallInt(raw); ok {
		return time.Unix(sec, 0), true // the common case: no allocation
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != f || f > MaxSeconds || f < -MaxSeconds {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// smallInt parses raw when it is a non-negative integer of at most 15
// digits (exactly what float parsing would give).
func smallInt(raw []byte) (int64, bool) {
	if len(raw) == 0 || len(raw) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
