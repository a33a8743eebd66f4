package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Markdown writes the report as a markdown document: settings, one table
// row per measured scenario, then the skipped and failed ones with reasons.
func (r *Report) Markdown(w io.Writer) error {
	b := bufio.NewWriter(w)
	title := r.Title
	if title == "" {
		title = "Weft benchmark"
	}
	fmt.Fprintf(b, "# %s\n\n", title)
	st := r.Settings
	load := fmt.Sprintf("closed loop, %d connections", st.Connections)
	if st.Mode == "open" {
		load = fmt.Sprintf("open loop, %.0f req/s over %d workers (latency from intended send time)", st.Rate, st.Connections)
	}
	fmt.Fprintf(b, "- started %s on %s/%s, %d CPUs, %s", r.Started.Format("2006-01-02 15:04:05 MST"), r.Host.OS, r.Host.Arch, r.Host.CPUs, r.Host.GoVersion)
	if r.Host.Kernel != "" {
		fmt.Fprintf(b, ", kernel %s", r.Host.Kernel)
	}
	fmt.Fprintf(b, "\n- load: %s; warm-up %gs, measured %gs (at most %d requests)\n", load, float64(st.Warmup), float64(st.Duration), st.MaxRequests)
	fmt.Fprintf(b, "- upstream: %d-byte bodies", st.BodySize)
	if st.Delay > 0 {
		fmt.Fprintf(b, ", %s delay", fmtMillis(float64(st.Delay)*1e6))
	}
	b.WriteString("\n")
	if st.Pinned {
		fmt.Fprintf(b, "- pinned: load generator on CPU %s, proxy and upstream on CPU %s\n", st.LoadCPUs, st.ServerCPUs)
	} else {
		b.WriteString("- not pinned: load generator, proxy and upstream share the CPUs\n")
	}
	if st.Quick {
		b.WriteString("- quick mode: checks that the harness works; the figures are not a measurement\n")
	}
	b.WriteString("\n")

	base := r.Baseline
	if base == "" {
		base = "baseline"
	}
	b.WriteString("| scenario | rps | p50 | p90 | p99 | p99.9 | max | CPU µs/req | CPU s/10k | peak RSS | rps × " + base + " | p99 × " + base + " | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Measured() {
		l := s.Latency
		cpuReq, cpu10k, rss := "–", "–", "–"
		if s.CPU != nil {
			cpuReq = fmt.Sprintf("%.1f", s.CPU.MicrosPerRequest)
			cpu10k = fmt.Sprintf("%.3f", s.CPU.SecondsPer10k)
			rss = fmtBytes(s.CPU.PeakRSSBytes)
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n",
			mdEscape(s.Name), s.RPS,
			fmtMillis(float64(l.P50)), fmtMillis(float64(l.P90)), fmtMillis(float64(l.P99)),
			fmtMillis(float64(l.P999)), fmtMillis(float64(l.Max)),
			cpuReq, cpu10k, rss, fmtRatio(s.RPSRatio), fmtRatio(s.P99Ratio),
			s.Errors.Total()+s.Statuses.Non2xx())
	}
	b.WriteString("\nLatencies in milliseconds. Errors: requests with no response plus non-2xx responses. ")
	b.WriteString("CPU and peak RSS are the proxy's (all processes of its group); the direct path has none.\n")

	if st.Mode == "open" {
		b.WriteString("\n### Service time (open loop, from the actual send; not corrected for coordinated omission)\n\n")
		b.WriteString("| scenario | p50 | p90 | p99 | p99.9 | max | dropped |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range r.Measured() {
			if l := s.ServiceTime; l != nil {
				fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %d |\n", mdEscape(s.Name),
					fmtMillis(float64(l.P50)), fmtMillis(float64(l.P90)), fmtMillis(float64(l.P99)),
					fmtMillis(float64(l.P999)), fmtMillis(float64(l.Max)), s.Dropped)
			}
		}
		b.WriteString("\nThe main table's latencies count from each request's intended send time. Dropped: sends still queued when the run stopped.\n")
	}

	var others []Scenario
	for _, s := range r.Scenarios {
		if !s.OK() {
			others = append(others, s)
		}
	}
	if len(others) > 0 {
		b.WriteString("\n## Not measured\n\n")
		for _, s := range others {
			fmt.Fprintf(b, "- %s: %s — %s\n", mdEscape(s.Name), s.Status, mdEscape(s.Reason))
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(b, "- %s\n", mdEscape(n))
		}
	}
	return b.Flush()
}

// fmtMillis formats microseconds as milliseconds with about three
// significant digits.
func fmtMillis(us float64) string {
	ms := us / 1000
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3f", ms)
	case ms < 10:
		return fmt.Sprintf("%.2f", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f", ms)
	default:
		return fmt.Sprintf("%.0f", ms)
	}
}

func fmtRatio(x float64) string {
	if x == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", x)
}

func fmtBytes(n int64) string {
	switch {
	case n <= 0:
		return "–"
	case n < 1<<20:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
