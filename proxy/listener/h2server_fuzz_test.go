package listener

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/proxy/config"
)

// FuzzH2ServerFrames feeds weft's HTTP/2 server (h2server.go) a client
// preface, SETTINGS, and then arbitrary bytes as frames, over an in-memory
// connection: whatever they are, the server must not panic, must end the
// connection once the client hangs up, and must leave no handler running.
func FuzzH2ServerFrames(f *testing.F) {
	for _, seed := range h2FuzzSeeds() {
		f.Add(seed)
	}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("content-type", "application/grpc")
		_, _ = w.Write(b)
		w.(http.Flusher).Flush()
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	})
	codec := newH2Codec(&H2Options{Handler: echo, Settings: config.HTTP2{MaxConcurrentStreams: 8,
		InitialStreamWindowSize: 65535, InitialConnectionWindowSize: 1 << 20, MaxHeaderListSize: 8192}},
		config.Limits{WriteTimeout: config.Duration(2 * time.Second), IdleTimeout: config.Duration(5 * time.Second)}, zap.NewNop())
	f.Cleanup(func() { codec.h2workers.stop() })
	f.Fuzz(func(t *testing.T, frames []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			codec.serve(server, nil, nil, nil)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }() // the server's writes never block
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = client.Write([]byte(http2.ClientPreface))
		_, _ = client.Write([]byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0})
		_, _ = client.Write(frames)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("the server kept a connection its client closed")
		}
	})
}

// h2FuzzSeeds are frame sequences a client sends: requests with and
// without bodies, trailers, resets, window updates, pings, settings, and
// some malformed ones.
func h2FuzzSeeds() [][]byte {
	var out [][]byte
	build := func(write func(fr *http2.Framer, enc func(fields ...string) []byte)) {
		var buf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		fr.AllowIllegalWrites = true
		var hb bytes.Buffer
		he := hpack.NewEncoder(&hb)
		enc := func(fields ...string) []byte {
			hb.Reset()
			for i := 0; i+1 < len(fields); i += 2 {
				_ = he.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
			}
			return append([]byte(nil), hb.Bytes()...)
		}
		write(fr, enc)
		out = append(out, buf.Bytes())
	}
	req := []string{":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/svc/M", "content-type", "application/grpc", "te", "trailers"}
	build(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req...), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte{0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("x-t", "v"), EndStream: true, EndHeaders: true})
	})
	build(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":method", "GET", ":scheme", "http", ":path", "/"), EndStream: true, EndHeaders: true})
		_ = fr.WriteWindowUpdate(0, 1000)
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(req...), EndHeaders: true})
		_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
		_ = fr.WriteData(3, true, []byte("late"))
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	build(func(fr *http2.Framer, enc func(...string) []byte) {
		blk := enc(req...)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:3]})
		_ = fr.WriteContinuation(1, false, nil)
		_ = fr.WriteContinuation(1, true, blk[3:])
		_ = fr.WritePriority(1, http2.PriorityParam{StreamDep: 1})
		_ = fr.WriteData(1, true, make([]byte, 70000))
	})
	build(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: enc(req...), EndHeaders: true})
		_ = fr.WriteData(0, false, []byte("x"))
		_ = fr.WriteWindowUpdate(1, 0)
	})
	return out
}
