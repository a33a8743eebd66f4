// Command sharedvm is the Weft SDK twin of the Go SDK guest gosdk/sharedvm,
// for plugins that share one VM. Its globals are the VM's: how many times
// the VM started, how many root contexts live in the VM, how many streams
// every plugin of the VM served.
//
// Plugin config is the plugin's name, optionally followed by ",tick": that
// root ticks every 10ms and counts its own ticks. On request headers each
// stream adds, for its plugin NAME:
//   - x-NAME-root: its root context id
//   - x-NAME-plugin-name: the host's plugin_name property
//   - x-NAME-vm-starts, x-NAME-roots: the VM's counts
//   - x-NAME-streams: streams of every plugin of this VM so far, this one included
//   - x-NAME-ticks: ticks of its root
package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/sdk"
)

var vmStarts, liveRoots, streams int

func main() {}

func init() {
	sdk.RegisterVMStart(func([]byte) error { vmStarts++; return nil })
	sdk.RegisterRoot(newPlugin)
}

type plugin struct {
	id    uint32
	name  string
	ticks int
}

func newPlugin(root uint32, cfg []byte) (sdk.Plugin, error) {
	if len(cfg) == 0 {
		return nil, errors.New("sharedvm: plugin config must name the plugin")
	}
	name, opt, _ := strings.Cut(string(cfg), ",")
	if opt == "tick" {
		if err := sdk.SetTickPeriod(10 * time.Millisecond); err != nil {
			return nil, fmt.Errorf("sharedvm: tick period: %w", err)
		}
	}
	liveRoots++
	return &plugin{id: root, name: name}, nil
}

func (p *plugin) OnTick() { p.ticks++ }

func (p *plugin) OnPluginDone() { liveRoots-- }

func (p *plugin) NewHTTPFilter(s *sdk.Stream) sdk.HTTPFilter {
	if s.RootID() != p.id {
		panic("sharedvm: a stream of another root")
	}
	return stream{p}
}

type stream struct{ p *plugin }

func (f stream) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	streams++
	p := f.p
	pn, _ := s.Property("plugin_name")
	for _, kv := range [][2]string{
		{"root", strconv.Itoa(int(s.RootID()))},
		{"plugin-name", string(pn)},
		{"vm-starts", strconv.Itoa(vmStarts)},
		{"roots", strconv.Itoa(liveRoots)},
		{"streams", strconv.Itoa(streams)},
		{"ticks", strconv.Itoa(p.ticks)},
	} {
		if err := s.RequestHeaders().Add("x-"+p.name+"-"+kv[0], kv[1]); err != nil {
			panic(err)
		}
	}
	return sdk.Continue
}
