// Command network is the Weft SDK twin of the Go SDK guest gosdk/network,
// for network (L4) filters on tcp listeners. Per connection:
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
	"fmt"

	"github.com/weftmesh/weft/sdk"
)

func main() {}

func init() { sdk.Register(newPlugin) }

type plugin struct {
	downCloses, upCloses, done sdk.Counter
}

func newPlugin([]byte) (sdk.Plugin, error) {
	var p plugin
	for _, m := range []struct {
		c    *sdk.Counter
		name string
	}{{&p.downCloses, "net_downstream_closes"}, {&p.upCloses, "net_upstream_closes"}, {&p.done, "net_connections_done"}} {
		c, err := sdk.NewCounter(m.name)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", m.name, err)
		}
		*m.c = c
	}
	return &p, nil
}

func (*plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return nil }

func (p *plugin) NewNetworkFilter(*sdk.Connection) sdk.NetworkFilter { return conn{p} }

type conn struct{ p *plugin }

func (conn) OnNewConnection(*sdk.Connection) sdk.Action {
	sdk.Infof("network: new connection")
	return sdk.Continue
}

func (conn) OnDownstreamData(c *sdk.Connection, size int, end bool) sdk.Action {
	if size == 0 {
		return sdk.Continue
	}
	data, err := c.DownstreamData()
	must(err)
	up := bytes.ToUpper(data)
	if bytes.Contains(up, []byte("CLOSE-ME")) {
		must(c.Close())
		return sdk.Continue
	}
	if bytes.Contains(up, []byte("PANIC")) {
		panic("network: asked to panic")
	}
	if !end && bytes.HasSuffix(data, []byte(":")) {
		return sdk.Pause
	}
	must(c.SetDownstreamData(up))
	return sdk.Continue
}

func (conn) OnUpstreamData(c *sdk.Connection, size int, _ bool) sdk.Action {
	if size == 0 {
		return sdk.Continue
	}
	data, err := c.UpstreamData()
	must(err)
	out := bytes.ReplaceAll(data, []byte("PING"), []byte("PONG"))
	if bytes.Contains(out, []byte("ZONE?")) {
		zone, err := c.Property("upstream_host_metadata", "filter_metadata", "host", "zone")
		if err != nil {
			zone = []byte("NOTFOUND")
		}
		out = append(append(bytes.TrimRight(out, "\n"), '@'), zone...)
		out = append(out, '\n')
	}
	if bytes.Contains(out, []byte("ADDR?")) {
		addr, err := c.Property("upstream", "address")
		must(err)
		out = append(append(bytes.TrimRight(out, "\n"), '@'), addr...)
		out = append(out, '\n')
	}
	must(c.SetUpstreamData(out))
	return sdk.Continue
}

func (f conn) OnDownstreamClose(*sdk.Connection) { f.p.downCloses.Inc() }
func (f conn) OnUpstreamClose(*sdk.Connection)   { f.p.upCloses.Inc() }
func (f conn) OnConnectionDone(*sdk.Connection)  { f.p.done.Inc() }

func must(err error) {
	if err != nil {
		panic(err)
	}
}
