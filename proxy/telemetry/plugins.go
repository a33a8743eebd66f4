package telemetry

import dto "github.com/prometheus/client_model/go"

// PluginCounters is one Wasm plugin's accounting as a sidecar exports it
// (the weft_wasm_plugin_* families, its traps, callback timeouts and VM
// restarts in weft_wasm_events_total, and its failed call-outs). The
// sidecar's /ui and the control plane's mesh view both read it with
// ReadPluginCounters.
type PluginCounters struct {
	Calls           float64 `json:"calls"`
	GuestSeconds    float64 `json:"guest_seconds"`
	MemoryBytes     float64 `json:"memory_bytes"`
	HighWaterBytes  float64 `json:"memory_high_water_bytes"`
	VMs             float64 `json:"vms"`
	HostBytes       float64 `json:"host_memory_bytes"`
	MemoryGrowing   bool    `json:"memory_growing"`
	Traps           float64 `json:"traps"`
	Timeouts        float64 `json:"callback_timeouts"`
	VMReplaced      float64 `json:"vm_replaced"`
	CalloutFailures float64 `json:"callout_failures"`
}

// ReadPluginCounters reads every plugin's counters out of gathered or
// scraped metric families, by plugin name.
func ReadPluginCounters(fams []*dto.MetricFamily) map[string]*PluginCounters {
	out := map[string]*PluginCounters{}
	for _, f := range fams {
		set := pluginSetters[f.GetName()]
		if set == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			name := labelValue(m, "plugin")
			if name == "" {
				continue
			}
			c := out[name]
			if c == nil {
				c = &PluginCounters{}
				out[name] = c
			}
			v := m.GetCounter().GetValue()
			if m.Gauge != nil {
				v = m.GetGauge().GetValue()
			}
			set(c, m, v)
		}
	}
	return out
}

var pluginSetters = map[string]func(c *PluginCounters, m *dto.Metric, v float64){
	"weft_wasm_plugin_calls_total":             func(c *PluginCounters, _ *dto.Metric, v float64) { c.Calls = v },
	"weft_wasm_plugin_guest_seconds_total":     func(c *PluginCounters, _ *dto.Metric, v float64) { c.GuestSeconds = v },
	"weft_wasm_plugin_memory_bytes":            func(c *PluginCounters, _ *dto.Metric, v float64) { c.MemoryBytes = v },
	"weft_wasm_plugin_memory_high_water_bytes": func(c *PluginCounters, _ *dto.Metric, v float64) { c.HighWaterBytes = v },
	"weft_wasm_plugin_vms":                     func(c *PluginCounters, _ *dto.Metric, v float64) { c.VMs = v },
	"weft_wasm_plugin_host_memory_bytes":       func(c *PluginCounters, _ *dto.Metric, v float64) { c.HostBytes = v },
	"weft_wasm_plugin_memory_growing":          func(c *PluginCounters, _ *dto.Metric, v float64) { c.MemoryGrowing = v == 1 },
	"weft_wasm_callout_failures_total":         func(c *PluginCounters, _ *dto.Metric, v float64) { c.CalloutFailures += v },
	"weft_wasm_events_total": func(c *PluginCounters, m *dto.Metric, v float64) {
		switch labelValue(m, "event") {
		case "trap":
			c.Traps = v
		case "callback_timeout":
			c.Timeouts = v
		case "vm_replaced":
			c.VMReplaced = v
		}
	},
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
