package proxy

import (
	"slices"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const wasmServiceConfig = `
wasm_services:
  - name: jobs
    module: {path: "{{service}}"}
    vm_id: svc
    config: service
filters:
  - name: front
    module: {path: "{{service}}"}
    vm_id: svc
    config: filter
    pool_size: 2
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [front]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: all
            match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// A wasm service runs on no listener: its root context ticks, calls a
// cluster out and drains a shared queue that a filter of the same vm_id
// fills; the filter reports what the service left in shared data.
func TestWasmServiceRunsOnItsOwn(t *testing.T) {
	for _, lang := range httpGuestLanguages {
		t.Run(lang, func(t *testing.T) {
			up := testserver.Start(t, "up")
			dir := t.TempDir()
			_, url := startProxy(t, wasmServiceConfig, map[string]string{"up": up.Addr, "service": guestFileIn(t, dir, lang, "service")})
			cl := &fasthttp.Client{}
			last := func(hdrs ...string) *fasthttp.RequestHeader {
				st, body, _ := get(t, cl, url+"/", hdrs...)
				if st != 200 {
					t.Fatalf("status %d %q", st, body)
				}
				return &up.Last().Header
			}
			eventually(t, 20*time.Second, "the service ticks and its call-out answers", func() bool {
				h := last()
				return string(h.Peek("x-service-ticks")) != "" && string(h.Peek("x-service-callout")) == "200"
			})
			if !slices.Contains(up.Paths(), "/from-service") {
				t.Error("the upstream never saw the service's call-out")
			}
			last("x-enqueue", "a")
			last("x-enqueue", "b")
			eventually(t, 20*time.Second, "the service drains the queue", func() bool {
				return string(last().Peek("x-service-seen")) == "seen:a,b"
			})
		})
	}
}
