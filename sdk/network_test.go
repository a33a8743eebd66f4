package sdk_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// netPlugin filters connections whose context id is odd and leaves the
// others to be HTTP streams, so one test sees both kinds of context.
type netPlugin struct {
	root                   uint32
	downCloses, upCloses   int
	done, streams          int
	connRoots, streamRoots []uint32
}

func (p *netPlugin) NewHTTPFilter(s *sdk.Stream) sdk.HTTPFilter {
	p.streams++
	p.streamRoots = append(p.streamRoots, s.RootID())
	return headerOnly{}
}

func (p *netPlugin) NewNetworkFilter(c *sdk.Connection) sdk.NetworkFilter {
	if c.ID()%2 == 0 {
		return nil
	}
	p.connRoots = append(p.connRoots, c.RootID())
	return &upperConn{p: p}
}

type headerOnly struct{}

func (headerOnly) OnRequestHeaders(*sdk.Stream, bool) sdk.Action { return sdk.Continue }

type upperConn struct {
	p   *netPlugin
	new bool
}

func (f *upperConn) OnNewConnection(*sdk.Connection) sdk.Action { f.new = true; return sdk.Continue }

func (f *upperConn) OnDownstreamData(c *sdk.Connection, size int, end bool) sdk.Action {
	data, err := c.DownstreamData()
	if err != nil || len(data) != size {
		panic("downstream data")
	}
	if bytes.Contains(data, []byte("close")) {
		_ = c.Close()
		return sdk.Continue
	}
	if !end && bytes.HasSuffix(data, []byte(":")) {
		return sdk.Pause
	}
	_ = c.SetDownstreamData(bytes.ToUpper(data))
	return sdk.Continue
}

func (f *upperConn) OnUpstreamData(c *sdk.Connection, _ int, _ bool) sdk.Action {
	data, _ := c.UpstreamData()
	_ = c.SetUpstreamData(bytes.ReplaceAll(data, []byte("PING"), []byte("PONG")))
	return sdk.Continue
}

func (f *upperConn) OnDownstreamClose(*sdk.Connection) { f.p.downCloses++ }
func (f *upperConn) OnUpstreamClose(*sdk.Connection)   { f.p.upCloses++ }
func (f *upperConn) OnConnectionDone(*sdk.Connection)  { f.p.done++ }

func TestNetworkFilter(t *testing.T) {
	var p *netPlugin
	sdk.RegisterRoot(func(root uint32, _ []byte) (sdk.Plugin, error) {
		p = &netPlugin{root: root}
		return p, nil
	})
	h := sdktest.New(t, sdktest.Options{ForeignFunctions: map[string]func([]byte) ([]byte, error){
		"weft.stream_callbacks": func([]byte) ([]byte, error) { return nil, nil },
	}})
	if p == nil || p.root != 1 {
		t.Fatalf("plugin %+v: want one told its root context id 1", p)
	}

	// Context 2 is an HTTP stream (NewNetworkFilter said nil): it declares
	// its callbacks. Context 3 is a connection: it declares none.
	s := h.NewStream(sdktest.Req{})
	s.Finish()
	if n := h.ForeignCalls("weft.stream_callbacks"); n != 1 {
		t.Fatalf("weft.stream_callbacks called %d times for one HTTP stream, want 1", n)
	}
	c, a := h.NewConnection()
	if c.ID()%2 == 0 || a != uint32(sdk.Continue) {
		t.Fatalf("connection %d: new connection action %d", c.ID(), a)
	}
	if n := h.ForeignCalls("weft.stream_callbacks"); n != 1 {
		t.Errorf("a connection declared stream callbacks (%d calls): the host calls every network callback", n)
	}
	if p.streams != 1 || len(p.connRoots) != 1 || p.connRoots[0] != 1 || p.streamRoots[0] != 1 {
		t.Errorf("streams %d, connection roots %v, stream roots %v: want 1 each, root 1", p.streams, p.connRoots, p.streamRoots)
	}

	if a, out := c.Downstream([]byte("hello"), false); a != uint32(sdk.Continue) || string(out) != "HELLO" {
		t.Errorf("downstream: %d %q, want Continue HELLO", a, out)
	}
	if a, _ := c.Downstream([]byte("wait:"), false); a != uint32(sdk.Pause) {
		t.Errorf("downstream ending in ':': action %d, want Pause", a)
	}
	if a, out := c.Upstream([]byte("PING PING"), false); a != uint32(sdk.Continue) || string(out) != "PONG PONG" {
		t.Errorf("upstream: %d %q, want Continue PONG PONG", a, out)
	}
	if c.Closed {
		t.Fatal("closed before asked")
	}
	c.Downstream([]byte("close"), false)
	if !c.Closed {
		t.Error("Connection.Close did not close the connection")
	}
	c.CloseDownstream()
	c.CloseUpstream()
	c.Finish()
	if p.downCloses != 1 || p.upCloses != 1 || p.done != 1 {
		t.Errorf("closes %d/%d, done %d: want 1 each", p.downCloses, p.upCloses, p.done)
	}
	// After the connection is gone its callbacks find nothing.
	if a, out := c.Downstream([]byte("late"), false); a != uint32(sdk.Continue) || string(out) != "late" {
		t.Errorf("a deleted connection's callback: %d %q, want Continue, bytes untouched", a, out)
	}
}

// A plain Plugin (no NetworkFilter) on a connection lets the bytes through
// untouched.
func TestNetworkFilterNotImplemented(t *testing.T) {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return nopPlugin{}, nil })
	h := sdktest.New(t, sdktest.Options{})
	c, a := h.NewConnection()
	if a != uint32(sdk.Continue) {
		t.Fatalf("new connection: action %d", a)
	}
	if a, out := c.Downstream([]byte("abc"), true); a != uint32(sdk.Continue) || string(out) != "abc" {
		t.Errorf("downstream: %d %q, want Continue abc", a, out)
	}
	c.Finish()
}

func TestRegisterVMStart(t *testing.T) {
	t.Cleanup(func() { sdk.RegisterVMStart(nil) })
	sdk.Register(func([]byte) (sdk.Plugin, error) { return nopPlugin{}, nil })
	var got [][]byte
	sdk.RegisterVMStart(func(cfg []byte) error { got = append(got, cfg); return nil })
	sdktest.New(t, sdktest.Options{VMConfig: []byte("vm")})
	if len(got) != 1 || string(got[0]) != "vm" {
		t.Errorf("VM start ran with %q, want once with \"vm\"", got)
	}
	sdk.RegisterVMStart(func([]byte) error { return errors.New("no") })
	h, err := sdktest.Start(sdktest.Options{})
	if err == nil {
		h.Close()
		t.Fatal("a VM start that failed did not refuse the VM")
	}
}
