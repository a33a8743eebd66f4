package proxy

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const taggedConfig = `
stats_tags:
  - tag_name: method
    regex: '(_method=([A-Z]+))'
  - tag_name: user
    regex: '(_user=([a-z]+))'
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [tg]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {name: all, match: {prefix: /}, route: {cluster: up}}
filters:
  - {name: tg, module: {path: "{{tagged}}"}}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// Guest metrics whose names carry tags come out as their own families,
// of the guest's type, with the tags (by the stats_tags rules) and plugin
// as labels.
func TestWasmTaggedMetrics(t *testing.T) {
	for _, lang := range httpGuestLanguages {
		t.Run(lang, func(t *testing.T) {
			up := testserver.Start(t, "up")
			p, url := startProxy(t, taggedConfig, map[string]string{"up": up.Addr, "tagged": guestFileIn(t, t.TempDir(), lang, "tagged")})
			cl := &fasthttp.Client{}
			for range 2 {
				get(t, cl, url+"/", "x-user", "alice")
			}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url + "/")
			req.Header.SetMethod("POST")
			req.Header.Set("x-user", "bob")
			req.SetBodyString("hello")
			if err := cl.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				t.Fatalf("POST: %v %d", err, resp.StatusCode())
			}

			mfs, err := p.Metrics().Registry().Gather()
			if err != nil {
				t.Fatal(err)
			}
			fams := map[string]*dto.MetricFamily{}
			for _, mf := range mfs {
				fams[mf.GetName()] = mf
			}
			find := func(name string, typ dto.MetricType, labels map[string]string) *dto.Metric {
				t.Helper()
				mf := fams[name]
				if mf == nil {
					t.Fatalf("no family %s", name)
				}
				if mf.GetType() != typ {
					t.Errorf("%s: type %v, want %v", name, mf.GetType(), typ)
				}
			next:
				for _, m := range mf.GetMetric() {
					have := map[string]string{}
					for _, l := range m.GetLabel() {
						have[l.GetName()] = l.GetValue()
					}
					for k, v := range labels {
						if have[k] != v {
							continue next
						}
					}
					return m
				}
				t.Fatalf("%s: no metric with labels %v", name, labels)
				return nil
			}
			if v := find("tagged_requests", dto.MetricType_COUNTER, map[string]string{"method": "GET", "user": "alice", "plugin": "tg"}).GetCounter().GetValue(); v != 2 {
				t.Errorf("GET alice = %v, want 2", v)
			}
			if v := find("tagged_requests", dto.MetricType_COUNTER, map[string]string{"method": "POST", "user": "bob"}).GetCounter().GetValue(); v != 1 {
				t.Errorf("POST bob = %v, want 1", v)
			}
			if v := find("tagged_last_size", dto.MetricType_GAUGE, map[string]string{"user": "bob"}).GetGauge().GetValue(); v != 5 {
				t.Errorf("gauge bob = %v, want 5", v)
			}
			if n := find("tagged_sizes", dto.MetricType_HISTOGRAM, map[string]string{"user": "bob"}).GetHistogram().GetSampleCount(); n != 1 {
				t.Errorf("histogram bob count = %v, want 1", n)
			}
			if _, ok := metricValue(t, p, "weft_wasm_guest_counter_total", "plugin", "tg"); ok {
				t.Error("a tagged metric is also in weft_wasm_guest_counter_total")
			}
		})
	}
}
