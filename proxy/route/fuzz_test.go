package route

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// rewinder serves the same bytes again and again through one bufio.Reader.
type rewinder struct {
	raw []byte
	rd  *bytes.Reader
	br  *bufio.Reader
}

func newRewinder(raw []byte) *rewinder {
	rd := bytes.NewReader(raw)
	return &rewinder{raw: raw, rd: rd, br: bufio.NewReader(rd)}
}

func (r *rewinder) rewind() *bufio.Reader {
	r.rd.Reset(r.raw)
	r.br.Reset(r.rd)
	return r.br
}

// The reference matcher below restates the documented matching rules with
// strings and no care for speed; FuzzMatch checks Table.Match against it.

func refStripPort(h string) string {
	i := strings.LastIndexByte(h, ':')
	switch {
	case i < 0:
		return h
	case strings.HasPrefix(h, "["):
		if strings.HasSuffix(h[:i], "]") {
			return h[:i]
		}
		return h
	case strings.Contains(h[:i], ":"):
		return h
	}
	return h[:i]
}

func refVirtualHost(l *config.Listener, host string) *config.VirtualHost {
	h := strings.ToLower(host)
	exact := func(h string) *config.VirtualHost {
		for i := range l.VirtualHosts {
			for _, d := range l.VirtualHosts[i].Domains {
				if !strings.Contains(d, "*") && strings.ToLower(d) == h {
					return &l.VirtualHosts[i]
				}
			}
		}
		return nil
	}
	if vh := exact(h); vh != nil {
		return vh
	}
	h = refStripPort(h)
	if len(h) > 1 && strings.HasSuffix(h, ".") {
		h = h[:len(h)-1]
	}
	if vh := exact(h); vh != nil {
		return vh
	}
	var best *config.VirtualHost
	bestLen := -1
	for _, suffix := range []bool{true, false} {
		for i := range l.VirtualHosts {
			for _, d := range l.VirtualHosts[i].Domains {
				d = strings.ToLower(d)
				if d == "*" {
					continue
				}
				var ok bool
				if suffix && strings.HasPrefix(d, "*") {
					ok = len(h) > len(d)-1 && strings.HasSuffix(h, d[1:])
				} else if !suffix && strings.HasSuffix(d, "*") {
					ok = len(h) > len(d)-1 && strings.HasPrefix(h, d[:len(d)-1])
				}
				if ok && len(d) > bestLen {
					best, bestLen = &l.VirtualHosts[i], len(d)
				}
			}
		}
		if best != nil {
			return best
		}
	}
	for i := range l.VirtualHosts {
		for _, d := range l.VirtualHosts[i].Domains {
			if d == "*" {
				return &l.VirtualHosts[i]
			}
		}
	}
	return nil
}

func refValue(m config.HeaderMatcher, v string) bool {
	var ok bool
	switch {
	case m.Exact != "":
		ok = v == m.Exact
	case m.Prefix != "":
		ok = strings.HasPrefix(v, m.Prefix)
	case m.Regex != "":
		ok = v != "" && regexp.MustCompile("^(?:"+m.Regex+")$").MatchString(v)
	case m.Present:
		ok = v != ""
	case m.Absent:
		ok = v == ""
	}
	return ok != m.Invert
}

func refRoute(l *config.Listener, req *fasthttp.Request) string {
	host := string(req.Header.Host())
	if host == "" {
		host = string(req.URI().Host())
	}
	vh := refVirtualHost(l, host)
	if vh == nil {
		return "<nil>"
	}
	path := string(req.URI().Path())
	method := string(req.Header.Method())
	for i, r := range vh.Routes {
		m := r.Match
		switch {
		case m.Path != "":
			if path != m.Path {
				continue
			}
		case m.Regex != "":
			if !regexp.MustCompile("^(?:" + m.Regex + ")$").MatchString(path) {
				continue
			}
		default:
			if !strings.HasPrefix(path, m.Prefix) {
				continue
			}
		}
		ok := len(m.Methods) == 0
		for _, mm := range m.Methods {
			ok = ok || mm == method
		}
		for _, h := range m.Headers {
			ok = ok && refValue(h, string(req.Header.Peek(h.Name)))
		}
		for _, q := range m.Query {
			ok = ok && refValue(q, string(req.URI().QueryArgs().Peek(q.Name)))
		}
		for _, c := range m.Cookies {
			ok = ok && refValue(c, string(req.Header.Cookie(c.Name)))
		}
		if ok {
			name := r.Name
			if name == "" {
				name = "#" + string(rune('0'+i))
			}
			return vh.Name + "/" + name
		}
	}
	return "<nil>"
}

// FuzzMatch: any host, path, method, header, query and cookie either
// matches the route the reference matcher picks or none, and matching the
// same request twice (or a copy of it) gives the same route.
func FuzzMatch(f *testing.F) {
	c, err := config.Load("testdata/routes.yaml")
	if err != nil {
		f.Fatal(err)
	}
	l := &c.Listeners[0]
	tbl, err := Compile(*l, clusterIndex(c))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("api.local", "GET", "/users/42", "prod", "v=2", "session=deadbeef")
	f.Add("API.local:8443", "POST", "/m", "", "", "")
	f.Add("a.eu.mesh.local.", "GET", "/h/", "dev-abc", "debug=1", "")
	f.Add("static.cdn.x", "DELETE", "/all?force=yes", "prod", "force=yes", "admin=1")
	f.Add("[::1]:80", "GET", "/%65xact", "staging", "", "session=")
	f.Add("", "GET", "//..//exact", "", "v=%32", "a=b;;session=0123abcd")
	f.Fuzz(func(t *testing.T, host, method, path, env, query, cookie string) {
		build := func() *fasthttp.Request {
			req := &fasthttp.Request{}
			req.Header.SetMethod(method)
			req.SetRequestURI(path)
			if query != "" {
				req.URI().SetQueryString(query)
			}
			req.Header.SetHost(host)
			req.Header.Set("X-Env", env)
			req.Header.Set("Cookie", cookie)
			return req
		}
		req := build()
		first := tbl.Match(req)
		if second := tbl.Match(req); first != second {
			t.Fatalf("matched %s then %s", matchName(first), matchName(second))
		}
		if other := tbl.Match(build()); other != first {
			t.Fatalf("a copy of the request matched %s, the original %s", matchName(other), matchName(first))
		}
		if want := refRoute(l, req); matchName(first) != want {
			t.Fatalf("host %q method %q path %q (decoded %q) env %q query %q cookie %q: matched %s, reference %s",
				host, method, path, req.URI().Path(), env, query, cookie, matchName(first), want)
		}
	})
}
