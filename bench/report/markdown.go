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
		fmt.Fprintf(b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			mdEscape(s.Name), s.RPS,
			fmtMillis(float64(l.P50)), fmtMillis(float64(l.P90)), fmtMillis(float64(l.P99)),
			fmtMillis(float64(l.P999)), fmtMillis(float64(l.Max)),
			cpuReq, cpu10k, rss, fmtRatio(s.RPSRatio), fmtRatio(s.P99Ratio),
			fmtErrors(&s))
	}
	b.WriteString("\nLatencies in milliseconds. Errors: requests with no response plus non-2xx responses (share of all requests). ")
	b.WriteString("CPU and peak RSS are the proxy's (all processes of its group, summed over the processes of a chain); the direct path has none.\n")
	var protos []string
	for _, s := range r.Measured() {
		if s.Protocol != "" && s.Protocol != "http1" {
			protos = append(protos, mdEscape(s.Name)+" "+s.Protocol)
		}
	}
	if len(protos) > 0 {
		b.WriteString("\nNot HTTP/1.1: " + strings.Join(protos, ", ") + ". h2c and grpc-unary put the requests in flight on a few connections; " +
			"grpc-unary counts a call as a request, grpc-stream one message answered on a single stream (CPU µs per message). " +
			"No ratio against the baseline where the units differ.\n")
	}

	var compared []Scenario
	for _, s := range r.Measured() {
		if s.Compare != "" && s.CompareRPSRatio > 0 {
			compared = append(compared, s)
		}
	}
	if len(compared) > 0 {
		b.WriteString("\n### Against the scenario each one adds to (same run)\n\n")
		b.WriteString("| scenario | compared with | rps × | p99 × | CPU µs/req × | errors | errors there |\n|---|---|---:|---:|---:|---:|---:|\n")
		byName := map[string]Scenario{}
		for _, s := range r.Measured() {
			byName[s.Name] = s
		}
		for _, s := range compared {
			base := byName[s.Compare]
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", mdEscape(s.Name), mdEscape(s.Compare),
				fmtRatio(s.CompareRPSRatio), fmtRatio(s.CompareP99Ratio), fmtRatio(s.CompareCPURatio),
				fmtErrors(&s), fmtErrors(&base))
		}
	}
	var ends []Scenario
	for _, s := range r.Measured() {
		if s.Client != nil || s.Upstream != nil {
			ends = append(ends, s)
		}
	}
	if len(ends) > 0 {
		b.WriteString("\n### Client and upstream CPU (each its own process)\n\n")
		b.WriteString("| scenario | client CPU µs/req | upstream CPU µs/req | proxy CPU µs/req | direct's client+upstream | proxy × that | added by the proxy (all processes) | added × that |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range ends {
			client, up, proxy := "–", "–", "–"
			if s.Client != nil {
				client = fmt.Sprintf("%.1f", s.Client.MicrosPerRequest)
			}
			if s.Upstream != nil {
				up = fmt.Sprintf("%.1f", s.Upstream.MicrosPerRequest)
			}
			if s.CPU != nil {
				proxy = fmt.Sprintf("%.1f", s.CPU.MicrosPerRequest)
			}
			direct, proxyX, added, addedX := "–", "–", "–", "–"
			if e := s.Endpoints; e != nil {
				direct = fmt.Sprintf("%.1f", e.Direct)
				proxyX = fmtRatio(e.ProxyRatio)
				added = fmt.Sprintf("%.1f", e.Added)
				addedX = fmtRatio(e.AddedRatio)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", mdEscape(s.Name), client, up, proxy, direct, proxyX, added, addedX)
		}
		b.WriteString("\nThe load generator's and the upstream's own CPU per request over the same window (each a separate process, read from /proc). " +
			"\"direct's client+upstream\" is that sum on the direct scenario the row compares with; \"proxy × that\" is the proxy's CPU per request against it " +
			"(the target \"within 1.5x of direct's client+server\" reads this column); \"added by the proxy\" is the proxy's CPU plus the change in the client's and upstream's.\n")
	}
	var faulted []Scenario
	for _, s := range r.Measured() {
		if s.Fault != nil {
			faulted = append(faulted, s)
		}
	}
	if len(faulted) > 0 {
		b.WriteString("\n### Faults\n\n")
		b.WriteString("| scenario | fault | at | failed requests | time to recover |\n|---|---|---:|---:|---:|\n")
		for _, s := range faulted {
			recovery := "nothing failed after it"
			if s.Fault.FailedAfter {
				recovery = fmtMillis(float64(s.Fault.Recovery)*1e6) + " ms"
			}
			fmt.Fprintf(b, "| %s | %s | %.2f s | %s | %s |\n", mdEscape(s.Name), mdEscape(s.Fault.Description),
				float64(s.Fault.At), fmtErrors(&s), recovery)
		}
		b.WriteString("\nTime to recover: from the fault to the last request that failed (no response, or not 2xx).\n")
	}
	var split []Scenario
	for _, s := range r.Measured() {
		if s.CPU != nil && len(s.CPU.Each) > 1 {
			split = append(split, s)
		}
	}
	if len(split) > 0 {
		b.WriteString("\n### CPU by process\n\n")
		for _, s := range split {
			parts := make([]string, len(s.CPU.Each))
			for i, p := range s.CPU.Each {
				parts[i] = fmt.Sprintf("%s %.1f µs/req (%s)", mdEscape(p.Name), p.MicrosPerRequest, fmtBytes(p.PeakRSSBytes))
			}
			fmt.Fprintf(b, "- %s: %s\n", mdEscape(s.Name), strings.Join(parts, " + "))
		}
	}

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

// fmtErrors is the failed-request count with its share when non-zero.
func fmtErrors(s *Scenario) string {
	n := s.Failed()
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.2f%%)", n, 100*s.ErrorRate())
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
