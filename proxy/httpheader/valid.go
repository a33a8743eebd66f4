package httpheader

// Syntax checks for what a proxy writes into a message: the listener holds
// downstream requests to them, and the Wasm host holds filters' writes to
// them, so a header a filter sets is refused for what a request is refused
// for (RFC 9110 §5.1, §5.5; RFC 9112 §3).

// ValidName reports whether b is a field name: an RFC 9110 token.
func ValidName(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return len(b) > 0
}

// ValidValue reports whether b may be a field value: no control character
// but HTAB (so no NUL, CR or LF), no DEL; obs-text is allowed, as fasthttp
// allows it from a client.
func ValidValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// ValidMethod reports whether b is a method: a token (so no space).
func ValidMethod(b []byte) bool { return ValidName(b) }

// ValidPath reports whether b may be a :path, the request target a proxy
// sends: origin-form ("/" then no space or control character) or "*".
func ValidPath(b []byte) bool {
	if len(b) == 1 && b[0] == '*' {
		return true
	}
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// ValidAuthority reports whether b may be an :authority (Host): a host
// (reg-name, IPv4 or IP-literal) with an optional port, RFC 3986 §3.2.2;
// no userinfo, space, path or control character.
func ValidAuthority(b []byte) bool {
	for _, c := range b {
		if !authChar[c] {
			return false
		}
	}
	return len(b) > 0
}

// ValidScheme reports whether b is a :scheme a proxy forwards: http or
// https, any case.
func ValidScheme(b []byte) bool {
	switch len(b) {
	case 4, 5:
	default:
		return false
	}
	var l [5]byte
	for i, c := range b {
		l[i] = c | 0x20
	}
	s := string(l[:len(b)])
	return s == "http" || s == "https"
}

// tchar: RFC 9110 §5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// authChar: unreserved, sub-delims, pct-encoded's "%", ":" for the port,
// "[" and "]" for an IP-literal.
var authChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~!$&'()*+,;=%:[]" {
		t[c] = true
	}
	return t
}()
