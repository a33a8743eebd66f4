// Command tcpnoop is a Proxy-Wasm network (L4) filter that does nothing:
// every connection callback continues. It is gosdk/noop for tcp listeners
// (a Go SDK plugin context makes either HTTP or TCP contexts, not both)
// and measures what a network filter costs by itself in `weft bench`.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

// The SDK's SetTcpContext shortcut cannot be used: its plugin context
// calls a nil HTTP factory when the host creates a stream context.
func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct{ types.DefaultPluginContext }

func (*plugin) NewTcpContext(uint32) types.TcpContext { return &types.DefaultTcpContext{} }
