package jws

import (
	"encoding/json"
	"unicode/utf8"
	"unsafe"
)

// The JSON scanner of a token's header and payload: it finds the members of
// one object and leaves their values raw. It accepts exactly what the auth
// plugin's scanner accepts (plugins/auth/json.go): RFC 8259 syntax, values
// nested at most maxDepth deep, names unescaped (invalid UTF-8 in an escaped
// name becomes U+FFFD, as encoding/json does).

// maxDepth bounds nesting inside a member's value.
const maxDepth = 32

// member is one member of a JSON object: the name (unescaped) and the raw
// value.
type member struct {
	name string
	raw  []byte
}

// parseObject appends the members of the JSON object b to dst, in order,
// and reports whether b is exactly one valid JSON object (whitespace
// around allowed). Names may point into b.
func parseObject(b []byte, dst []member) ([]member, bool) {
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
		dst = append(dst, member{name: name, raw: b[i:vend]})
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

// lookup returns the raw value of the last member named name (a repeated
// name counts once, the last one, as with encoding/json).
func lookup(ms []member, name string) ([]byte, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].name == name {
			return ms[i].raw, true
		}
	}
	return nil, false
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
		if depth >= maxDepth {
			return -1
		}
		return scanComposite(b, i, depth)
	}
	return -1
}

// scanComposite scans the array or object at b[i].
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

// stringValue decodes a scanned JSON string token (quotes included): a
// view of tok when it has no escapes and is valid UTF-8, else through
// encoding/json (rare).
func stringValue(tok []byte, escaped bool) (string, bool) {
	if !escaped && utf8.Valid(tok) {
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

// rawString decodes raw when it is a JSON string.
func rawString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	escaped := false
	for _, c := range raw {
		if c == '\\' {
			escaped = true
			break
		}
	}
	return stringValue(raw, escaped)
}
