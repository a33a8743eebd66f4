package listener

import (
	"bytes"
	"net/http"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/httpheader"
)

// Strict HTTP/1.1 (RFC 9110, RFC 9112). fasthttp parses the request head;
// what it accepts leniently but a proxy must not pass on is refused here,
// before any filter or upstream sees the request, the way nginx and Envoy
// refuse it: a header name that is not a token (a space inside it), an
// obs-fold continuation line, a bare LF, more header fields than the
// listener allows, a version other than HTTP/1.0 and HTTP/1.1, and
// Content-Length with Transfer-Encoding. Each refusal closes the
// connection, is counted by reason, and is logged once per reason.

// Reason is why a request was refused before it reached the handler.
type Reason int

// The reasons, in the order Rejects counts them.
const (
	RejectParse          Reason = iota // fasthttp could not parse the head (400)
	RejectHeaderTooLarge               // header block over max_header_bytes (431)
	RejectBodyTooLarge                 // body over max_body_bytes (413)
	RejectTimeout                      // the request was not read within read_timeout (408)
	RejectVersion                      // a version other than HTTP/1.0 or HTTP/1.1 (505)
	RejectHeaderName                   // a header name that is not an RFC 9110 token (400)
	RejectHeaderCount                  // more header fields than max_headers_count (431)
	RejectObsFold                      // an obs-fold continuation line (400)
	RejectBareLF                       // a line ended by LF alone (400)
	RejectFraming                      // Content-Length with Transfer-Encoding (400)
	RejectTarget                       // an absolute-form target with userinfo (400)
	numReasons
)

var reasonNames = [numReasons]string{
	"parse", "header_too_large", "body_too_large", "timeout", "version",
	"header_name", "header_count", "obs_fold", "bare_lf", "framing", "target",
}

// String is the reason's metric label.
func (r Reason) String() string {
	if r < 0 || r >= numReasons {
		return "unknown"
	}
	return reasonNames[r]
}

// Reasons lists every reason, for registering one series each.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Rejects counts requests refused before the handler, by reason; one value
// may be shared by every listener of a proxy. The zero value is ready.
type Rejects struct {
	n      [numReasons]atomic.Int64
	logged [numReasons]atomic.Bool
}

// Count is how many requests were refused for r.
func (s *Rejects) Count(r Reason) int64 { return s.n[r].Load() }

// Add counts a refusal the proxy made past the listener (a bare LF in the
// trailers of a streamed body), logged like the listener's own.
func (s *Rejects) Add(r Reason, listener string, log *zap.Logger, remote string) {
	s.add(r, listener, log, func() string { return remote })
}

// add counts one refusal and logs the first of each reason: a peer
// sending garbage must not turn into a log line per request.
func (s *Rejects) add(r Reason, listener string, log *zap.Logger, remote func() string) {
	s.n[r].Add(1)
	if !s.logged[r].Load() && s.logged[r].CompareAndSwap(false, true) {
		log.Warn("refused a malformed request (logged once per reason; counted in weft_downstream_rejected_total)",
			zap.String("listener", listener), zap.Stringer("reason", r), zap.String("remote", remote()))
	}
}

// headerCountGuard holds an HTTP/2 request to max_headers_count, as guard
// holds an HTTP/1.1 one (x/net/http2 bounds only the header list's bytes).
func headerCountGuard(next http.Handler, name string, log *zap.Logger, rej *Rejects, limits func() config.Limits, bound config.Limits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := bound
		if limits != nil {
			l = limits()
		}
		n, max := 0, orInt(l.MaxHeadersCount, DefaultMaxHeadersCount)
		for _, vs := range r.Header {
			n += len(vs)
		}
		if r.Host != "" {
			n++ // :authority, which net/http keeps apart as Host
		}
		if n > max {
			rej.add(RejectHeaderCount, name, log, func() string { return r.RemoteAddr })
			http.Error(w, rejectMessages[RejectHeaderCount], http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// DefaultMaxHeadersCount is max_headers_count when it is zero (Envoy's
// default).
const DefaultMaxHeadersCount = 100

// checkHead inspects a parsed request head. It returns ok, or the status
// to answer and the reason. It reads the header block as it came on the
// wire (fasthttp keeps it), so what fasthttp normalised is still seen as
// sent; requests pay one pass over their header bytes and no allocation.
func checkHead(h *fasthttp.RequestHeader, maxHeaders int) (status int, why Reason, ok bool) {
	if p := h.Protocol(); !bytes.Equal(p, http11) && !bytes.Equal(p, http10) {
		return fasthttp.StatusHTTPVersionNotSupported, RejectVersion, false
	}
	// RFC 9110 §4.2.4: userinfo in an http(s) URI is an error; fasthttp
	// would turn it into an Authorization header the client never sent.
	if hasUserinfo(h.RequestURI()) {
		return fasthttp.StatusBadRequest, RejectTarget, false
	}
	raw := h.RawHeaders()
	n := 0
	te, cl := false, false
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break // fasthttp keeps whole lines only
		}
		line := raw[:i]
		raw = raw[i+1:]
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return fasthttp.StatusBadRequest, RejectBareLF, false
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			break // the blank line ending the block
		}
		if line[0] == ' ' || line[0] == '\t' {
			return fasthttp.StatusBadRequest, RejectObsFold, false
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return fasthttp.StatusBadRequest, RejectHeaderName, false
		}
		if n++; n > maxHeaders {
			return fasthttp.StatusRequestHeaderFieldsTooLarge, RejectHeaderCount, false
		}
		if colon == len(transferEncoding) && bytes.EqualFold(line[:colon], transferEncoding) {
			te = true
		}
		if colon == len(contentLength) && bytes.EqualFold(line[:colon], contentLength) {
			cl = true
		}
	}
	// RFC 9112 §6.1: both framings is the classic smuggling shape (Envoy
	// refuses it too). The raw lines decide: with a chunked body streaming
	// (StreamRequestBody), fasthttp hides Content-Length.
	if te && (cl || len(h.Peek(fasthttp.HeaderContentLength)) > 0) {
		return fasthttp.StatusBadRequest, RejectFraming, false
	}
	return 0, 0, true
}

// hasUserinfo reports whether an absolute-form target's authority holds
// an "@" (origin-form and authority-form targets have none to hold).
func hasUserinfo(target []byte) bool {
	if len(target) == 0 || target[0] == '/' {
		return false
	}
	i := bytes.Index(target, schemeSep)
	if i < 0 {
		return false
	}
	auth := target[i+len(schemeSep):]
	if j := bytes.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	return bytes.IndexByte(auth, '@') >= 0
}

var (
	schemeSep        = []byte("://")
	http11           = []byte("HTTP/1.1")
	http10           = []byte("HTTP/1.0")
	transferEncoding = []byte("transfer-encoding")
	contentLength    = []byte("content-length")
)

// isToken reports whether b is an RFC 9110 §5.6.2 token.
func isToken(b []byte) bool { return httpheader.ValidName(b) }
