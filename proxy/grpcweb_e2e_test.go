package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

// gRPC-Web through the sidecar to grpc-go's interop TestService. No
// gRPC-Web client library for Go is available here, so the calls are
// encoded by hand as PROTOCOL-WEB.md lays them out (frame = flag byte,
// 4-byte big-endian length, message; trailers = flag 0x80 and
// "name: value\r\n" lines), and the answers are parsed strictly: every
// byte belongs to a frame, the trailer frame comes last and only once.

const grpcWebConfig = `
listeners:
  - name: web
    address: 127.0.0.1:0
    grpc_web:
      cors:
        allow_origins: ["https://app.example"]
        max_age: 10m
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {grpc: {service: grpc.testing.TestService}}
            route: {cluster: grpc, timeout: 5s}
          - match: {prefix: /grpc.testing.UnimplementedService/}
            direct_response: {status: 404}
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{address: "{{grpc}}"}]
`

// webFrame frames one message as gRPC (and gRPC-Web) does.
func webFrame(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	f := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(f[1:], uint32(len(b)))
	return append(f, b...)
}

// webAnswer is a parsed gRPC-Web response body.
type webAnswer struct {
	messages [][]byte
	trailers map[string]string
	raw      []byte // the trailer frame, whole
}

// parseWebBody splits a gRPC-Web body into its frames, failing on
// anything the protocol does not allow.
func parseWebBody(t *testing.T, body []byte) webAnswer {
	t.Helper()
	var a webAnswer
	for len(body) > 0 {
		if a.trailers != nil {
			t.Fatalf("bytes after the trailer frame: %q", body)
		}
		if len(body) < 5 {
			t.Fatalf("truncated frame header: %q", body)
		}
		flag, n := body[0], int(binary.BigEndian.Uint32(body[1:5]))
		if len(body) < 5+n {
			t.Fatalf("frame of %d bytes has only %d", n, len(body)-5)
		}
		payload := body[5 : 5+n]
		switch flag {
		case 0x00:
			a.messages = append(a.messages, payload)
		case 0x80:
			a.raw = body[:5+n]
			a.trailers = map[string]string{}
			block := string(payload)
			if !strings.HasSuffix(block, "\r\n") {
				t.Fatalf("trailer block does not end in CRLF: %q", block)
			}
			for _, line := range strings.Split(strings.TrimSuffix(block, "\r\n"), "\r\n") {
				k, v, ok := strings.Cut(line, ": ")
				if !ok || k != strings.ToLower(k) {
					t.Fatalf("trailer line %q is not a lowercase 'name: value'", line)
				}
				a.trailers[k] = v
			}
		default:
			t.Fatalf("frame flag %#x", flag)
		}
		body = body[5+n:]
	}
	return a
}

type webCall struct {
	path    string
	body    []byte
	text    bool
	headers map[string]string
}

// do sends a gRPC-Web call (base64 when text) and returns the answer with
// its body decoded.
func (c webCall) do(t *testing.T, client *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	body, ct := c.body, "application/grpc-web+proto"
	if c.text {
		body, ct = []byte(base64.StdEncoding.EncodeToString(body)), "application/grpc-web-text"
	}
	req, err := http.NewRequest(http.MethodPost, url+c.path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-Grpc-Web", "1")
	if c.text {
		req.Header.Set("Accept", "application/grpc-web-text")
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", c.path, err)
	}
	if c.text {
		// Padding may come wherever the server flushed (PROTOCOL-WEB.md),
		// so each 4-character quantum decodes on its own.
		if len(got)%4 != 0 {
			t.Fatalf("%s: text answer of %d characters", c.path, len(got))
		}
		var dec []byte
		for i := 0; i < len(got); i += 4 {
			q, err := base64.StdEncoding.DecodeString(string(got[i : i+4]))
			if err != nil {
				t.Fatalf("%s: text answer at %d: %v", c.path, i, err)
			}
			dec = append(dec, q...)
		}
		got = dec
	}
	return resp, got
}

func TestGRPCWebThroughSidecar(t *testing.T) {
	grpcAddr, _ := startGRPCServer(t)
	_, url := startProxy(t, grpcWebConfig, map[string]string{"grpc": grpcAddr})
	clients := map[string]*http.Client{
		"http1": {Timeout: 10 * time.Second, Transport: &http.Transport{}},
		"h2c":   h2cClient(),
	}
	for name, client := range clients {
		for _, text := range []bool{false, true} {
			mode := name + "/binary"
			if text {
				mode = name + "/text"
			}
			t.Run(mode+"/unary with metadata", func(t *testing.T) {
				trailing := base64.StdEncoding.EncodeToString([]byte{0xab, 0xcd, 0xef})
				call := webCall{path: "/grpc.testing.TestService/UnaryCall", text: text,
					body: webFrame(t, &testpb.SimpleRequest{ResponseSize: 10, Payload: &testpb.Payload{Body: []byte("hello")}}),
					headers: map[string]string{"x-grpc-test-echo-initial": "hi there", "x-grpc-test-echo-trailing-bin": trailing,
						"Origin": "https://app.example"}}
				resp, body := call.do(t, client, url)
				wantCT := "application/grpc-web+proto"
				if text {
					wantCT = "application/grpc-web-text" // as sent: no +proto
				}
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != wantCT {
					t.Fatalf("status %d content-type %q, want 200 %q", resp.StatusCode, resp.Header.Get("Content-Type"), wantCT)
				}
				if got := resp.Header.Get("x-grpc-test-echo-initial"); got != "hi there" {
					t.Errorf("initial metadata = %q", got)
				}
				if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
					t.Errorf("access-control-allow-origin = %q", got)
				}
				if got := resp.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(got, "grpc-status") {
					t.Errorf("access-control-expose-headers = %q", got)
				}
				if len(resp.Trailer) != 0 {
					t.Errorf("HTTP trailers sent: %v (gRPC-Web carries them in the body)", resp.Trailer)
				}
				a := parseWebBody(t, body)
				if len(a.messages) != 1 {
					t.Fatalf("%d messages, want 1", len(a.messages))
				}
				var m testpb.SimpleResponse
				if err := proto.Unmarshal(a.messages[0], &m); err != nil || len(m.GetPayload().GetBody()) != 10 {
					t.Fatalf("answer %v (%v), want a 10-byte payload", &m, err)
				}
				if a.trailers["grpc-status"] != "0" || a.trailers["x-grpc-test-echo-trailing-bin"] != trailing {
					t.Fatalf("trailers %v", a.trailers)
				}
				// The frame, byte for byte, as the trailers it carries encode.
				want := []byte{0x80, 0, 0, 0, 0}
				block := ""
				for _, k := range sortedKeys(a.trailers) {
					block += k + ": " + a.trailers[k] + "\r\n"
				}
				binary.BigEndian.PutUint32(want[1:], uint32(len(block)))
				if want = append(want, block...); !bytes.Equal(a.raw, want) {
					t.Fatalf("trailer frame\n %q, want\n %q", a.raw, want)
				}
			})
			t.Run(mode+"/error status", func(t *testing.T) {
				call := webCall{path: "/grpc.testing.TestService/UnaryCall", text: text,
					body: webFrame(t, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: 3, Message: "bad input: ü"}})}
				resp, body := call.do(t, client, url)
				// grpc-go answers an error with no message trailers-only:
				// the status is in the headers, the body empty.
				status, msg := resp.Header.Get("grpc-status"), resp.Header.Get("grpc-message")
				if status == "" {
					a := parseWebBody(t, body)
					status, msg = a.trailers["grpc-status"], a.trailers["grpc-message"]
				} else if len(body) != 0 {
					t.Fatalf("trailers-only answer has a body: %q", body)
				}
				if status != "3" || msg != "bad input: %C3%BC" {
					t.Fatalf("grpc-status %q grpc-message %q, want 3 %q", status, msg, "bad input: %C3%BC")
				}
			})
			t.Run(mode+"/server streaming", func(t *testing.T) {
				sizes := []int32{1, 300, 70000}
				req := &testpb.StreamingOutputCallRequest{}
				for _, s := range sizes {
					req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: s})
				}
				call := webCall{path: "/grpc.testing.TestService/StreamingOutputCall", text: text, body: webFrame(t, req)}
				_, body := call.do(t, client, url)
				a := parseWebBody(t, body)
				if len(a.messages) != len(sizes) || a.trailers["grpc-status"] != "0" {
					t.Fatalf("%d messages, trailers %v; want %d and status 0", len(a.messages), a.trailers, len(sizes))
				}
				for i, raw := range a.messages {
					var m testpb.StreamingOutputCallResponse
					if err := proto.Unmarshal(raw, &m); err != nil || len(m.GetPayload().GetBody()) != int(sizes[i]) {
						t.Fatalf("message %d: %d bytes (%v), want %d", i, len(m.GetPayload().GetBody()), err, sizes[i])
					}
				}
			})
		}
		t.Run(name+"/local reply is a gRPC status", func(t *testing.T) {
			call := webCall{path: "/grpc.testing.UnimplementedService/UnimplementedCall", body: webFrame(t, &testpb.Empty{})}
			resp, body := call.do(t, client, url)
			if resp.StatusCode != 200 || resp.Header.Get("grpc-status") != "12" || len(body) != 0 ||
				resp.Header.Get("Content-Type") != "application/grpc-web+proto" {
				t.Fatalf("status %d grpc-status %q content-type %q body %q; want a trailers-only UNIMPLEMENTED",
					resp.StatusCode, resp.Header.Get("grpc-status"), resp.Header.Get("Content-Type"), body)
			}
		})
		t.Run(name+"/CORS preflight", func(t *testing.T) {
			for _, tc := range []struct {
				origin string
				status int
			}{{"https://app.example", http.StatusNoContent}, {"https://evil.example", http.StatusForbidden}} {
				req, _ := http.NewRequest(http.MethodOptions, url+"/grpc.testing.TestService/UnaryCall", nil)
				req.Header.Set("Origin", tc.origin)
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "content-type,x-grpc-web,x-user-agent")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Fatalf("%s: preflight status %d, want %d", tc.origin, resp.StatusCode, tc.status)
				}
				if tc.status != http.StatusNoContent {
					if h := resp.Header.Get("Access-Control-Allow-Origin"); h != "" {
						t.Fatalf("disallowed origin got access-control-allow-origin %q", h)
					}
					continue
				}
				for k, want := range map[string]string{
					"Access-Control-Allow-Origin":  tc.origin,
					"Access-Control-Allow-Methods": "POST, OPTIONS",
					"Access-Control-Allow-Headers": "content-type,x-grpc-web,x-user-agent",
					"Access-Control-Max-Age":       "600",
				} {
					if got := resp.Header.Get(k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
			}
		})
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// A text call's body may arrive in chunks, each padded where the browser
// flushed: every 4-character quantum decodes on its own.
func TestGRPCWebTextBodyDecodesPaddedChunks(t *testing.T) {
	msg := []byte("a gRPC-Web text body, sent in pieces")
	var enc string
	for _, part := range [][]byte{msg[:4], msg[4:5], msg[5:]} {
		enc += base64.StdEncoding.EncodeToString(part) + "\r\n"
	}
	got, err := io.ReadAll(&base64Body{src: io.NopCloser(strings.NewReader(enc))})
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("decoded %q (%v), want %q", got, err, msg)
	}
	if _, err := io.ReadAll(&base64Body{src: io.NopCloser(strings.NewReader("abc"))}); err == nil {
		t.Fatal("a body of 3 base64 characters decoded")
	}
	if _, err := io.ReadAll(&base64Body{src: io.NopCloser(strings.NewReader("ab!d"))}); err == nil {
		t.Fatal("a body with '!' decoded")
	}
}

// The same calls made by a gRPC-Web client nobody here wrote: connect-go's
// (connectrpc.com/connect, WithGRPCWeb: application/grpc-web+proto, over
// HTTP/1.1 and h2c), against grpc-go's interop server through the sidecar.
func TestGRPCWebConnectClient(t *testing.T) {
	grpcAddr, _ := startGRPCServer(t)
	_, url := startProxy(t, grpcWebConfig, map[string]string{"grpc": grpcAddr})
	for name, hc := range map[string]*http.Client{
		"http1": {Timeout: 10 * time.Second, Transport: &http.Transport{}},
		"h2c":   h2cClient(),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			unary := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](hc,
				url+"/grpc.testing.TestService/UnaryCall", connect.WithGRPCWeb())
			req := connect.NewRequest(&testpb.SimpleRequest{ResponseSize: 314, Payload: &testpb.Payload{Body: make([]byte, 271)}})
			req.Header().Set("x-grpc-test-echo-initial", "initial value")
			req.Header().Set("x-grpc-test-echo-trailing-bin", connect.EncodeBinaryHeader([]byte{0, 1, 0xfe, 0xff}))
			resp, err := unary.CallUnary(ctx, req)
			if err != nil {
				t.Fatalf("UnaryCall: %v", err)
			}
			if n := len(resp.Msg.GetPayload().GetBody()); n != 314 {
				t.Fatalf("payload of %d bytes, want 314", n)
			}
			if got := resp.Header().Get("x-grpc-test-echo-initial"); got != "initial value" {
				t.Errorf("initial metadata %q", got)
			}
			bin, err := connect.DecodeBinaryHeader(resp.Trailer().Get("x-grpc-test-echo-trailing-bin"))
			if err != nil || !bytes.Equal(bin, []byte{0, 1, 0xfe, 0xff}) {
				t.Errorf("trailing -bin metadata %x (%v)", bin, err)
			}

			_, err = unary.CallUnary(ctx, connect.NewRequest(&testpb.SimpleRequest{
				ResponseStatus: &testpb.EchoStatus{Code: int32(connect.CodeResourceExhausted), Message: "quota: 100% used"}}))
			if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "quota: 100% used") {
				t.Fatalf("error call: %v, want resource_exhausted with its message", err)
			}

			stream := connect.NewClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse](hc,
				url+"/grpc.testing.TestService/StreamingOutputCall", connect.WithGRPCWeb())
			sizes := []int32{31415, 9, 2653, 58979}
			sreq := &testpb.StreamingOutputCallRequest{}
			for _, s := range sizes {
				sreq.ResponseParameters = append(sreq.ResponseParameters, &testpb.ResponseParameters{Size: s})
			}
			ss, err := stream.CallServerStream(ctx, connect.NewRequest(sreq))
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for ss.Receive() {
				got = append(got, len(ss.Msg().GetPayload().GetBody()))
			}
			if err := ss.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			_ = ss.Close()
			if fmt.Sprint(got) != fmt.Sprint(sizes) {
				t.Fatalf("stream messages %v, want %v", got, sizes)
			}

			none := connect.NewClient[testpb.Empty, testpb.Empty](hc,
				url+"/grpc.testing.UnimplementedService/UnimplementedCall", connect.WithGRPCWeb())
			if _, err := none.CallUnary(ctx, connect.NewRequest(&testpb.Empty{})); connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Fatalf("weft's own answer: %v, want unimplemented", err)
			}
		})
	}
}
