package httpheader

import "testing"

func TestValid(t *testing.T) {
	cases := []struct {
		name string
		f    func([]byte) bool
		in   string
		want bool
	}{
		{"name", ValidName, "X-Ok_1!#$%&'*+.^`|~", true},
		{"name space", ValidName, "X Bad", false},
		{"name colon", ValidName, "X:Bad", false},
		{"name empty", ValidName, "", false},
		{"name obs-text", ValidName, "X\xe9", false},
		{"value", ValidValue, "a b\tc\xe9 \"q\"", true},
		{"value empty", ValidValue, "", true},
		{"value CR", ValidValue, "a\rb", false},
		{"value LF", ValidValue, "a\nb", false},
		{"value NUL", ValidValue, "a\x00b", false},
		{"value DEL", ValidValue, "a\x7f", false},
		{"value VT", ValidValue, "a\vb", false},
		{"method", ValidMethod, "PURGE", true},
		{"method space", ValidMethod, "GET /", false},
		{"path", ValidPath, "/a/b?c=d&e=%20", true},
		{"path asterisk", ValidPath, "*", true},
		{"path empty", ValidPath, "", false},
		{"path relative", ValidPath, "a/b", false},
		{"path absolute-form", ValidPath, "http://h/", false},
		{"path space", ValidPath, "/a b", false},
		{"path tab", ValidPath, "/a\tb", false},
		{"path DEL", ValidPath, "/a\x7f", false},
		{"authority", ValidAuthority, "svc.ns.svc.cluster.local:8080", true},
		{"authority ipv6", ValidAuthority, "[::1]:80", true},
		{"authority userinfo", ValidAuthority, "u@h", false},
		{"authority path", ValidAuthority, "h/p", false},
		{"authority space", ValidAuthority, "h h", false},
		{"authority empty", ValidAuthority, "", false},
		{"scheme", ValidScheme, "HTTPS", true},
		{"scheme other", ValidScheme, "ftp", false},
		{"scheme long", ValidScheme, "httpss", false},
	}
	for _, c := range cases {
		if got := c.f([]byte(c.in)); got != c.want {
			t.Errorf("%s: %q → %v, want %v", c.name, c.in, got, c.want)
		}
	}
}
