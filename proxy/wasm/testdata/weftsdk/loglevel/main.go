// Command loglevel is a test guest written with Weft's Go SDK: on each
// request it logs "weftsdk debug line" at debug level and
// "weftsdk error line" at error level through sdk.Debugf and sdk.Errorf,
// which drop what the host would not print. Two plugins of it sharing a VM
// with different log_level each get their own lines.
package main

import "github.com/weftmesh/weft/sdk"

func main() {}

func init() {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return plugin{}, nil })
}

type plugin struct{}

func (plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{} }

type filter struct{}

func (filter) OnRequestHeaders(*sdk.Stream, bool) sdk.Action {
	sdk.Debugf("weftsdk debug line")
	sdk.Errorf("weftsdk error line")
	return sdk.Continue
}
