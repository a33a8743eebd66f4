package filtertest

import "github.com/prometheus/client_golang/prometheus"

// GuestCalls returns how many times the host has called into the
// filter's guest code so far (weft_wasm_plugin_calls_total: every
// callback, the VM's start and configuration included). The difference
// over a few requests is the calls each request costs.
func (h *Harness) GuestCalls() float64 {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(h.rt.Collector()); err != nil {
		return -1
	}
	fams, _ := reg.Gather()
	for _, fam := range fams {
		if fam.GetName() != "weft_wasm_plugin_calls_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			if label(m, "plugin") == h.cfg.Name {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
