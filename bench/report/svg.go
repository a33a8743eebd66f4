package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
)

// Chart geometry shared by every chart.
const (
	svgWidth   = 820
	svgHeight  = 460
	plotLeft   = 80
	plotTop    = 56
	plotRight  = svgWidth - 190 // room for the legend
	plotBottom = svgHeight - 70
)

var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

func color(i int) string { return palette[i%len(palette)] }

// svgDoc accumulates one SVG document.
type svgDoc struct{ b bytes.Buffer }

func newSVG(title, subtitle string) *svgDoc {
	d := &svgDoc{}
	fmt.Fprintf(&d.b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&d.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	d.raw(`<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`, svgWidth, svgHeight)
	d.text(svgWidth/2, 26, "middle", `font-size="16" font-weight="bold"`, title)
	if subtitle != "" {
		d.text(svgWidth/2, 44, "middle", `fill="#555" font-size="11"`, subtitle)
	}
	return d
}

func (d *svgDoc) raw(format string, args ...any) {
	fmt.Fprintf(&d.b, format, args...)
	d.b.WriteByte('\n')
}

func (d *svgDoc) text(x, y float64, anchor, attrs, s string) {
	fmt.Fprintf(&d.b, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>`, x, y, anchor, attrs)
	_ = xml.EscapeText(&d.b, []byte(s))
	d.b.WriteString("</text>\n")
}

// titled writes an element with a <title> child, which browsers show as a
// tooltip (no script needed).
func (d *svgDoc) titled(open, tag, title string) {
	d.b.WriteString(open)
	d.b.WriteString("<title>")
	_ = xml.EscapeText(&d.b, []byte(title))
	fmt.Fprintf(&d.b, "</title></%s>\n", tag)
}

func (d *svgDoc) legend(names, colors []string) {
	for i, n := range names {
		y := float64(plotTop + 10 + i*22)
		d.raw(`<rect x="%d" y="%.1f" width="14" height="14" fill="%s"/>`, plotRight+20, y-11, colors[i])
		d.text(float64(plotRight+40), y, "start", "", n)
	}
}

func (d *svgDoc) axes(yLabel string) {
	d.raw(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, plotLeft, plotTop, plotLeft, plotBottom)
	d.raw(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, plotLeft, plotBottom, plotRight, plotBottom)
	fmt.Fprintf(&d.b, `<text x="18" y="%d" text-anchor="middle" transform="rotate(-90 18 %d)">`, (plotTop+plotBottom)/2, (plotTop+plotBottom)/2)
	_ = xml.EscapeText(&d.b, []byte(yLabel))
	d.b.WriteString("</text>\n")
}

func (d *svgDoc) close(w io.Writer) error {
	d.b.WriteString("</svg>\n")
	_, err := w.Write(d.b.Bytes())
	if err != nil {
		return fmt.Errorf("report: svg: %w", err)
	}
	return nil
}

func (d *svgDoc) empty(msg string) {
	d.text(svgWidth/2, svgHeight/2, "middle", `fill="#666"`, msg)
}

// LatencySVG draws latency percentiles per scenario: p50, p90, p99, p99.9
// and max on the x axis, milliseconds on a log y axis, one line per scenario.
func (r *Report) LatencySVG(w io.Writer) error {
	d := newSVG("Latency percentiles per scenario", r.subtitle())
	ss := r.Measured()
	labels := []string{"p50", "p90", "p99", "p99.9", "max"}
	values := func(s Scenario) []float64 {
		l := s.Latency
		return []float64{ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max)}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, v := range values(s) {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		d.empty("no measured scenario")
		return d.close(w)
	}
	loDec, hiDec := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if hiDec <= loDec {
		hiDec = loDec + 1
	}
	y := func(v float64) float64 {
		v = math.Max(v, math.Pow(10, loDec))
		return plotBottom - (math.Log10(v)-loDec)/(hiDec-loDec)*(plotBottom-plotTop)
	}
	x := func(i int) float64 {
		return plotLeft + 40 + float64(i)*float64(plotRight-plotLeft-80)/float64(len(labels)-1)
	}
	for dec := loDec; dec <= hiDec; dec++ {
		v := math.Pow(10, dec)
		d.raw(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, plotLeft, y(v), plotRight, y(v))
		d.text(plotLeft-6, y(v)+4, "end", "", fmtAxis(v))
		if dec < hiDec {
			for _, m := range []float64{2, 5} {
				d.raw(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#f0f0f0"/>`, plotLeft, y(m*v), plotRight, y(m*v))
			}
		}
	}
	d.axes("latency (ms, log scale)")
	for i, l := range labels {
		d.text(x(i), plotBottom+20, "middle", "", l)
	}
	d.text((plotLeft+plotRight)/2, plotBottom+44, "middle", `fill="#444"`, "percentile")
	var names, colors []string
	for si, s := range ss {
		names, colors = append(names, s.Name), append(colors, color(si))
		vs := values(s)
		var pts bytes.Buffer
		for i, v := range vs {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(v))
		}
		d.raw(`<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color(si), bytes.TrimSpace(pts.Bytes()))
		for i, v := range vs {
			d.titled(fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s">`, x(i), y(v), color(si)), "circle",
				fmt.Sprintf("%s %s: %s ms", s.Name, labels[i], fmtMillis(v*1000)))
		}
	}
	d.legend(names, colors)
	return d.close(w)
}

// ThroughputSVG draws requests per second per scenario as bars.
func (r *Report) ThroughputSVG(w io.Writer) error {
	ss := r.Measured()
	bars := make([]bar, 0, len(ss))
	for i, s := range ss {
		bars = append(bars, bar{name: s.Name, value: s.RPS, label: fmt.Sprintf("%.0f", s.RPS), color: color(i)})
	}
	return barChart(w, "Throughput per scenario", r.subtitle(), "requests per second", bars)
}

// CPUSVG draws the measured processes' CPU time per request per scenario.
func (r *Report) CPUSVG(w io.Writer) error {
	var bars []bar
	// Colours follow the scenario's place among all measured ones, so a
	// scenario has one colour in every chart.
	for i, s := range r.Measured() {
		if s.CPU != nil {
			bars = append(bars, bar{name: s.Name, value: s.CPU.MicrosPerRequest, label: fmt.Sprintf("%.1f", s.CPU.MicrosPerRequest), color: color(i)})
		}
	}
	return barChart(w, "Proxy CPU per request", r.subtitle(), "CPU µs per request", bars)
}

// subtitle summarises the load settings under each chart's title.
func (r *Report) subtitle() string {
	st := r.Settings
	s := fmt.Sprintf("closed loop, %d connections", st.Connections)
	if st.Mode == "open" {
		s = fmt.Sprintf("open loop at %.0f req/s, %d workers", st.Rate, st.Connections)
	}
	s += fmt.Sprintf(", %gs measured", float64(st.Duration))
	if st.Pinned {
		s += fmt.Sprintf(", load on CPU %s, servers on CPU %s", st.LoadCPUs, st.ServerCPUs)
	}
	if !r.Started.IsZero() {
		s += ", " + r.Started.Format("2006-01-02 15:04")
	}
	return s
}

type bar struct {
	name  string
	value float64
	label string
	color string
}

func barChart(w io.Writer, title, subtitle, yLabel string, bars []bar) error {
	d := newSVG(title, subtitle)
	if len(bars) == 0 {
		d.empty("no scenario with this measurement")
		return d.close(w)
	}
	top := 0.0
	for _, b := range bars {
		top = math.Max(top, b.value)
	}
	top, step := niceScale(top)
	y := func(v float64) float64 { return plotBottom - v/top*(plotBottom-plotTop) }
	for v := 0.0; v <= top+step/2; v += step {
		d.raw(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, plotLeft, y(v), plotRight, y(v))
		d.text(plotLeft-6, y(v)+4, "end", "", fmtAxis(v))
	}
	d.axes(yLabel)
	slot := float64(plotRight-plotLeft) / float64(len(bars))
	width := math.Min(slot*0.6, 90)
	var names, colors []string
	for i, b := range bars {
		names, colors = append(names, b.name), append(colors, b.color)
		cx := plotLeft + slot*(float64(i)+0.5)
		d.titled(fmt.Sprintf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">`,
			cx-width/2, y(b.value), width, plotBottom-y(b.value), b.color), "rect",
			fmt.Sprintf("%s: %s", b.name, b.label))
		d.text(cx, y(b.value)-5, "middle", "", b.label)
		if slot < 90 { // many scenarios: slant the names so they do not overlap
			d.text(cx, plotBottom+16, "end", fmt.Sprintf(`transform="rotate(-30 %.1f %d)"`, cx, plotBottom+16), b.name)
		} else {
			d.text(cx, plotBottom+18, "middle", "", b.name)
		}
	}
	d.legend(names, colors)
	return d.close(w)
}

// niceScale returns an axis top at or above max and a round tick step.
func niceScale(max float64) (top, step float64) {
	if max <= 0 {
		return 1, 0.2
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f <= 1:
		step = mag
	case f <= 2:
		step = 2 * mag
	case f <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	return math.Ceil(max/step) * step, step
}

func ms(us int64) float64 { return float64(us) / 1000 }

func fmtAxis(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	default:
		return fmt.Sprintf("%g", v)
	}
}
