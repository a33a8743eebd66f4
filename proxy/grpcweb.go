package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/proxy/config"
)

// gRPC-Web (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md),
// turned on per listener by grpc_web. A browser's call (content-type
// application/grpc-web[+proto], or application/grpc-web-text[+proto] with
// a base64 body) becomes a gRPC call: content-type application/grpc[+proto],
// te: trailers, the body decoded, and then takes the HTTP/2 stream path
// (serveH2) whichever protocol the browser spoke, so routing, filters,
// authz, retries, deadlines and weft's own trailers-only answers are those
// of any gRPC call. On the way back the content-type turns back into the
// request's gRPC-Web type, the gRPC trailers become the body's last frame
// (flag byte 0x80, then "name: value\r\n" lines), and a text call's answer
// is base64. A trailers-only answer stays one: its status is in the
// headers, which the protocol allows. With cors set, preflights are
// answered here and answers carry the CORS headers.

// grpcWeb is a listener's compiled grpc_web option.
type grpcWeb struct {
	cors *corsPolicy // nil: no CORS
}

type corsPolicy struct {
	anyOrigin    bool
	origins      map[string]bool
	allowHeaders string // "": echo what the preflight asks for
	expose       string
	maxAge       string // "": not sent
	credentials  bool
}

// compileGRPCWeb compiles a validated grpc_web block (nil: off).
func compileGRPCWeb(g *config.GRPCWeb) *grpcWeb {
	if g == nil {
		return nil
	}
	w := &grpcWeb{}
	if c := g.CORS; c != nil {
		p := &corsPolicy{origins: map[string]bool{}, credentials: c.AllowCredentials}
		for _, o := range c.AllowOrigins {
			if o == "*" {
				p.anyOrigin = true
			}
			p.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
		}
		p.allowHeaders = strings.ToLower(strings.Join(c.AllowHeaders, ","))
		p.expose = strings.ToLower(strings.Join(append([]string{"grpc-status", "grpc-message"}, c.ExposeHeaders...), ","))
		if c.MaxAge > 0 {
			p.maxAge = strconv.Itoa(int(c.MaxAge.D().Seconds()))
		}
		w.cors = p
	}
	return w
}

// allowed reports whether origin may call.
func (p *corsPolicy) allowed(origin string) bool {
	return origin != "" && (p.anyOrigin || p.origins[strings.ToLower(origin)])
}

// mark adds the CORS headers of an answer to an allowed origin.
func (p *corsPolicy) mark(h http.Header, origin string) {
	if p == nil || !p.allowed(origin) {
		return
	}
	if p.anyOrigin && !p.credentials {
		h.Set("access-control-allow-origin", "*")
	} else {
		h.Set("access-control-allow-origin", origin)
		h.Add("vary", "origin")
	}
	if p.credentials {
		h.Set("access-control-allow-credentials", "true")
	}
	h.Set("access-control-expose-headers", p.expose)
}

// preflight fills the answer to a CORS preflight and returns its status:
// 204 with the policy for an allowed origin, 403 otherwise.
func (p *corsPolicy) preflight(h http.Header, origin, reqHeaders string) int {
	if !p.allowed(origin) {
		return http.StatusForbidden
	}
	p.mark(h, origin)
	h.Del("access-control-expose-headers") // for answers, not preflights
	h.Set("access-control-allow-methods", "POST, OPTIONS")
	if allow := p.allowHeaders; allow != "" {
		h.Set("access-control-allow-headers", allow)
	} else if reqHeaders != "" {
		h.Set("access-control-allow-headers", reqHeaders)
		h.Add("vary", "access-control-request-headers")
	}
	if p.maxAge != "" {
		h.Set("access-control-max-age", p.maxAge)
	}
	return http.StatusNoContent
}

// isPreflight reports whether a request is a CORS preflight.
func isPreflight(method, origin, reqMethod string) bool {
	return method == http.MethodOptions && origin != "" && reqMethod != ""
}

// grpcWebCall is what a request's content-type says of a gRPC-Web call.
type grpcWebCall struct {
	text    bool   // the request body is base64 (application/grpc-web-text)
	textOut bool   // the answer goes back base64 (text request, or Accept asks)
	suffix  string // "+proto", "+json", or ""
}

// parseGRPCWeb reads a request's content-type (and Accept); ok is false
// when it is not gRPC-Web.
func parseGRPCWeb(contentType, accept string) (c grpcWebCall, ok bool) {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch {
	case strings.HasPrefix(ct, "application/grpc-web-text"):
		c.text, c.suffix = true, ct[len("application/grpc-web-text"):]
	case strings.HasPrefix(ct, "application/grpc-web"):
		c.suffix = ct[len("application/grpc-web"):]
	default:
		return c, false
	}
	if c.suffix != "" && (c.suffix[0] != '+' || len(c.suffix) == 1) {
		return c, false
	}
	c.textOut = c.text || strings.Contains(strings.ToLower(accept), "application/grpc-web-text")
	return c, true
}

// toGRPC turns a gRPC-Web request into the gRPC request that goes
// upstream: its headers are edited in place and its body decoded.
func (c grpcWebCall) toGRPC(r *http.Request) {
	r.Header.Set("Content-Type", "application/grpc"+c.suffix)
	r.Header.Set("Te", "trailers")
	if c.text {
		r.Header.Del("Content-Length")
		r.ContentLength = -1
		r.Body = &base64Body{src: r.Body}
	}
}

// base64Body decodes a text call's body. Each 4-character quantum is
// decoded on its own, so chunks padded where the client flushed ("...=="
// followed by more) decode as the protocol requires; whitespace is skipped.
type base64Body struct {
	src  io.ReadCloser
	in   []byte // undecoded characters (fewer than 4 after a decode)
	out  []byte // decoded, not yet read
	eof  bool
	fail error
}

func (b *base64Body) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.fail != nil {
			return 0, b.fail
		}
		if b.eof {
			if len(b.in) > 0 {
				b.fail = errBase64Body
				continue
			}
			return 0, io.EOF
		}
		var buf [4096]byte
		n, err := b.src.Read(buf[:])
		for _, ch := range buf[:n] {
			if ch != '\r' && ch != '\n' && ch != ' ' && ch != '\t' {
				b.in = append(b.in, ch)
			}
		}
		if err == io.EOF {
			b.eof = true
		} else if err != nil {
			b.fail = err
		}
		q := len(b.in) / 4 * 4
		for i := 0; i < q; i += 4 {
			var dst [3]byte
			m, derr := base64.StdEncoding.Decode(dst[:], b.in[i:i+4])
			if derr != nil {
				b.fail = errBase64Body
				break
			}
			b.out = append(b.out, dst[:m]...)
		}
		b.in = append(b.in[:0], b.in[q:]...)
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *base64Body) Close() error { return b.src.Close() }

type grpcWebError string

func (e grpcWebError) Error() string { return string(e) }

const errBase64Body = grpcWebError("grpc-web-text request body is not base64")

// grpcWebWriter is the http.ResponseWriter serveH2 answers a gRPC-Web call
// through: headers go out translated, the body (base64 for a text call)
// as it comes, and the trailers serveH2 sets (http.TrailerPrefix) are kept
// for finish, which sends them as the body's trailer frame.
type grpcWebWriter struct {
	out    http.ResponseWriter
	rc     *http.ResponseController
	call   grpcWebCall
	cors   *corsPolicy
	origin string

	h            http.Header // what serveH2 sets
	wroteHeader  bool
	trailersOnly bool
	carry        []byte // text: bytes waiting for a whole 3-byte group
	enc          []byte
	err          error
}

func newGRPCWebWriter(out http.ResponseWriter, call grpcWebCall, cors *corsPolicy, origin string) *grpcWebWriter {
	return &grpcWebWriter{out: out, rc: http.NewResponseController(out), call: call, cors: cors, origin: origin, h: make(http.Header)}
}

func (w *grpcWebWriter) Header() http.Header { return w.h }

func (w *grpcWebWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	oh := w.out.Header()
	for k, vs := range w.h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		switch strings.ToLower(k) {
		case "content-type", "content-length", "trailer":
			continue
		}
		oh[k] = vs
	}
	ct := "application/grpc-web"
	if w.call.textOut {
		ct = "application/grpc-web-text"
	}
	if up := strings.ToLower(w.h.Get("Content-Type")); strings.HasPrefix(up, "application/grpc+") {
		ct += up[len("application/grpc"):]
	} else {
		ct += w.call.suffix
	}
	oh.Set("Content-Type", ct)
	w.trailersOnly = w.h.Get("Grpc-Status") != ""
	w.cors.mark(oh, w.origin)
	w.out.WriteHeader(code)
}

func (w *grpcWebWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.call.textOut {
		n, err := w.out.Write(p)
		w.err = err
		return n, err
	}
	w.carry = append(w.carry, p...)
	whole := len(w.carry) / 3 * 3
	if err := w.emit(w.carry[:whole]); err != nil {
		return 0, err
	}
	w.carry = append(w.carry[:0], w.carry[whole:]...)
	return len(p), nil
}

// emit writes b base64-encoded (padded when its length is not a multiple
// of 3, which only a flush or the end asks for).
func (w *grpcWebWriter) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	w.enc = slices.Grow(w.enc[:0], base64.StdEncoding.EncodedLen(len(b)))[:base64.StdEncoding.EncodedLen(len(b))]
	base64.StdEncoding.Encode(w.enc, b)
	_, w.err = w.out.Write(w.enc)
	return w.err
}

// FlushError sends what was written: a text call's odd bytes go padded
// (a streamed message is not held back for the next one).
func (w *grpcWebWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.call.textOut && len(w.carry) > 0 {
		if err := w.emit(w.carry); err != nil {
			return err
		}
		w.carry = w.carry[:0]
	}
	if w.err != nil {
		return w.err
	}
	return w.rc.Flush()
}

func (w *grpcWebWriter) Flush() { _ = w.FlushError() }

// finish ends the answer once serveH2 returned: the trailers serveH2 set
// become the trailer frame (none on a trailers-only answer, whose status
// went in the headers).
func (w *grpcWebWriter) finish() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	var frame []byte
	if !w.trailersOnly {
		frame = grpcWebTrailerFrame(w.h)
	}
	if w.call.textOut {
		w.carry = append(w.carry, frame...)
		err := w.emit(w.carry)
		w.carry = w.carry[:0]
		return err
	}
	if len(frame) == 0 || w.err != nil {
		return w.err
	}
	_, w.err = w.out.Write(frame)
	return w.err
}

// grpcWebTrailerFrame encodes the trailers in h (keys with
// http.TrailerPrefix) as gRPC-Web's trailer frame: 0x80, the length (4
// bytes, big-endian), then "name: value\r\n" per value, names lowercase,
// sorted so the frame is the same for the same trailers.
func grpcWebTrailerFrame(h http.Header) []byte {
	var keys []string
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var block bytes.Buffer
	for _, k := range keys {
		name := strings.ToLower(k[len(http.TrailerPrefix):])
		for _, v := range h[k] {
			block.WriteString(name)
			block.WriteString(": ")
			block.WriteString(v)
			block.WriteString("\r\n")
		}
	}
	frame := make([]byte, 5, 5+block.Len())
	frame[0] = 0x80
	binary.BigEndian.PutUint32(frame[1:], uint32(block.Len()))
	return append(frame, block.Bytes()...)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *grpcWebWriter) Unwrap() http.ResponseWriter { return w.out }
