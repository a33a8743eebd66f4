package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// ExporterOptions configure an Exporter.
type ExporterOptions struct {
	// Endpoint is the OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces.
	Endpoint string
	// BatchSize is the most spans one export request carries (default 512).
	BatchSize int
	// QueueSize bounds the spans waiting for export (default 4096); a span
	// ended while the queue is full is dropped and counted.
	QueueSize int
	// FlushInterval is the longest a span waits for its batch to fill
	// (default 1s).
	FlushInterval time.Duration
	// Timeout bounds one export request (default 5s).
	Timeout time.Duration
	// ServiceName and Node describe the resource (service.name,
	// service.instance.id).
	ServiceName string
	Node        string
	// Stats receives the counts; it may be shared by the exporters of
	// successive configs (nil: the exporter keeps its own).
	Stats  *Stats
	Logger *zap.Logger
}

// Key identifies an exporter's settings: a config reload with an equal
// key keeps the running exporter (and its queue).
func (o ExporterOptions) Key() string {
	return fmt.Sprintf("%q|%d|%d|%s|%s|%q|%q", o.Endpoint, o.BatchSize, o.QueueSize, o.FlushInterval, o.Timeout, o.ServiceName, o.Node)
}

// Stats counts what happened to spans. All fields are safe for concurrent
// use.
type Stats struct {
	// Exported spans reached the collector (2xx); Failed ones were sent in
	// a request that failed; Dropped ones found the queue full or the
	// exporter closed; NotSampled hops were propagated, not recorded.
	Exported, Failed, Dropped, NotSampled atomic.Uint64
	// Batches counts export requests sent.
	Batches atomic.Uint64
}

// Exporter batches sampled spans and posts them as OTLP/HTTP protobuf
// (ExportTraceServiceRequest). Ending a span never blocks on it.
type Exporter struct {
	o      ExporterOptions
	log    *zap.Logger
	q      chan *Span
	stats  *Stats
	client *http.Client
	res    *resourcepb.Resource

	closed   atomic.Bool
	base     context.Context // ends in-flight exports when Close gives up
	abort    context.CancelFunc
	stop     chan context.Context
	done     chan struct{}
	stopOnce sync.Once
}

// Exporter defaults.
const (
	DefaultBatchSize     = 512
	DefaultQueueSize     = 4096
	DefaultFlushInterval = time.Second
	DefaultTimeout       = 5 * time.Second
)

// NewExporter starts an exporter; Close flushes and stops it.
func NewExporter(o ExporterOptions) *Exporter {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	if o.ServiceName == "" {
		o.ServiceName = "weft"
	}
	e := &Exporter{
		o: o, log: o.Logger, q: make(chan *Span, o.QueueSize), stats: o.Stats,
		client: &http.Client{Transport: &http.Transport{MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}},
		stop:   make(chan context.Context, 1), done: make(chan struct{}),
	}
	e.res = &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
		strAttr("service.name", o.ServiceName),
		strAttr("service.instance.id", o.Node),
		strAttr("telemetry.sdk.name", "weft"),
	}}
	e.base, e.abort = context.WithCancel(context.Background())
	go e.run()
	return e
}

// Stats is the exporter's counters.
func (e *Exporter) Stats() *Stats { return e.stats }

// enqueue hands sp to the export goroutine, or drops it when the queue is
// full or the exporter closed.
func (e *Exporter) enqueue(sp *Span) {
	if e.closed.Load() {
		e.stats.Dropped.Add(1)
		releaseSpan(sp)
		return
	}
	select {
	case e.q <- sp:
	default:
		e.stats.Dropped.Add(1)
		releaseSpan(sp)
	}
}

func (e *Exporter) run() {
	defer close(e.done)
	defer e.client.CloseIdleConnections()
	tick := time.NewTicker(e.o.FlushInterval)
	defer tick.Stop()
	batch := make([]*Span, 0, e.o.BatchSize)
	flush := func(ctx context.Context) {
		if len(batch) > 0 {
			e.export(ctx, batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case sp := <-e.q:
			batch = append(batch, sp)
			if len(batch) == cap(batch) {
				ctx, cancel := context.WithTimeout(e.base, e.o.Timeout)
				flush(ctx)
				cancel()
			}
		case <-tick.C:
			ctx, cancel := context.WithTimeout(e.base, e.o.Timeout)
			flush(ctx)
			cancel()
		case ctx := <-e.stop:
			e.drain(ctx, batch)
			return
		}
	}
}

// drain exports what is queued, in batches, until ctx ends; what is left
// then is dropped and counted.
func (e *Exporter) drain(ctx context.Context, batch []*Span) {
	for {
	fill:
		for len(batch) < cap(batch) {
			select {
			case sp := <-e.q:
				batch = append(batch, sp)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		if ctx.Err() != nil {
			for {
				for _, sp := range batch {
					releaseSpan(sp)
				}
				e.stats.Dropped.Add(uint64(len(batch)))
				batch = batch[:0]
				select {
				case sp := <-e.q:
					batch = append(batch, sp)
				default:
					return
				}
			}
		}
		ectx, cancel := context.WithTimeout(ctx, e.o.Timeout)
		e.export(ectx, batch)
		cancel()
		batch = batch[:0]
	}
}

// Close stops accepting spans, exports what is queued until ctx ends
// (what is left then is dropped), and stops the export goroutine. It is
// safe to call more than once.
func (e *Exporter) Close(ctx context.Context) error {
	e.stopOnce.Do(func() {
		e.closed.Store(true)
		e.stop <- ctx
	})
	select {
	case <-e.done:
		e.abort()
		return nil
	case <-ctx.Done():
		e.abort() // cut an export in flight; the rest is dropped
		<-e.done
		return fmt.Errorf("tracing: flush on close: %w", ctx.Err())
	}
}

// export converts batch to one request, releases the spans, and posts it.
func (e *Exporter) export(ctx context.Context, batch []*Span) {
	n := uint64(len(batch))
	body, err := e.encode(batch)
	for _, sp := range batch {
		releaseSpan(sp)
	}
	if err == nil {
		err = e.post(ctx, body)
	}
	e.stats.Batches.Add(1)
	if err != nil {
		e.stats.Failed.Add(n)
		e.log.Debug("span export failed", zap.String("endpoint", e.o.Endpoint), zap.Uint64("spans", n), zap.Error(err))
		return
	}
	e.stats.Exported.Add(n)
}

func (e *Exporter) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.o.Endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("otlp endpoint %q: %w", e.o.Endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otlp endpoint %q: status %d", e.o.Endpoint, resp.StatusCode)
	}
	return nil
}

// encode builds the OTLP request. TracesData has the same field number and
// type (1: repeated ResourceSpans) as ExportTraceServiceRequest, so its
// encoding is a valid request body without importing the gRPC service
// package.
func (e *Exporter) encode(batch []*Span) ([]byte, error) {
	spans := make([]*tracepb.Span, len(batch))
	for i, sp := range batch {
		spans[i] = toProto(sp)
	}
	td := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: e.res,
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "github.com/weftmesh/weft/proxy/tracing"},
			Spans: spans,
		}},
	}}}
	b, err := proto.Marshal(td)
	if err != nil {
		return nil, errors.Join(errors.New("tracing: encoding spans"), err)
	}
	return b, nil
}

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// Span attribute names. HTTP ones follow the OpenTelemetry semantic
// conventions; the weft.* ones are the mesh's own.
const (
	AttrMethod       = "http.request.method"
	AttrPath         = "url.path"
	AttrHost         = "server.address"
	AttrStatus       = "http.response.status_code"
	AttrReqBytes     = "http.request.body.size"
	AttrRespBytes    = "http.response.body.size"
	AttrRoute        = "weft.route"
	AttrCluster      = "weft.cluster"
	AttrUpstream     = "weft.upstream.address"
	AttrRetries      = "weft.retries"
	AttrFlags        = "weft.response_flags"
	AttrListener     = "weft.listener"
	AttrDirection    = "weft.direction"
	AttrNode         = "weft.node"
	AttrPeer         = "weft.peer.principal"
	AttrRequestID    = "weft.request_id"
	attrsPerSpanHint = 16
)

func toProto(sp *Span) *tracepb.Span {
	out := &tracepb.Span{
		TraceId:           append([]byte(nil), sp.ctx.TraceID[:]...),
		SpanId:            append([]byte(nil), sp.ctx.SpanID[:]...),
		StartTimeUnixNano: uint64(sp.start.UnixNano()),
		EndTimeUnixNano:   uint64(sp.end.UnixNano()),
		Kind:              tracepb.Span_SPAN_KIND_CLIENT,
		Flags:             0x100, // the parent's remoteness is known (OTLP 1.1 span flags)
	}
	if sp.ctx.Sampled {
		out.Flags |= 1
	}
	direction := "outbound"
	if sp.inbound {
		out.Kind, direction = tracepb.Span_SPAN_KIND_SERVER, "inbound"
	}
	if sp.hasParent {
		out.ParentSpanId = append([]byte(nil), sp.parent[:]...)
		out.Flags |= 0x200 // the parent is remote
	}
	name := sp.route
	if name == "" {
		name = sp.listener
	}
	out.Name = string(sp.method) + " " + name
	a := make([]*commonpb.KeyValue, 0, attrsPerSpanHint+len(sp.attrs))
	a = append(a,
		strAttr(AttrMethod, string(sp.method)),
		strAttr(AttrPath, string(sp.path)),
		strAttr(AttrHost, string(sp.host)),
		intAttr(AttrStatus, int64(sp.status)),
		intAttr(AttrReqBytes, int64(sp.reqBytes)),
		intAttr(AttrRespBytes, int64(sp.respBytes)),
		strAttr(AttrListener, sp.listener),
		strAttr(AttrDirection, direction),
		intAttr(AttrRetries, int64(sp.retries)),
	)
	for _, kv := range [...][2]string{
		{AttrRoute, sp.route}, {AttrCluster, sp.cluster}, {AttrUpstream, sp.upstream},
		{AttrFlags, sp.flags}, {AttrNode, sp.t.node}, {AttrPeer, sp.peer}, {AttrRequestID, string(sp.requestID)},
	} {
		if kv[1] != "" {
			a = append(a, strAttr(kv[0], kv[1]))
		}
	}
	for _, at := range sp.attrs {
		a = append(a, strAttr(at.key, string(at.val)))
	}
	out.Attributes = a
	if sp.status >= 500 || sp.status == 0 {
		out.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "status " + strconv.Itoa(sp.status) + flagsSuffix(sp.flags)}
	}
	return out
}

func flagsSuffix(f string) string {
	if f == "" {
		return ""
	}
	return " (" + f + ")"
}
