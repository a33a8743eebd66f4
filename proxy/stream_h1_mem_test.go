package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestH1DownloadFigures measures what docs/benchmarks.md reports for
// streamed HTTP/1.1 bodies: the process's peak RSS while N clients each
// download S MiB through weft at once (no body filter), and the
// throughput of one large download through weft against the upstream
// directly. The upstream, the clients and weft share this process, so the
// RSS is an upper bound for weft's. It moves gigabytes: run it on demand,
//
//	WEFT_DOWNLOAD_FIGURES=100x100,1024 go test -count=1 -run TestH1DownloadFigures -v ./proxy/
//
// (100 clients × 100 MiB, then one 1024 MiB download). With
// WEFT_DOWNLOAD_CHUNK=KiB the upstream answers chunked, in chunks of that
// size, instead of with a Content-Length.
func TestH1DownloadFigures(t *testing.T) {
	spec := os.Getenv("WEFT_DOWNLOAD_FIGURES")
	if spec == "" {
		t.Skip("set WEFT_DOWNLOAD_FIGURES=NxMiB,MiB to measure")
	}
	var n, mib, big int
	if _, err := fmt.Sscanf(strings.Replace(spec, ",", " ", 1), "%dx%d %d", &n, &mib, &big); err != nil {
		t.Fatalf("WEFT_DOWNLOAD_FIGURES=%q: %v", spec, err)
	}
	block := []byte(strings.Repeat("0123456789abcdef", 4096)) // 64 KiB
	chunk, _ := strconv.Atoi(os.Getenv("WEFT_DOWNLOAD_CHUNK"))
	chunk <<= 10
	if chunk > 0 {
		block = []byte(strings.Repeat("0123456789abcdef", chunk/16))
	}
	addr := bodyUpstream(t, func(c net.Conn) {
		size := int64(mib) << 20
		if big > 0 && sizeFor.Load() != 0 {
			size = sizeFor.Load()
		}
		if chunk > 0 {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
			for size > 0 {
				b := block[:min(int64(len(block)), size)]
				bufs := net.Buffers{[]byte(strconv.FormatInt(int64(len(b)), 16) + "\r\n"), b, []byte("\r\n")}
				if _, err := bufs.WriteTo(c); err != nil {
					return
				}
				size -= int64(len(b))
			}
			_, _ = io.WriteString(c, "0\r\n\r\n")
			return
		}
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", size)
		for size > 0 {
			b := block
			if int64(len(b)) > size {
				b = b[:size]
			}
			if _, err := c.Write(b); err != nil {
				return
			}
			size -= int64(len(b))
		}
	})
	_, url := startProxy(t, plainConfig, map[string]string{"up": addr})
	proxyAddr := strings.TrimPrefix(url, "http://")

	download := func(target string) (int64, error) {
		c, err := net.Dial("tcp", target)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /f HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		buf := make([]byte, 64<<10)
		return io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
	}

	runtime.GC()
	base := rssKiB(t, "VmRSS")
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if v := rssKiB(t, "VmRSS"); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int32
	var total atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := download(proxyAddr)
			total.Add(got)
			if err != nil || got != int64(mib)<<20 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	d := time.Since(start)
	t.Logf("%d concurrent %d MiB downloads through weft: %d failed, %.0f MiB/s aggregate, RSS before %d MiB, peak %d MiB",
		n, mib, failed.Load(), float64(total.Load())/(1<<20)/d.Seconds(), base>>10, peak.Load()>>10)
	if failed.Load() != 0 {
		t.Fatal("downloads failed")
	}
	if big > 0 {
		sizeFor.Store(int64(big) << 20)
		defer sizeFor.Store(0)
		mib = big
		runFigureLegs(t, "download", big, addr, proxyAddr, func(target string) error {
			got, err := download(target)
			if err == nil && got != int64(big)<<20 {
				err = fmt.Errorf("%d bytes", got)
			}
			return err
		})
	}
}

// figureLegs is the order of the large transfers: direct, weft, direct,
// weft (WEFT_FIGURES_PAIRS=N: N such pairs); or, with
// WEFT_FIGURES_LEGS=direct or =weft, that one path once (to count one
// transfer's syscalls, strace -c -f).
func figureLegs(direct, weft string) []struct{ name, addr string } {
	switch os.Getenv("WEFT_FIGURES_LEGS") {
	case "direct":
		return []struct{ name, addr string }{{"direct", direct}}
	case "weft":
		return []struct{ name, addr string }{{"weft", weft}}
	}
	pairs := 2
	if n, err := strconv.Atoi(os.Getenv("WEFT_FIGURES_PAIRS")); err == nil && n > 0 {
		pairs = n
	}
	var legs []struct{ name, addr string }
	for range pairs {
		legs = append(legs, struct{ name, addr string }{"direct", direct}, struct{ name, addr string }{"weft", weft})
	}
	return legs
}

// runFigureLegs moves mib MiB once per leg of figureLegs with one, and
// logs each leg's rate and the process's CPU time for it (client,
// upstream and weft together: a weft leg's less the direct leg's is
// weft's own), then, over the pairs, the median of each weft leg's rate
// over the direct leg's just before it, which swings with the direct
// leg from one transfer to the next on a shared machine.
func runFigureLegs(t *testing.T, kind string, mib int, direct, weft string, one func(target string) error) {
	t.Helper()
	var ratios, own []float64
	var lastRate, lastCPU float64
	for _, leg := range figureLegs(direct, weft) {
		cpu0, s := processCPU(), time.Now()
		if err := one(leg.addr); err != nil {
			t.Fatalf("%s: %v", leg.name, err)
		}
		rate := float64(mib) / time.Since(s).Seconds()
		cpu := float64(processCPU()-cpu0) / float64(time.Millisecond) * 1024 / float64(mib)
		t.Logf("one %d MiB %s %s: %.0f MiB/s, process CPU %.0f ms per GiB", mib, kind, leg.name, rate, cpu)
		if leg.name == "direct" {
			lastRate, lastCPU = rate, cpu
		} else if lastRate > 0 {
			ratios = append(ratios, 100*rate/lastRate)
			own = append(own, cpu-lastCPU)
			lastRate = 0
		}
	}
	if len(ratios) > 0 {
		t.Logf("%s, weft ÷ direct over %d pairs: %s%%, median %.0f%%; weft's own CPU per GiB: %s ms, median %.0f ms",
			kind, len(ratios), figureList(ratios), figureMedian(ratios), figureList(own), figureMedian(own))
	}
}

func figureMedian(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func figureList(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, ", ")
}

// sizeFor overrides the figures upstream's body size (the large download).
var sizeFor atomic.Int64

// rssKiB reads a Vm* line of /proc/self/status, in KiB.
func rssKiB(t *testing.T, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// TestH1EventLatencyFigures measures how long an SSE event takes from the
// upstream's write to the client's read through weft (chunked), over 200
// events 5 ms apart. Run with WEFT_DOWNLOAD_FIGURES set, as above.
func TestH1EventLatencyFigures(t *testing.T) {
	if os.Getenv("WEFT_DOWNLOAD_FIGURES") == "" {
		t.Skip("set WEFT_DOWNLOAD_FIGURES to measure")
	}
	const events = 200
	sent := make(chan time.Time, events)
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < events; i++ {
			time.Sleep(5 * time.Millisecond)
			ev := fmt.Sprintf("data: %d\n\n", i)
			sent <- time.Now()
			if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev); err != nil {
				return
			}
		}
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
	_, url := startProxy(t, plainConfig, map[string]string{"up": addr})
	resp, _ := streamGet(t, url, "/events")
	br := bufio.NewReader(resp.Body)
	lat := make([]time.Duration, 0, events)
	for i := 0; i < events; i++ {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\n" {
				break
			}
		}
		lat = append(lat, time.Since(<-sent))
	}
	slices.Sort(lat)
	t.Logf("SSE event upstream write -> client read through weft, %d events: p50 %v, p99 %v, max %v",
		events, lat[events/2], lat[events*99/100], lat[events-1])
}

// TestH1UploadFigures is TestH1DownloadFigures for streamed request
// bodies: the process's peak RSS while N clients each upload S MiB
// through weft at once (generated as they are sent, chunked, no body
// filter; the upstream discards them), then one large upload through weft
// against the upstream directly. On demand:
//
//	WEFT_UPLOAD_FIGURES=16x256,1024 go test -count=1 -run TestH1UploadFigures -v ./proxy/
//
// With WEFT_UPLOAD_WRITE_FIRST=1 a client writes its whole body before it
// reads the answer (as the run that once saw uploads reset did), instead
// of reading while it writes. Failures log the client's error, and weft's
// counters of answers and upstream failures are logged after the run.
func TestH1UploadFigures(t *testing.T) {
	spec := os.Getenv("WEFT_UPLOAD_FIGURES")
	if spec == "" {
		t.Skip("set WEFT_UPLOAD_FIGURES=NxMiB,MiB to measure")
	}
	var n, mib, big int
	if _, err := fmt.Sscanf(strings.Replace(spec, ",", " ", 1), "%dx%d %d", &n, &mib, &big); err != nil {
		t.Fatalf("WEFT_UPLOAD_FIGURES=%q: %v", spec, err)
	}
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r.Body}, make([]byte, 64<<10))
		if err != nil {
			return 500, err.Error()
		}
		return 200, strconv.FormatInt(got, 10)
	})
	p, url := startProxy(t, uploadConfig, uploadVars(addr, "max", strconv.Itoa(64<<30)))
	proxyAddr := strings.TrimPrefix(url, "http://")
	block := []byte(strings.Repeat("0123456789abcdef", 4096)) // 64 KiB
	writeFirst := os.Getenv("WEFT_UPLOAD_WRITE_FIRST") != ""
	// WEFT_UPLOAD_CL=1 sends Content-Length bodies instead of chunked ones.
	withLength := os.Getenv("WEFT_UPLOAD_CL") != ""
	defer logCounters(t, p, "weft_requests_total", "weft_upstream_failures_total", "weft_upstream_retries_total", "weft_upstream_timeouts_total", "weft_downstream_refused_total")

	send := func(target string, size int64) error {
		c, err := net.Dial("tcp", target)
		if err != nil {
			return err
		}
		defer c.Close()
		framing := "Transfer-Encoding: chunked"
		if withLength {
			framing = "Content-Length: " + strconv.FormatInt(size, 10)
		}
		if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: svc\r\n"+framing+"\r\n\r\n"); err != nil {
			return err
		}
		werr := make(chan error, 1)
		write := func() {
			bw := bufio.NewWriterSize(c, 80<<10)
			for left := size; left > 0; {
				b := block
				if int64(len(b)) > left {
					b = b[:left]
				}
				if withLength {
					_, _ = bw.Write(b)
				} else {
					_, _ = fmt.Fprintf(bw, "%x\r\n", len(b))
					_, _ = bw.Write(b)
					_, _ = bw.WriteString("\r\n")
				}
				left -= int64(len(b))
			}
			if !withLength {
				_, _ = bw.WriteString("0\r\n\r\n")
			}
			werr <- bw.Flush()
		}
		if writeFirst {
			write()
			if err := <-werr; err != nil {
				return fmt.Errorf("writing the body: %w", err)
			}
			werr <- nil
		} else {
			go write()
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return fmt.Errorf("reading the answer: %w", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != strconv.FormatInt(size, 10) {
			return fmt.Errorf("%d %q %v", resp.StatusCode, b, resp.Header)
		}
		return <-werr
	}

	runtime.GC()
	base := rssKiB(t, "VmRSS")
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if v := rssKiB(t, "VmRSS"); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := send(proxyAddr, int64(mib)<<20); err != nil {
				t.Log(err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	d := time.Since(start)
	t.Logf("%d concurrent %d MiB uploads through weft: %d failed, %.0f MiB/s aggregate, RSS before %d MiB, peak %d MiB",
		n, mib, failed.Load(), float64(n*mib)/d.Seconds(), base>>10, peak.Load()>>10)
	if failed.Load() != 0 {
		t.Fatal("uploads failed")
	}
	if big > 0 {
		runFigureLegs(t, "upload", big, addr, proxyAddr, func(target string) error {
			return send(target, int64(big)<<20)
		})
	}
}

// logCounters logs the non-zero series of the named metric families.
func logCounters(t *testing.T, p *Proxy, names ...string) {
	mfs, err := p.Metrics().Registry().Gather()
	if err != nil {
		t.Log(err)
		return
	}
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				t.Logf("%s{%s} %v", mf.GetName(), strings.Join(labels, ","), v)
			}
		}
	}
}
