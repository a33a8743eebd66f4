package bench

import (
	"context"
	"strconv"

	"github.com/weftmesh/weft/bench/loadgen"
)

// OnDemandScenarios run only when -scenarios names them (or their group).
// The downloads ("download") move 100 MiB per request, so they want their
// own -c and -timeout (the whole body must arrive within it), e.g.
//
//	weft bench -scenarios download -c 100 -d 20s -timeout 300s
//
// The L4 ones ("tcp", tcpscenario.go) measure the tcp listener and its
// network filters: weft bench -scenarios tcp.
func OnDemandScenarios() []Scenario {
	return []Scenario{DirectDownload(), WeftDownload(), WeftTCP(), WeftTCPWasm(1), WeftTCPWasm(4), RefProxy("epoll"), RefProxy("fasthttp")}
}

// DownloadSize is the body each request of the download scenarios reads:
// 100 MiB, issue 18's figure (100 of them at once, -c 100, keep weft's
// RSS under 100 MiB when nothing filters the body).
const DownloadSize = 100 << 20

// downloadPath asks the bench upstream for a DownloadSize body, streamed.
var downloadPath = "/?stream=" + strconv.Itoa(DownloadSize)

// DirectDownload is the download baseline: each request reads a 100 MiB
// body from the upstream directly.
func DirectDownload() Scenario {
	d := Direct()
	return Scenario{
		Name:        "direct-download",
		Description: "client → upstream, 100 MiB bodies read as they come (the download baseline)",
		Protocol:    loadgen.HTTP1Stream,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			url, err := d.Setup(ctx, env)
			return url + downloadPath[1:], err
		},
	}
}

// WeftDownload is DirectDownload through `weft proxy` with no filter: the
// bodies stream through weft, whose peak RSS the report shows.
func WeftDownload() Scenario {
	w := Weft()
	return Scenario{
		Name:        "weft-download",
		Description: "client → weft proxy (no filter) → upstream, 100 MiB bodies streamed",
		Protocol:    loadgen.HTTP1Stream,
		Compare:     "direct-download",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			url, err := w.Setup(ctx, env)
			return url + downloadPath[1:], err
		},
	}
}
