//go:build !wasip1

package sdktest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/internal/abi"
)

// Status values the emulated host returns.
const (
	stOK            = 0
	stNotFound      = 1
	stBadArgument   = 2
	stParse         = 4
	stEmpty         = 7
	stCasMismatch   = 8
	stInternal      = 10
	stUnimplemented = 12
)

// rootID is the root context's id.
const rootID = 1

// Options configures an emulated VM.
type Options struct {
	// PluginConfig and VMConfig are what the plugin reads at configure time.
	PluginConfig, VMConfig []byte
	// Properties answer proxy_get_property for any context, by dotted path
	// ("node.id", "plugin_name"). Stream properties (request.*, response.*)
	// come from the stream.
	Properties map[string][]byte
	// Clusters answer HTTP call-outs by cluster name. A call to a cluster
	// not listed fails (the guest sees no answer).
	Clusters map[string]func(CallRequest) CallResponse
	// Now is the host clock (default time.Now).
	Now func() time.Time
	// LogLevel is the host's log level (default trace: everything).
	LogLevel uint32
	// ForeignFunctions answer proxy_call_foreign_function by name. An
	// sdk.Status error is returned to the guest as that status, any other
	// error as InternalFailure. A name not listed answers NotFound, as in
	// Weft and Envoy, so a nil map emulates a host without any (Weft's
	// real functions, e.g. weft.verify_signature, are not emulated: test
	// them with sdk/filtertest), except weft.get_properties.
	ForeignFunctions map[string]func(args []byte) ([]byte, error)
	// NoBatchProperties removes weft.get_properties, the one Weft foreign
	// function the emulated host has (for sdk.PropertyQuery), unless
	// ForeignFunctions names it.
	NoBatchProperties bool
}

// Host is an emulated VM running the registered plugin.
type Host struct {
	o         Options
	effective uint32
	nextID    uint32
	streams   map[uint32]*Stream
	conns     map[uint32]*Conn
	rootProps map[string][]byte

	logs       []Log
	tickPeriod time.Duration
	nextToken  uint32
	calls      []*Call
	inCall     *CallResponse

	shared  map[string]*shared
	queues  map[string]uint32
	qItems  map[uint32][][]byte
	metrics []*Metric
	foreign map[string]int // calls by name, offered or not
}

type shared struct {
	val []byte
	cas uint32
}

// Log is one message the filter logged.
type Log struct {
	Level   uint32
	Message string
}

// Metric is a metric the filter defined.
type Metric struct {
	Name string
	// Type is 0 counter, 1 gauge, 2 histogram.
	Type uint32
	// Value is a counter's or gauge's value.
	Value int64
	// Samples are a histogram's recorded values.
	Samples []uint64
}

// Call is an HTTP call-out the filter made.
type Call struct {
	Token   uint32
	Context uint32
	Cluster string
	CallRequest
	Timeout time.Duration
}

// CallRequest is what a filter sent in an HTTP call-out.
type CallRequest struct {
	Headers [][2]string // pseudo-headers included
	Body    []byte
}

// Header returns the first value of name.
func (r CallRequest) Header(name string) string { v, _ := get(r.Headers, name); return v }

// CallResponse answers a call-out. Failed true delivers "no answer".
type CallResponse struct {
	Status  int
	Headers [][2]string
	Body    []byte
	Failed  bool
}

// New starts an emulated VM: root context, vm_start, configure. It fails t
// when the plugin refuses its configuration, and stops the emulation when
// the test ends.
func New(t testing.TB, o Options) *Host {
	t.Helper()
	h, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Start is New returning the configure outcome as an error. Close the Host
// when done.
func Start(o Options) (*Host, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Host{
		o:         o,
		nextID:    rootID + 1,
		nextToken: 1,
		streams:   make(map[uint32]*Stream),
		shared:    make(map[string]*shared),
		queues:    make(map[string]uint32),
		qItems:    make(map[uint32][][]byte),
		foreign:   make(map[string]int),
	}
	if abi.Exports.Reset == nil {
		return nil, fmt.Errorf("sdktest: package sdk is not linked in (import it)")
	}
	abi.Exports.Reset()
	abi.SetHost(h)
	h.effective = rootID
	abi.Exports.OnContextCreate(rootID, 0)
	if !abi.Exports.OnVMStart(rootID, uint32(len(o.VMConfig))) {
		h.Close()
		return nil, fmt.Errorf("sdktest: proxy_on_vm_start returned false (logs: %v)", h.logs)
	}
	h.effective = rootID
	if !abi.Exports.OnConfigure(rootID, uint32(len(o.PluginConfig))) {
		h.Close()
		return nil, fmt.Errorf("sdktest: proxy_on_configure returned false (logs: %v)", h.logs)
	}
	return h, nil
}

// Close ends the emulation.
func (h *Host) Close() {
	abi.SetHost(nil)
}

// Plugin returns the value the registered constructor made (for tests that
// inspect or adjust the plugin's state).
func (h *Host) Plugin() any { return abi.Exports.Plugin(rootID) }

// Logs returns what the filter logged.
func (h *Host) Logs() []Log { return h.logs }

// LogContains reports whether a log message contains sub.
func (h *Host) LogContains(sub string) bool {
	for _, l := range h.logs {
		if strings.Contains(l.Message, sub) {
			return true
		}
	}
	return false
}

// Metric returns the metric the filter defined under name, or nil.
func (h *Host) Metric(name string) *Metric {
	for _, m := range h.metrics {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Metrics returns every metric the filter defined.
func (h *Host) Metrics() []*Metric { return h.metrics }

// TickPeriod is the period the plugin asked for (0: none).
func (h *Host) TickPeriod() time.Duration { return h.tickPeriod }

// Tick runs the plugin's OnTick once.
func (h *Host) Tick() {
	h.effective = rootID
	abi.Exports.OnTick(rootID)
}

// QueueReady runs the plugin's OnQueueReady for the queue named name.
func (h *Host) QueueReady(name string) {
	h.effective = rootID
	abi.Exports.OnQueueReady(rootID, h.queues[name])
}

// SharedData returns a shared value.
func (h *Host) SharedData(key string) ([]byte, bool) {
	s := h.shared[key]
	if s == nil {
		return nil, false
	}
	return s.val, true
}

// ForeignCalls returns how many times the filter called the foreign
// function name (whether the host offers it or not).
func (h *Host) ForeignCalls(name string) int { return h.foreign[name] }

// PendingCalls returns the call-outs not answered yet.
func (h *Host) PendingCalls() []*Call { return h.calls }

// DeliverCalls answers every pending call-out from Options.Clusters (made
// before or during delivery) and returns how many it delivered.
func (h *Host) DeliverCalls() int {
	n := 0
	for len(h.calls) > 0 {
		c := h.calls[0]
		h.calls = h.calls[1:]
		handler := h.o.Clusters[c.Cluster]
		resp := CallResponse{Failed: true}
		if handler != nil {
			resp = handler(c.CallRequest)
		}
		h.Respond(c, resp)
		n++
	}
	return n
}

// Respond delivers resp as the answer to call c (which must be pending or
// just taken from PendingCalls).
func (h *Host) Respond(c *Call, resp CallResponse) {
	for i, p := range h.calls {
		if p == c {
			h.calls = append(h.calls[:i], h.calls[i+1:]...)
			break
		}
	}
	if c.Context != rootID {
		if _, ok := h.streams[c.Context]; !ok {
			return // the stream is gone, like the real host
		}
	}
	var nh, nb uint32
	if !resp.Failed {
		if !has(resp.Headers, ":status") {
			resp.Headers = append([][2]string{{":status", strconv.Itoa(resp.Status)}}, resp.Headers...)
		}
		nh, nb = uint32(len(resp.Headers)), uint32(len(resp.Body))
	}
	h.inCall = &resp
	h.effective = c.Context
	abi.Exports.OnHTTPCallResponse(c.Context, c.Token, nh, nb, 0)
	h.inCall = nil
}

// cur returns the stream host calls act on, or nil for the root context.
func (h *Host) cur() *Stream { return h.streams[h.effective] }

// ---- abi.Host ----

// Log implements abi.Host.
func (h *Host) Log(level uint32, msg string) uint32 {
	h.logs = append(h.logs, Log{level, msg})
	return stOK
}

// GetLogLevel implements abi.Host.
func (h *Host) GetLogLevel() (uint32, uint32) { return h.o.LogLevel, stOK }

// CurrentTimeNanos implements abi.Host.
func (h *Host) CurrentTimeNanos() uint64 { return uint64(h.o.Now().UnixNano()) }

// SetTickPeriod implements abi.Host.
func (h *Host) SetTickPeriod(ms uint32) uint32 {
	h.tickPeriod = time.Duration(ms) * time.Millisecond
	return stOK
}

func propKey(path []byte) string { return strings.ReplaceAll(string(path), "\x00", ".") }

// GetProperty implements abi.Host.
func (h *Host) GetProperty(path []byte) ([]byte, uint32) {
	key := propKey(path)
	if s := h.cur(); s != nil {
		if v, ok := s.props[key]; ok {
			return clone(v), stOK
		}
		if v, ok := s.property(key); ok {
			return v, stOK
		}
	} else if v, ok := h.rootProps[key]; ok {
		return clone(v), stOK
	}
	if v, ok := h.o.Properties[key]; ok {
		return clone(v), stOK
	}
	return nil, stNotFound
}

// SetProperty implements abi.Host.
func (h *Host) SetProperty(path, val []byte) uint32 {
	key := propKey(path)
	if s := h.cur(); s != nil {
		s.props[key] = clone(val)
		return stOK
	}
	if h.rootProps == nil {
		h.rootProps = make(map[string][]byte)
	}
	h.rootProps[key] = clone(val)
	return stOK
}

// headerMap returns the map of type mt of the current context.
func (h *Host) headerMap(mt uint32) (*[][2]string, bool) {
	if mt == 6 || mt == 7 {
		if h.inCall == nil {
			return nil, false
		}
		if mt == 7 {
			var empty [][2]string
			return &empty, true
		}
		return &h.inCall.Headers, true
	}
	s := h.cur()
	if s == nil {
		return nil, false
	}
	switch mt {
	case 0:
		return &s.Request.Headers, true
	case 1:
		return &s.Request.Trailers, true
	case 2:
		return &s.Response.Headers, true
	case 3:
		return &s.Response.Trailers, true
	}
	return nil, false
}

// GetHeaderMapPairs implements abi.Host.
func (h *Host) GetHeaderMapPairs(mt uint32) ([]byte, uint32) {
	m, ok := h.headerMap(mt)
	if !ok {
		return nil, stNotFound
	}
	return abi.AppendPairs(nil, *m), stOK
}

// SetHeaderMapPairs implements abi.Host.
func (h *Host) SetHeaderMapPairs(mt uint32, data []byte) uint32 {
	m, ok := h.headerMap(mt)
	if !ok || mt >= 6 {
		return stNotFound
	}
	pairs, ok := abi.ParsePairs(nil, clone(data))
	if !ok {
		return stParse
	}
	*m = pairs
	return stOK
}

// GetHeaderMapValue implements abi.Host.
func (h *Host) GetHeaderMapValue(mt uint32, key string) ([]byte, uint32) {
	m, ok := h.headerMap(mt)
	if !ok {
		return nil, stNotFound
	}
	v, ok := get(*m, key)
	if !ok {
		return nil, stNotFound
	}
	return []byte(v), stOK
}

// AddHeaderMapValue implements abi.Host.
func (h *Host) AddHeaderMapValue(mt uint32, key, value string) uint32 {
	m, ok := h.headerMap(mt)
	if !ok || mt >= 6 {
		return stNotFound
	}
	*m = append(*m, [2]string{strings.ToLower(key), value})
	return stOK
}

// ReplaceHeaderMapValue implements abi.Host.
func (h *Host) ReplaceHeaderMapValue(mt uint32, key, value string) uint32 {
	m, ok := h.headerMap(mt)
	if !ok || mt >= 6 {
		return stNotFound
	}
	*m = remove(*m, key)
	*m = append(*m, [2]string{strings.ToLower(key), value})
	return stOK
}

// RemoveHeaderMapValue implements abi.Host.
func (h *Host) RemoveHeaderMapValue(mt uint32, key string) uint32 {
	m, ok := h.headerMap(mt)
	if !ok || mt >= 6 {
		return stNotFound
	}
	*m = remove(*m, key)
	return stOK
}

// GetHeaderMapSize implements abi.Host.
func (h *Host) GetHeaderMapSize(mt uint32) (uint32, uint32) {
	m, ok := h.headerMap(mt)
	if !ok {
		return 0, stNotFound
	}
	return uint32(len(*m)), stOK
}

func (h *Host) buffer(bt uint32) (*[]byte, bool) {
	switch bt {
	case 6:
		b := h.o.VMConfig
		return &b, true
	case 7:
		b := h.o.PluginConfig
		return &b, true
	case 4:
		if h.inCall == nil {
			return nil, false
		}
		return &h.inCall.Body, true
	}
	if c := h.conns[h.effective]; c != nil && (bt == 2 || bt == 3) {
		return &c.data[bt-2], true
	}
	s := h.cur()
	if s == nil {
		return nil, false
	}
	switch bt {
	case 0:
		return &s.Request.Body, true
	case 1:
		return &s.Response.Body, true
	}
	return nil, false
}

// GetBufferBytes implements abi.Host.
func (h *Host) GetBufferBytes(bt, start, maxSize uint32) ([]byte, uint32) {
	b, ok := h.buffer(bt)
	if !ok {
		return nil, stNotFound
	}
	if uint64(start) > uint64(len(*b)) {
		return nil, stBadArgument
	}
	end := min(uint64(start)+uint64(maxSize), uint64(len(*b)))
	if end == uint64(start) {
		return nil, stNotFound
	}
	return clone((*b)[start:end]), stOK
}

// SetBufferBytes implements abi.Host.
func (h *Host) SetBufferBytes(bt, start, size uint32, data []byte) uint32 {
	if bt > 3 {
		return stBadArgument
	}
	b, ok := h.buffer(bt)
	if !ok {
		return stNotFound
	}
	cur := *b
	s := min(uint64(start), uint64(len(cur)))
	e := min(s+uint64(size), uint64(len(cur)))
	out := append(append(append([]byte(nil), cur[:s]...), data...), cur[e:]...)
	*b = out
	return stOK
}

// ContinueStream implements abi.Host.
func (h *Host) ContinueStream(streamType uint32) uint32 {
	s := h.cur()
	if s == nil {
		return stNotFound
	}
	s.Resumes++
	return stOK
}

// CloseStream implements abi.Host.
func (h *Host) CloseStream(streamType uint32) uint32 {
	if c := h.conns[h.effective]; c != nil {
		if streamType != 2 && streamType != 3 {
			return stBadArgument
		}
		c.Closed = true
		return stOK
	}
	s := h.cur()
	if s == nil {
		return stNotFound
	}
	s.Closed = true
	return stOK
}

// SendLocalResponse implements abi.Host.
func (h *Host) SendLocalResponse(status uint32, details string, body, headers []byte, grpcStatus int32) uint32 {
	s := h.cur()
	if s == nil {
		return stNotFound
	}
	pairs, ok := abi.ParsePairs(nil, clone(headers))
	if !ok {
		return stParse
	}
	s.Local = &LocalResponse{Status: int(status), Details: details, Body: clone(body), Headers: pairs}
	return stOK
}

// HTTPCall implements abi.Host.
func (h *Host) HTTPCall(cluster string, headers, body, trailers []byte, timeoutMS uint32) (uint32, uint32) {
	pairs, ok := abi.ParsePairs(nil, clone(headers))
	if !ok {
		return 0, stParse
	}
	if !has(pairs, ":method") || !has(pairs, ":path") || !has(pairs, ":authority") {
		return 0, stBadArgument
	}
	c := &Call{Token: h.nextToken, Context: h.effective, Cluster: cluster,
		CallRequest: CallRequest{Headers: pairs, Body: clone(body)}, Timeout: time.Duration(timeoutMS) * time.Millisecond}
	h.nextToken++
	h.calls = append(h.calls, c)
	return c.Token, stOK
}

// GetSharedData implements abi.Host.
func (h *Host) GetSharedData(key string) ([]byte, uint32, uint32) {
	s := h.shared[key]
	if s == nil {
		return nil, 0, stNotFound
	}
	return clone(s.val), s.cas, stOK
}

// SetSharedData implements abi.Host.
func (h *Host) SetSharedData(key string, val []byte, cas uint32) uint32 {
	s := h.shared[key]
	if s == nil {
		s = &shared{}
		h.shared[key] = s
	} else if cas != 0 && cas != s.cas {
		return stCasMismatch
	}
	s.val = clone(val)
	s.cas++
	return stOK
}

// RegisterSharedQueue implements abi.Host.
func (h *Host) RegisterSharedQueue(name string) (uint32, uint32) {
	id, ok := h.queues[name]
	if !ok {
		id = uint32(len(h.queues) + 1)
		h.queues[name] = id
	}
	return id, stOK
}

// ResolveSharedQueue implements abi.Host.
func (h *Host) ResolveSharedQueue(vmID, name string) (uint32, uint32) {
	id, ok := h.queues[name]
	if !ok {
		return 0, stNotFound
	}
	return id, stOK
}

// EnqueueSharedQueue implements abi.Host.
func (h *Host) EnqueueSharedQueue(id uint32, val []byte) uint32 {
	if id == 0 || id > uint32(len(h.queues)) {
		return stNotFound
	}
	h.qItems[id] = append(h.qItems[id], clone(val))
	return stOK
}

// DequeueSharedQueue implements abi.Host.
func (h *Host) DequeueSharedQueue(id uint32) ([]byte, uint32) {
	items := h.qItems[id]
	if len(items) == 0 {
		return nil, stEmpty
	}
	h.qItems[id] = items[1:]
	return items[0], stOK
}

// DefineMetric implements abi.Host.
func (h *Host) DefineMetric(typ uint32, name string) (uint32, uint32) {
	if typ > 2 || name == "" {
		return 0, stBadArgument
	}
	for i, m := range h.metrics {
		if m.Name == name && m.Type == typ {
			return uint32(i + 1), stOK
		}
	}
	h.metrics = append(h.metrics, &Metric{Name: name, Type: typ})
	return uint32(len(h.metrics)), stOK
}

func (h *Host) metric(id uint32) *Metric {
	if id == 0 || id > uint32(len(h.metrics)) {
		return nil
	}
	return h.metrics[id-1]
}

// IncrementMetric implements abi.Host.
func (h *Host) IncrementMetric(id uint32, delta int64) uint32 {
	m := h.metric(id)
	if m == nil || m.Type == 2 || (m.Type == 0 && delta < 0) {
		return stBadArgument
	}
	m.Value += delta
	return stOK
}

// RecordMetric implements abi.Host.
func (h *Host) RecordMetric(id uint32, v uint64) uint32 {
	m := h.metric(id)
	if m == nil {
		return stNotFound
	}
	if m.Type == 2 {
		m.Samples = append(m.Samples, v)
	} else {
		m.Value = int64(v)
	}
	return stOK
}

// GetMetric implements abi.Host.
func (h *Host) GetMetric(id uint32) (uint64, uint32) {
	m := h.metric(id)
	if m == nil || m.Type == 2 {
		return 0, stBadArgument
	}
	return uint64(m.Value), stOK
}

// SetEffectiveContext implements abi.Host.
func (h *Host) SetEffectiveContext(id uint32) uint32 {
	if id != rootID {
		_, ok := h.streams[id]
		if _, conn := h.conns[id]; !ok && !conn {
			return stBadArgument
		}
	}
	h.effective = id
	return stOK
}

// Done implements abi.Host.
func (h *Host) Done() uint32 { return stOK }

var _ abi.Host = (*Host)(nil)

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func get(hs [][2]string, name string) (string, bool) {
	for _, kv := range hs {
		if strings.EqualFold(kv[0], name) {
			return kv[1], true
		}
	}
	return "", false
}

func has(hs [][2]string, name string) bool { _, ok := get(hs, name); return ok }

func remove(hs [][2]string, name string) [][2]string {
	out := hs[:0]
	for _, kv := range hs {
		if !strings.EqualFold(kv[0], name) {
			out = append(out, kv)
		}
	}
	return out
}

func i64(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }

// CallForeignFunction implements abi.Host.
func (h *Host) CallForeignFunction(name string, args []byte) ([]byte, uint32) {
	h.foreign[name]++
	f := h.o.ForeignFunctions[name]
	if f == nil && name == "weft.get_properties" && !h.o.NoBatchProperties {
		return h.getProperties(args)
	}
	if f == nil {
		return nil, stNotFound
	}
	out, err := f(clone(args))
	if err != nil {
		var st sdk.Status
		if errors.As(err, &st) && st != sdk.StatusOK {
			return nil, uint32(st)
		}
		return nil, stInternal
	}
	return clone(out), stOK
}

// getProperties is Weft's weft.get_properties: the properties at each
// path, as GetProperty finds them, in one result.
func (h *Host) getProperties(args []byte) ([]byte, uint32) {
	if len(args) < 4 {
		return nil, stBadArgument
	}
	n := binary.LittleEndian.Uint32(args)
	rest := args[4:]
	var out []byte
	for range n {
		if len(rest) < 4 {
			return nil, stBadArgument
		}
		l := binary.LittleEndian.Uint32(rest)
		if uint64(l) > uint64(len(rest)-4) {
			return nil, stBadArgument
		}
		v, st := h.GetProperty(rest[4 : 4+l])
		rest = rest[4+l:]
		switch st {
		case stOK:
			out = binary.LittleEndian.AppendUint32(out, uint32(len(v)))
			out = append(out, v...)
		case stNotFound:
			out = binary.LittleEndian.AppendUint32(out, 0xFFFFFFFF)
		default:
			return nil, st
		}
	}
	if len(rest) != 0 {
		return nil, stBadArgument
	}
	return out, stOK
}

// The emulated host does not run gRPC call-outs: they answer Unimplemented,
// as a host without them does. Test them against the real host (proxy/wasm).

// GRPCCall implements abi.Host.
func (h *Host) GRPCCall(string, string, string, []byte, []byte, uint32) (uint32, uint32) {
	return 0, stUnimplemented
}

// GRPCStream implements abi.Host.
func (h *Host) GRPCStream(string, string, string, []byte) (uint32, uint32) {
	return 0, stUnimplemented
}

// GRPCSend implements abi.Host.
func (h *Host) GRPCSend(uint32, []byte, bool) uint32 { return stUnimplemented }

// GRPCCancel implements abi.Host.
func (h *Host) GRPCCancel(uint32) uint32 { return stUnimplemented }

// GRPCClose implements abi.Host.
func (h *Host) GRPCClose(uint32) uint32 { return stUnimplemented }

// GetStatus implements abi.Host: no call-out ever closes here.
func (h *Host) GetStatus() (uint32, []byte, uint32) { return 0, nil, stOK }
