package wasm

import (
	"bytes"
	"fmt"

	"github.com/weftmesh/weft/proxy/httpheader"
)

// A filter's header writes are held to the syntax the listener holds a
// client's request to (httpheader's checks): a name that is not a token, a
// value with NUL, CR, LF or another control character, a :method that is
// not a token, a :path that is not origin-form, an :authority that is not
// a host[:port], a :scheme other than http or https. Such a write is not
// applied: the host call answers BadArgument, and the stream's filter
// fails under its failure_policy (fail_closed: 503; fail_open: the stream
// goes on without the filter's later callbacks), counted as the plugin's
// invalid_header event and logged once per plugin. So a filter can never
// make the proxy send a malformed request or response.

// checkPair returns why key: val may not be written to a header map (nil:
// it may); in a request's map Host is the authority.
func checkPair(key, val []byte, request bool) error {
	if len(key) > 0 && key[0] == ':' {
		var ok bool
		switch {
		case bytes.Equal(key, pseudoMethod):
			ok = httpheader.ValidMethod(val)
		case bytes.Equal(key, pseudoPath):
			ok = httpheader.ValidPath(val)
		case bytes.Equal(key, pseudoAuthority):
			ok = httpheader.ValidAuthority(val)
		case bytes.Equal(key, pseudoScheme):
			ok = httpheader.ValidScheme(val)
		default:
			return nil // :status and unknown pseudo-headers: check() decides
		}
		if !ok {
			return fmt.Errorf("filter set %s to an invalid value %q", key, trunc(val))
		}
		return nil
	}
	if !httpheader.ValidName(key) {
		return fmt.Errorf("filter wrote a header with an invalid name %q", trunc(key))
	}
	if request && bytes.EqualFold(key, hostKey) {
		if !httpheader.ValidAuthority(val) {
			return fmt.Errorf("filter set host to an invalid value %q", trunc(val))
		}
		return nil
	}
	if !httpheader.ValidValue(val) {
		return fmt.Errorf("filter wrote header %q with an invalid value %q", trunc(key), trunc(val))
	}
	return nil
}

// refuseWrite records a malformed header write as a failure of the
// current stream's filter (applied when its callback returns) and answers
// BadArgument. Without a stream (the root context), the guest only gets
// BadArgument; the write is counted either way.
func (v *vm) refuseWrite(err error) uint32 {
	v.p.events.n[eventInvalidHeader].Add(1)
	if f := v.cur; f != nil && f.badWrite == nil {
		f.badWrite = err
	}
	return statusBadArgument
}

// trunc bounds what an error quotes of guest bytes.
func trunc(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
