package wasm

import (
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Tagged guest metrics, Envoy's tag extraction: a guest names a metric
// like custom_header_value_counts_value=foo_reporter=wasmgosdk and a
// stats_tags rule (a tag name and a regex) turns a part of the name into a
// label. Metrics from which a tag came out are exported as their own
// Prometheus family (the name without the tags, counters as counters,
// gauges as gauges, histograms as histograms) with the tags and plugin as
// labels, instead of in weft_wasm_guest_*.

// StatsTag is one tag extraction rule (Envoy's stats_tags entry). The
// regex's first capture group is cut out of the name; the second, or the
// first when there is one, is the tag's value.
type StatsTag struct {
	Name  string
	Regex *regexp.Regexp
}

// DefaultStatsTags is what SetStatsTags(nil) applies: the convention
// NAME_KEY=VALUE_KEY2=VALUE2 (keys and values without "_" or "=").
var defaultTagRE = regexp.MustCompile(`(_([a-zA-Z][a-zA-Z0-9]*)=([^_=]*))`)

// SetStatsTags replaces the tag rules (a config reload). With no rules the
// default convention applies.
func (rt *Runtime) SetStatsTags(tags []StatsTag) {
	t := append([]StatsTag(nil), tags...)
	rt.metrics.tags.Store(&t)
}

// TaggedCollector exports the guest metrics that carry tags. Its families
// come and go with what guests define, so it describes none (an unchecked
// collector).
func (rt *Runtime) TaggedCollector() prometheus.Collector { return taggedCollector{rt.metrics} }

// splitTags cuts the tags out of name: by the rules, else by the default
// convention. ok is false when no tag came out.
func splitTags(name string, rules []StatsTag) (base string, keys, values []string, ok bool) {
	base = name
	for _, r := range rules {
		m := r.Regex.FindStringSubmatchIndex(base)
		if len(m) < 4 || m[2] < 0 {
			continue
		}
		val := base[m[2]:m[3]]
		if len(m) >= 6 && m[4] >= 0 {
			val = base[m[4]:m[5]]
		}
		keys, values = append(keys, r.Name), append(values, val)
		base = base[:m[2]] + base[m[3]:]
	}
	if len(rules) == 0 {
		for {
			m := defaultTagRE.FindStringSubmatchIndex(base)
			if m == nil {
				break
			}
			keys, values = append(keys, base[m[4]:m[5]]), append(values, base[m[6]:m[7]])
			base = base[:m[2]] + base[m[3]:]
		}
	}
	return base, keys, values, len(keys) > 0 && base != ""
}

// tagRules is the rules in force.
func (m *metricsRegistry) tagRules() []StatsTag {
	if t := m.tags.Load(); t != nil {
		return *t
	}
	return nil
}

// promName turns a metric name into a Prometheus one: anything but
// letters, digits, "_" and ":" becomes "_".
func promName(s string) string {
	var b strings.Builder
	for i, c := range s {
		ok := c == '_' || c == ':' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (i > 0 && '0' <= c && c <= '9')
		if ok {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

type taggedCollector struct{ m *metricsRegistry }

// Describe implements prometheus.Collector: nothing (unchecked).
func (taggedCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector. One family per base name and
// type; its labels are every tag any of its metrics carries (a metric
// without one gets ""), then plugin.
func (c taggedCollector) Collect(ch chan<- prometheus.Metric) {
	rules := c.m.tagRules()
	type member struct {
		g    *guestMetric
		tags map[string]string
	}
	type family struct {
		typ     uint32
		labels  []string
		members []member
	}
	fams := map[string]*family{}
	var order []string
	for _, g := range *c.m.list.Load() {
		base, keys, values, ok := splitTags(g.name, rules)
		if !ok {
			continue
		}
		name := promName(base)
		f := fams[name]
		if f == nil {
			f = &family{typ: g.typ}
			fams[name] = f
			order = append(order, name)
		}
		if f.typ != g.typ {
			continue // one name, two types: the first type keeps it
		}
		tags := make(map[string]string, len(keys))
		for i, k := range keys {
			k = promName(k)
			if _, seen := tags[k]; !seen {
				tags[k] = values[i]
				if !contains(f.labels, k) {
					f.labels = append(f.labels, k)
				}
			}
		}
		f.members = append(f.members, member{g, tags})
	}
	for _, name := range order {
		f := fams[name]
		labels := append(append([]string(nil), f.labels...), "plugin")
		desc := prometheus.NewDesc(name, "Wasm guest metric "+name+" (tags extracted from its name).", labels, nil)
		for _, mb := range f.members {
			vals := make([]string, 0, len(labels))
			for _, l := range f.labels {
				vals = append(vals, mb.tags[l])
			}
			vals = append(vals, mb.g.plugin)
			if m := mb.g.constMetric(desc, vals); m != nil {
				ch <- m
			}
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// constMetric is g's value as a metric of desc.
func (g *guestMetric) constMetric(desc *prometheus.Desc, labels []string) prometheus.Metric {
	var m prometheus.Metric
	var err error
	switch g.typ {
	case metricCounter:
		m, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, float64(g.val.Load()), labels...)
	case metricGauge:
		m, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, float64(g.val.Load()), labels...)
	case metricHistogram:
		buckets := make(map[float64]uint64, len(histogramBounds))
		var cum uint64
		for i, b := range histogramBounds {
			cum += g.buckets[i].Load()
			buckets[b] = cum
		}
		m, err = prometheus.NewConstHistogram(desc, g.count.Load(), float64(g.sum.Load()), buckets, labels...)
	}
	if err != nil {
		return nil
	}
	return m
}
