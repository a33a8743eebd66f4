package sdk

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// ErrStreamGone is returned by Stream methods once the host deleted the
// stream (e.g. a call-out answered after the client went away).
var ErrStreamGone = errors.New("sdk: stream is gone")

// Stream is one HTTP request/response exchange as a filter sees it. Its
// methods act on this stream from any callback of the VM (a call-out's
// answer, a tick), not only from the stream's own callbacks.
type Stream struct {
	id   uint32
	root uint32
	slot uint32 // of the stream's record (streamRec) while it lives
}

// ID is the stream's context id (unique within the VM while it lives).
func (s *Stream) ID() uint32 { return s.id }

// RootID is the root context id of the plugin that filters the stream.
func (s *Stream) RootID() uint32 { return s.root }

// Filter returns the value the Plugin made for this stream (nil once the
// stream is gone).
func (s *Stream) Filter() HTTPFilter {
	if r := s.rec(); r != nil {
		return r.filter
	}
	return nil
}

// rec returns s's record, nil once s is gone.
func (s *Stream) rec() *streamRec {
	if r := vm.streams.at(s.slot, s.id); r != nil && r.s == s {
		return r
	}
	return nil
}

// use makes s the context host calls act on.
func (s *Stream) use() error {
	if s.rec() == nil {
		return ErrStreamGone
	}
	activate(s.id)
	return nil
}

// RequestHeaders is the request's header map (pseudo-headers :method,
// :path, :authority, :scheme included).
func (s *Stream) RequestHeaders() HeaderMap { return HeaderMap{s: s, mt: mapRequestHeaders} }

// ResponseHeaders is the response's header map (:status included).
func (s *Stream) ResponseHeaders() HeaderMap { return HeaderMap{s: s, mt: mapResponseHeaders} }

// RequestTrailers is the request's trailer map.
func (s *Stream) RequestTrailers() HeaderMap { return HeaderMap{s: s, mt: mapRequestTrailers} }

// ResponseTrailers is the response's trailer map.
func (s *Stream) ResponseTrailers() HeaderMap { return HeaderMap{s: s, mt: mapResponseTrailers} }

// RequestBody returns the buffered request body.
func (s *Stream) RequestBody() ([]byte, error) { return s.body(bufRequestBody) }

// ResponseBody returns the buffered response body.
func (s *Stream) ResponseBody() ([]byte, error) { return s.body(bufResponseBody) }

func (s *Stream) body(bt uint32) ([]byte, error) {
	if err := s.use(); err != nil {
		return nil, err
	}
	b, st := abi.GetBufferBytes(bt, 0, math.MaxUint32)
	if st == uint32(StatusNotFound) { // empty body
		return nil, nil
	}
	return b, statusErr(st)
}

// SetRequestBody replaces the request body (the host fixes Content-Length).
func (s *Stream) SetRequestBody(b []byte) error { return s.setBody(bufRequestBody, b) }

// SetResponseBody replaces the response body.
func (s *Stream) SetResponseBody(b []byte) error { return s.setBody(bufResponseBody, b) }

func (s *Stream) setBody(bt uint32, b []byte) error {
	if err := s.use(); err != nil {
		return err
	}
	return statusErr(abi.SetBufferBytes(bt, 0, math.MaxUint32, b))
}

// Resume continues a stream paused by a callback that returned Pause.
func (s *Stream) Resume() error {
	r := s.rec()
	if err := s.use(); err != nil {
		return err
	}
	st := uint32(streamRequest)
	if r.phase == streamResponse {
		st = streamResponse
	}
	return statusErr(abi.ContinueStream(st))
}

// Close ends the stream abruptly (the client's connection is closed).
func (s *Stream) Close() error {
	r := s.rec()
	if err := s.use(); err != nil {
		return err
	}
	return statusErr(abi.CloseStream(uint32(r.phase)))
}

// SendLocalResponse answers the client from the filter: the request does not
// reach the upstream (response filters still see the answer). Return Pause
// from the callback that sends it; a paused stream sending it ends its pause.
func (s *Stream) SendLocalResponse(status int, body []byte, headers [][2]string) error {
	return s.SendLocalResponseDetails(status, "", body, headers)
}

// SendLocalResponseDetails is SendLocalResponse with Envoy-style response
// code details (visible as the property response.code_details).
func (s *Stream) SendLocalResponseDetails(status int, details string, body []byte, headers [][2]string) error {
	if err := s.use(); err != nil {
		return err
	}
	var hdrs []byte
	if len(headers) > 0 {
		hdrs = abi.AppendPairs(nil, headers)
	}
	return statusErr(abi.SendLocalResponse(uint32(status), details, body, hdrs, -1))
}

// Property reads a host property of this stream (see the package
// documentation for the paths, e.g. "request", "path").
func (s *Stream) Property(path ...string) ([]byte, error) {
	if err := s.use(); err != nil {
		return nil, err
	}
	return Property(path...)
}

// Properties reads q's properties of this stream into vals (see
// PropertyQuery.Read).
func (s *Stream) Properties(q *PropertyQuery, vals [][]byte) error {
	if err := s.use(); err != nil {
		return err
	}
	return q.Read(vals)
}

// SetProperty stores a property on this stream for later filters and logs.
func (s *Stream) SetProperty(value []byte, path ...string) error {
	if err := s.use(); err != nil {
		return err
	}
	return SetProperty(value, path...)
}

// HeaderMap is one of a stream's header maps (or an HTTP call answer's,
// during its callback). Names are lower case; pseudo-headers are included.
type HeaderMap struct {
	s  *Stream
	mt uint32
}

func (h HeaderMap) use() error {
	if h.s == nil {
		return nil
	}
	return h.s.use()
}

// Get returns the first value of name and whether it is present.
func (h HeaderMap) Get(name string) (string, bool) {
	if h.use() != nil {
		return "", false
	}
	b, st := abi.GetHeaderMapValue(h.mt, name)
	if st != 0 {
		return "", false
	}
	return abi.String(b), true
}

// Set replaces every value of name with value.
func (h HeaderMap) Set(name, value string) error {
	if err := h.use(); err != nil {
		return err
	}
	return statusErr(abi.ReplaceHeaderMapValue(h.mt, name, value))
}

// Add appends a value of name.
func (h HeaderMap) Add(name, value string) error {
	if err := h.use(); err != nil {
		return err
	}
	return statusErr(abi.AddHeaderMapValue(h.mt, name, value))
}

// Remove deletes every value of name.
func (h HeaderMap) Remove(name string) error {
	if err := h.use(); err != nil {
		return err
	}
	return statusErr(abi.RemoveHeaderMapValue(h.mt, name))
}

// All returns every header, in order.
func (h HeaderMap) All() ([][2]string, error) {
	if err := h.use(); err != nil {
		return nil, err
	}
	b, st := abi.GetHeaderMapPairs(h.mt)
	if st != 0 {
		return nil, Status(st)
	}
	pairs, ok := abi.ParsePairs(nil, b)
	if !ok {
		return nil, StatusParseFailure
	}
	return pairs, nil
}

// Replace sets the whole map to pairs.
func (h HeaderMap) Replace(pairs [][2]string) error {
	if err := h.use(); err != nil {
		return err
	}
	return statusErr(abi.SetHeaderMapPairs(h.mt, abi.AppendPairs(nil, pairs)))
}

// Len returns the number of headers.
func (h HeaderMap) Len() (int, error) {
	if err := h.use(); err != nil {
		return 0, err
	}
	n, st := abi.GetHeaderMapSize(h.mt)
	return int(n), statusErr(st)
}

// HeaderOp is what a HeaderEdit does.
type HeaderOp uint8

// Header edits.
const (
	HeaderSet    HeaderOp = iota // replace every value of Name with Value
	HeaderRemove                 // remove every value of Name
	HeaderAdd                    // append a value of Name
)

// HeaderEdit is one write of HeaderMap.Edit.
type HeaderEdit struct {
	Op          HeaderOp
	Name, Value string
}

const foreignEditHeaders = "weft.edit_headers"

// noEditHeadersHost is set once the host answered that it has no
// weft.edit_headers: Edit writes one header at a time.
var noEditHeadersHost bool

// editBuf is reused for weft.edit_headers' arguments.
var editBuf []byte

// Edit applies edits in order, as Set, Remove and Add would one by one: on
// Weft in one host call (weft.edit_headers, docs/wasm.md), on other hosts
// one call each. It stops at the first write the host refuses and returns
// its error (the writes before it stay).
func (h HeaderMap) Edit(edits ...HeaderEdit) error {
	if err := h.use(); err != nil || len(edits) == 0 {
		return err
	}
	for _, e := range edits {
		if e.Op > HeaderAdd {
			return StatusBadArgument
		}
	}
	if !noEditHeadersHost && len(edits) <= 64 {
		b := binary.LittleEndian.AppendUint32(editBuf[:0], h.mt)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(edits)))
		for _, e := range edits {
			b = append(b, byte(e.Op))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Name)))
			b = append(b, e.Name...)
			v := e.Value
			if e.Op == HeaderRemove {
				v = ""
			}
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
		editBuf = b
		_, st := abi.CallForeignFunction(foreignEditHeaders, b)
		switch Status(st) {
		case StatusNotFound, StatusUnimplemented:
			noEditHeadersHost = true
		default:
			return statusErr(st)
		}
	}
	for _, e := range edits {
		var err error
		switch e.Op {
		case HeaderSet:
			err = h.Set(e.Name, e.Value)
		case HeaderRemove:
			err = h.Remove(e.Name)
		default:
			err = h.Add(e.Name, e.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
