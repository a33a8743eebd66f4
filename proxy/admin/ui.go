package admin

import (
	_ "embed"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// UIStats is the answer of /ui/stats: counters the page turns into rates.
type UIStats struct {
	At     time.Time      `json:"at"`
	Routes []RouteTraffic `json:"routes"`
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
