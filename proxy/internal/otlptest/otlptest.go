package otlptest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Span is one received span with the service.name of its resource.
type Span struct {
	Service string
	*tracepb.Span
}

// Attr returns a span attribute's value as a string ("" when absent).
func (s Span) Attr(key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if sv, ok := kv.Value.GetValue().(*commonpb.AnyValue_StringValue); ok {
				return sv.StringValue
			}
			return fmt.Sprint(kv.Value.GetIntValue())
		}
	}
	return ""
}

// Receiver is a running OTLP/HTTP receiver.
type Receiver struct {
	URL string // the traces endpoint, http://127.0.0.1:PORT/v1/traces

	srv   *http.Server
	mu    sync.Mutex
	spans []Span
	posts int
	errs  []string
	hang  chan struct{} // when set, requests block until Close
}

// Start starts a receiver that answers 200 to valid requests; hang makes it
// accept requests and never answer (a collector that is stuck). It is
// closed when the test ends.
func Start(t testing.TB, hang bool) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{URL: "http://" + ln.Addr().String() + "/v1/traces"}
	if hang {
		r.hang = make(chan struct{})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.handle)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(r.Close)
	return r
}

// Close stops the receiver (releasing hung requests).
func (r *Receiver) Close() {
	if r.hang != nil {
		select {
		case <-r.hang:
		default:
			close(r.hang)
		}
	}
	_ = r.srv.Close()
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	if r.hang != nil {
		<-r.hang
		return
	}
	body, err := io.ReadAll(req.Body)
	if err == nil && req.Header.Get("Content-Type") != "application/x-protobuf" {
		err = fmt.Errorf("content-type %q", req.Header.Get("Content-Type"))
	}
	if err == nil {
		err = checkExportRequest(body)
	}
	var td tracepb.TracesData
	if err == nil {
		err = proto.Unmarshal(body, &td)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.posts++
	if err != nil {
		r.errs = append(r.errs, err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, rs := range td.ResourceSpans {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				svc = kv.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				r.spans = append(r.spans, Span{Service: svc, Span: sp})
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
}

// checkExportRequest checks the body against ExportTraceServiceRequest's
// schema (opentelemetry/proto/collector/trace/v1): only field 1,
// resource_spans, length-delimited. TracesData shares that field, which is
// why the spans are then decoded with it.
func checkExportRequest(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num != 1 || typ != protowire.BytesType {
			return fmt.Errorf("field %d (wire type %d) is not ExportTraceServiceRequest.resource_spans", num, typ)
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

// Spans is every span received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Posts is the number of export requests received; Errors the bodies
// that did not decode.
func (r *Receiver) Posts() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts, append([]string(nil), r.errs...)
}
