// Command network is a conformance guest for network (L4) filters on tcp
// listeners. Per connection:
//   - downstream data is upper-cased in place (the DownstreamData buffer);
//     data ending in ":" is held back (Pause) until more arrives;
//     data containing "CLOSE-ME" closes the connection (close_stream);
//     data containing "PANIC" traps;
//   - upstream data has "PING" replaced by "PONG" (the UpstreamData buffer)
//     and the upstream.address property appended as "@ADDR" when the data
//     contains "ADDR?", the answering endpoint's metadata
//     (upstream_host_metadata.filter_metadata.host.zone) as "@ZONE" when it
//     contains "ZONE?";
//   - the close callbacks and the end of the connection count in guest
//     counters net_downstream_closes, net_upstream_closes, net_connections_done.
package main

import (
	"bytes"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext {
	return &root{
		downCloses: proxywasm.DefineCounterMetric("net_downstream_closes"),
		upCloses:   proxywasm.DefineCounterMetric("net_upstream_closes"),
		done:       proxywasm.DefineCounterMetric("net_connections_done"),
	}
}

type root struct {
	types.DefaultPluginContext
	downCloses, upCloses, done proxywasm.MetricCounter
}

func (r *root) NewTcpContext(uint32) types.TcpContext { return &conn{r: r} }

type conn struct {
	types.DefaultTcpContext
	r *root
}

func (c *conn) OnNewConnection() types.Action {
	proxywasm.LogInfo("network: new connection")
	return types.ActionContinue
}

func (c *conn) OnDownstreamData(size int, end bool) types.Action {
	if size == 0 {
		return types.ActionContinue
	}
	data, err := proxywasm.GetDownstreamData(0, size)
	must(err)
	up := bytes.ToUpper(data)
	if bytes.Contains(up, []byte("CLOSE-ME")) {
		must(proxywasm.CloseDownstream())
		return types.ActionContinue
	}
	if bytes.Contains(up, []byte("PANIC")) {
		panic("network: asked to panic")
	}
	if !end && bytes.HasSuffix(data, []byte(":")) {
		return types.ActionPause
	}
	must(proxywasm.ReplaceDownstreamData(up))
	return types.ActionContinue
}

func (c *conn) OnUpstreamData(size int, _ bool) types.Action {
	if size == 0 {
		return types.ActionContinue
	}
	data, err := proxywasm.GetUpstreamData(0, size)
	must(err)
	out := bytes.ReplaceAll(data, []byte("PING"), []byte("PONG"))
	if bytes.Contains(out, []byte("ZONE?")) {
		zone, err := proxywasm.GetProperty([]string{"upstream_host_metadata", "filter_metadata", "host", "zone"})
		if err != nil {
			zone = []byte("NOTFOUND")
		}
		out = append(append(bytes.TrimRight(out, "\n"), '@'), zone...)
		out = append(out, '\n')
	}
	if bytes.Contains(out, []byte("ADDR?")) {
		addr, err := proxywasm.GetProperty([]string{"upstream", "address"})
		must(err)
		out = append(append(bytes.TrimRight(out, "\n"), '@'), addr...)
		out = append(out, '\n')
	}
	must(proxywasm.ReplaceUpstreamData(out))
	return types.ActionContinue
}

func (c *conn) OnDownstreamClose(types.PeerType) { c.r.downCloses.Increment(1) }
func (c *conn) OnUpstreamClose(types.PeerType)   { c.r.upCloses.Increment(1) }
func (c *conn) OnStreamDone()                    { c.r.done.Increment(1) }

func must(err error) {
	if err != nil {
		panic(err)
	}
}
