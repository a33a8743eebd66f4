package admin

import (
	_ "embed"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

//go:embed ui.html
var uiPage []byte

// RouteTraffic is one (listener, route, cluster)'s request counts since the
// sidecar started, as /ui/stats reports them.
type RouteTraffic struct {
	Listener string `json:"listener"`
	Route    string `json:"route"`
	Cluster  string `json:"cluster"`
	// Requests counts every answered request; Errors the 5xx ones.
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
}

// PluginCost is one Wasm plugin's accounting, read from its
// weft_wasm_plugin_* and weft_wasm_events_total metrics.
type PluginCost struct {
	Plugin          string  `json:"plugin"`
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

// UIStats is the answer of /ui/stats: counters the page turns into rates.
type UIStats struct {
	At      time.Time      `json:"at"`
	Routes  []RouteTraffic `json:"routes"`
	Plugins []PluginCost   `json:"plugins"`
}

// uiRoutes serves the sidecar's own view: /ui (the page) and /ui/stats
// (request counters read from reg).
func uiRoutes(mux *http.ServeMux, reg *prometheus.Registry) {
	mux.HandleFunc("/ui", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(uiPage)
	})
	mux.HandleFunc("/ui/stats", func(w http.ResponseWriter, r *http.Request) {
		st, err := routeTraffic(reg)
		if err != nil {
			http.Error(w, "gathering metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, st)
	})
}

// routeTraffic sums weft_requests_total by (listener, route, cluster).
func routeTraffic(reg *prometheus.Registry) (UIStats, error) {
	st := UIStats{At: time.Now(), Routes: []RouteTraffic{}}
	fams, err := reg.Gather()
	if err != nil {
		return st, err
	}
	byKey := map[[3]string]*RouteTraffic{}
	for _, f := range fams {
		if f.GetName() != "weft_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var k [3]string
			class := ""
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "listener":
					k[0] = l.GetValue()
				case "route":
					k[1] = l.GetValue()
				case "cluster":
					k[2] = l.GetValue()
				case "code_class":
					class = l.GetValue()
				}
			}
			rt := byKey[k]
			if rt == nil {
				rt = &RouteTraffic{Listener: k[0], Route: k[1], Cluster: k[2]}
				byKey[k] = rt
			}
			v := m.GetCounter().GetValue()
			rt.Requests += v
			if class == "5xx" {
				rt.Errors += v
			}
		}
	}
	for _, rt := range byKey {
		st.Routes = append(st.Routes, *rt)
	}
	st.Plugins = pluginCosts(fams)
	sort.Slice(st.Routes, func(i, j int) bool {
		a, b := st.Routes[i], st.Routes[j]
		if a.Listener != b.Listener {
			return a.Listener < b.Listener
		}
		if a.Route != b.Route {
			return a.Route < b.Route
		}
		return a.Cluster < b.Cluster
	})
	return st, nil
}

// pluginCosts reads each plugin's accounting out of the gathered metrics.
func pluginCosts(fams []*dto.MetricFamily) []PluginCost {
	byName := map[string]*PluginCost{}
	get := func(m *dto.Metric) *PluginCost {
		for _, l := range m.GetLabel() {
			if l.GetName() == "plugin" {
				c := byName[l.GetValue()]
				if c == nil {
					c = &PluginCost{Plugin: l.GetValue()}
					byName[l.GetValue()] = c
				}
				return c
			}
		}
		return nil
	}
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			default:
				continue
			}
			var c *PluginCost
			switch f.GetName() {
			case "weft_wasm_plugin_calls_total", "weft_wasm_plugin_guest_seconds_total", "weft_wasm_plugin_memory_bytes",
				"weft_wasm_plugin_memory_high_water_bytes", "weft_wasm_plugin_vms", "weft_wasm_plugin_memory_growing",
				"weft_wasm_events_total", "weft_wasm_callout_failures_total", "weft_wasm_plugin_host_memory_bytes":
				if c = get(m); c == nil {
					continue
				}
			default:
				continue
			}
			switch f.GetName() {
			case "weft_wasm_plugin_calls_total":
				c.Calls = v
			case "weft_wasm_plugin_guest_seconds_total":
				c.GuestSeconds = v
			case "weft_wasm_plugin_memory_bytes":
				c.MemoryBytes = v
			case "weft_wasm_plugin_memory_high_water_bytes":
				c.HighWaterBytes = v
			case "weft_wasm_plugin_vms":
				c.VMs = v
			case "weft_wasm_plugin_host_memory_bytes":
				c.HostBytes = v
			case "weft_wasm_plugin_memory_growing":
				c.MemoryGrowing = v == 1
			case "weft_wasm_callout_failures_total":
				c.CalloutFailures += v
			case "weft_wasm_events_total":
				switch label(m, "event") {
				case "trap":
					c.Traps = v
				case "callback_timeout":
					c.Timeouts = v
				case "vm_replaced":
					c.VMReplaced = v
				}
			}
		}
	}
	out := make([]PluginCost, 0, len(byName))
	for _, c := range byName {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Plugin < out[j].Plugin })
	return out
}
