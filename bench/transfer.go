package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/bench/proc"
	"github.com/weftmesh/weft/bench/upstream"
	"github.com/weftmesh/weft/proxy/config"
)

// transferCommand is `weft bench transfer`: one large HTTP/1.1 transfer at
// a time (1 GiB by default), directly from the bench upstream and through
// `weft proxy`, in alternating pairs, each party its own process: the
// upstream (`weft bench upstream`, a Content-Length body written 256 KiB at
// a time, or a POST body read to its end), weft (no filter), and a client
// process per transfer (`weft bench transfer-client`, large reads and
// writes on a plain socket). It prints, per pair, each leg's MiB/s and the
// ratio, and each process's CPU per GiB; then the medians. Issue 18's
// figure: a 1 GiB transfer through weft at ≥ 80% of direct.
func transferCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("weft bench transfer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: weft bench transfer [flags]\n\nOne large transfer at a time, directly and through weft, in alternating pairs;\neach party (upstream, weft, client) its own process.\n\nflags:\n")
		fs.PrintDefaults()
	}
	sizeMiB := fs.Int("mib", 1024, "MiB per transfer")
	pairs := fs.Int("pairs", 5, "direct/weft pairs per direction (the order alternates pair by pair)")
	dirs := fs.String("dir", "download,upload", "directions: download, upload or both (comma-separated)")
	ioSize := fs.Int("io-size", 256<<10, "the client's read (download) or write (upload) size in bytes")
	pin := fs.Bool("pin", false, "pin each process with taskset to -client-cpus, -upstream-cpus and -weft-cpus")
	clientCPUs := fs.String("client-cpus", "0", "CPU list for the client with -pin")
	upstreamCPUs := fs.String("upstream-cpus", "1", "CPU list for the upstream with -pin")
	weftCPUs := fs.String("weft-cpus", "1", "CPU list for weft with -pin (default: beside the upstream, as a sidecar shares its pod's CPUs)")
	weftBin := fs.String("weft-bin", "", "weft binary for `weft proxy` (default: go build ./cmd/weft once)")
	selfBin := fs.String("self-bin", "", "binary that runs `bench upstream` and `bench transfer-client` (default: this one)")
	timeout := fs.Duration("timeout", 5*time.Minute, "per transfer")
	peerList := fs.String("peers", "", "also through these proxies, each a leg of every pair (comma-separated): "+strings.Join(transferPeers, ", "))
	keep := fs.Bool("keep", false, "keep the temp dir with the config and process logs, and print its path")
	remote := fs.Bool("remote-netns", false, "run the upstream in a network namespace of its own behind a veth pair (root; ip), as an upstream on another host: the client reaches weft on loopback, weft and the direct leg reach the upstream over the veth")
	linkRate := fs.String("link-rate", "", "with -remote-netns: shape the veth to this rate in both directions with tc tbf (e.g. 25gbit, 10gbit, 1gbit; default unshaped)")
	linkDelay := fs.Duration("link-delay", 0, "with -remote-netns: add this one-way delay on each side with tc netem (needs sch_netem)")
	linkRPS := fs.Bool("link-rps", true, "with -remote-netns: steer each veth end's receive work by flow hash over all CPUs (RPS), as a NIC with RSS keeps a flow on one CPU; false: on the CPU that sent it, which a shaped veth reorders")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("weft bench transfer: unexpected argument %q", fs.Arg(0))
	}
	if *sizeMiB < 1 || *pairs < 1 || *ioSize < 1 {
		return errors.New("weft bench transfer: -mib, -pairs and -io-size must be at least 1")
	}
	var directions []string
	for _, d := range strings.Split(*dirs, ",") {
		switch d = strings.TrimSpace(d); d {
		case "download", "upload":
			directions = append(directions, d)
		case "":
		default:
			return fmt.Errorf("weft bench transfer: -dir: %q is not download or upload", d)
		}
	}
	if len(directions) == 0 {
		return errors.New("weft bench transfer: -dir: none selected")
	}
	link, err := parseLinkFlags(*remote, *linkRate, *linkDelay, *linkRPS)
	if err != nil {
		return err
	}
	peers, err := parsePeers(*peerList)
	if err != nil {
		return err
	}
	if *selfBin == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("weft bench transfer: %w", err)
		}
		*selfBin = self
	}
	tmp, err := os.MkdirTemp("", "weft-bench-transfer-")
	if err != nil {
		return fmt.Errorf("weft bench transfer: %w", err)
	}
	if *keep {
		defer fmt.Fprintf(stderr, "weft bench transfer: config and logs kept in %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	logger := newLogger(stderr, 0)
	defer func() { _ = logger.Sync() }()
	if link != nil && *pin {
		link.hostCPUs, link.nsCPUs = *clientCPUs+","+*weftCPUs, *upstreamCPUs
	}
	if link != nil {
		// Registered before the processes' stop, so it runs after it: the
		// namespace goes once nothing runs in it. An interrupt cancels ctx
		// (Command's signal handling) and returns through here too.
		defer func() {
			if terr := link.teardown(); terr != nil {
				err = errors.Join(err, terr)
			}
		}()
		if err := link.setup(ctx, stderr); err != nil {
			return err
		}
	}
	r := &runner{opts: Options{Pin: *pin, WeftBin: *weftBin, SelfBin: *selfBin, Logger: logger}, tmp: tmp}
	env := &Env{Dir: tmp, Logger: logger, name: "transfer", r: r}
	defer func() {
		if cerr := env.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("weft bench transfer: stopping: %w", cerr))
		}
	}()

	// The upstream, then weft, each on its own CPUs when pinning.
	r.opts.ServerCPUs = *upstreamCPUs
	var up *proc.Process
	var upAddr string
	if link != nil {
		up, upAddr, err = env.startRemoteUpstream(ctx, link, upstream.Config{StreamRequests: true})
	} else {
		up, upAddr, err = env.StartUpstreamProcess(ctx, "upstream", upstream.Config{StreamRequests: true})
	}
	if err != nil {
		return err
	}
	r.opts.ServerCPUs = *weftCPUs
	listen, weft, err := env.startWeftFor(ctx, upAddr, func(cfg *config.Config) {
		// A slow transfer on a loaded machine must not meet the 15 s default.
		cfg.Listeners[0].VirtualHosts[0].Routes[0].Route.Timeout = config.Duration(time.Hour)
		// An upload's Content-Length must be under the listener's body limit
		// (4 MiB by default); a streamed body is never held whole.
		cfg.Listeners[0].Limits.MaxBodyBytes = *sizeMiB<<20 + 1
	})
	if err != nil {
		return err
	}

	// The peers share weft's CPUs when pinning: each stands where weft does.
	peerAddr, peerProc := map[string]string{}, map[string]*proc.Process{}
	for _, name := range peers {
		addr, p, err := startTransferPeer(ctx, env, name, upAddr)
		if err != nil {
			return fmt.Errorf("weft bench transfer: -peers %s: %w", name, err)
		}
		peerAddr[name], peerProc[name] = addr, p
	}

	t := &transferRun{
		self: *selfBin, size: int64(*sizeMiB) << 20, ioSize: *ioSize, timeout: *timeout,
		upstream: up, weft: weft, dir: tmp, stderr: stderr, remote: link != nil,
	}
	if *pin {
		t.clientCPUs = *clientCPUs
	}
	placement := "unpinned"
	if *pin {
		placement = fmt.Sprintf("pinned: client CPU %s, upstream CPU %s, weft CPU %s", *clientCPUs, *upstreamCPUs, *weftCPUs)
	}
	fmt.Fprintf(stdout, "weft bench transfer: %d MiB per transfer, %d pairs, client I/O %d KiB, %s; load average %s\n",
		*sizeMiB, *pairs, *ioSize>>10, placement, loadAverage())
	if link != nil {
		fmt.Fprintf(stdout, "%s; weft on 127.0.0.1\n", link.describe())
	}
	for _, d := range directions {
		var res []transferPair
		legs := append([]string{"direct", "weft"}, peers...)
		for i := 0; i < *pairs; i++ {
			// Each pair starts one leg later than the last: with direct and
			// weft alone, direct first in odd pairs and weft first in even.
			order := append(append([]string(nil), legs[i%len(legs):]...), legs[:i%len(legs)]...)
			p := transferPair{peers: map[string]transferLeg{}}
			for _, leg := range order {
				var addr string
				var via *proc.Process
				switch leg {
				case "direct":
					addr = upAddr
				case "weft":
					addr = listen
				default:
					addr, via = peerAddr[leg], peerProc[leg]
				}
				m, err := t.one(ctx, d, addr, leg == "weft", via)
				if err != nil {
					return fmt.Errorf("weft bench transfer: %s %s, pair %d: %w", d, leg, i+1, err)
				}
				fmt.Fprintf(stderr, "%s pair %d %s: %.0f MiB/s\n", d, i+1, leg, m.mibps())
				switch leg {
				case "direct":
					p.direct = m
				case "weft":
					p.weft = m
				default:
					p.peers[leg] = m
				}
			}
			res = append(res, p)
		}
		writeTransferTable(stdout, d, t.size, res, link != nil)
		for _, name := range peers {
			writePeerTable(stdout, d, name, res)
		}
	}
	fmt.Fprintf(stdout, "load average after: %s\n", loadAverage())
	return nil
}

// transferRun runs one transfer at a time and measures it.
type transferRun struct {
	self           string
	size           int64
	ioSize         int
	timeout        time.Duration
	clientCPUs     string
	upstream, weft *proc.Process
	dir            string
	stderr         io.Writer
	// remote: the upstream is in its own network namespace, whose TCP
	// counters are its own (/proc/PID/net/snmp).
	remote bool
}

// transferLeg is one measured transfer.
type transferLeg struct {
	elapsed time.Duration
	bytes   int64
	// CPU of each process over the transfer; weft's is zero on a direct leg
	// (sampled anyway: an idle weft).
	client, upstream, weft time.Duration
	// retrans is how many TCP segments the host retransmitted during the
	// transfer (/proc/net/snmp: every socket's, so only ours on a quiet
	// machine); on loopback they are tail-loss probes fired because an ACK
	// came late, i.e. a party was not running (-1: unknown).
	retrans int64
	// host is the busy time of all CPUs during the transfer (/proc/stat:
	// every process's, and softirq work charged to none, such as a
	// steered packet's on an idle CPU); shown with -remote-netns.
	host time.Duration
	// peer is the CPU of the peer proxy a -peers leg went through.
	peer time.Duration
}

func (m transferLeg) mibps() float64 {
	return float64(m.bytes) / (1 << 20) / m.elapsed.Seconds()
}

// perGiB scales a CPU time to one GiB moved.
func (m transferLeg) perGiB(d time.Duration) time.Duration {
	return time.Duration(float64(d) * float64(1<<30) / float64(m.bytes))
}

type transferPair struct {
	direct, weft transferLeg
	peers        map[string]transferLeg // -peers legs, by name
}

// transferClientResult is what `weft bench transfer-client` prints.
type transferClientResult struct {
	Bytes     int64 `json:"bytes"`
	ElapsedNS int64 `json:"elapsed_ns"`
	CPUNS     int64 `json:"cpu_ns"`
}

// usage reads the upstream's, weft's and (if not nil) via's CPU so far.
func (t *transferRun) usage(via *proc.Process) (up, weft, peer proc.Usage, err error) {
	if up, err = t.upstream.Usage(); err != nil {
		return
	}
	if weft, err = t.weft.Usage(); err != nil {
		return
	}
	if via != nil {
		peer, err = via.Usage()
	}
	return
}

// one runs one transfer to addr: the upstream, weft (viaWeft) or a peer
// proxy (via, whose CPU it measures).
func (t *transferRun) one(ctx context.Context, dir, addr string, viaWeft bool, via *proc.Process) (transferLeg, error) {
	var out, errb bytes.Buffer
	spec := proc.Spec{
		Name: "client", Path: t.self, Dir: t.dir, CPUs: t.clientCPUs, Stdout: &out, Stderr: &errb,
		Args: []string{"bench", "transfer-client", "-addr", addr, "-dir", dir,
			"-size", strconv.FormatInt(t.size, 10), "-io-size", strconv.Itoa(t.ioSize)},
	}
	u0, w0, v0, err := t.usage(via)
	if err != nil {
		return transferLeg{}, err
	}
	r0, h0 := t.retrans(), hostBusy()
	p, err := proc.Start(spec)
	if err != nil {
		return transferLeg{}, err
	}
	timer := time.NewTimer(t.timeout)
	defer timer.Stop()
	select {
	case <-p.Exited():
	case <-timer.C:
		_ = p.Stop(stopGrace)
		return transferLeg{}, fmt.Errorf("no answer within %s", t.timeout)
	case <-ctx.Done():
		_ = p.Stop(stopGrace)
		return transferLeg{}, ctx.Err()
	}
	_ = p.Stop(stopGrace) // reaps; the client has exited
	r1, h1 := t.retrans(), hostBusy()
	u1, w1, v1, err := t.usage(via)
	if err != nil {
		return transferLeg{}, err
	}
	if err := p.ExitErr(); err != nil {
		return transferLeg{}, fmt.Errorf("client: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	var res transferClientResult
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &res); err != nil {
		return transferLeg{}, fmt.Errorf("client printed %q: %w", out.String(), err)
	}
	if res.Bytes != t.size || res.ElapsedNS <= 0 {
		return transferLeg{}, fmt.Errorf("client moved %d bytes in %d ns, want %d bytes", res.Bytes, res.ElapsedNS, t.size)
	}
	m := transferLeg{
		elapsed: time.Duration(res.ElapsedNS), bytes: res.Bytes, client: time.Duration(res.CPUNS),
		upstream: u1.CPU - u0.CPU, weft: w1.CPU - w0.CPU, retrans: -1, host: -1, peer: v1.CPU - v0.CPU,
	}
	if h0 >= 0 && h1 >= h0 {
		m.host = h1 - h0
	}
	if r0 >= 0 && r1 >= r0 {
		m.retrans = r1 - r0
	}
	if !viaWeft && m.weft > 20*time.Millisecond {
		fmt.Fprintf(t.stderr, "note: weft used %v of CPU during a direct transfer\n", m.weft)
	}
	return m, nil
}

// retrans is the TCP segments retransmitted so far by the host's sockets
// and, with the upstream in its own namespace, by the namespace's (-1 if
// unknown).
func (t *transferRun) retrans() int64 {
	n := retransSegs("/proc/net/snmp")
	if !t.remote || n < 0 {
		return n
	}
	m := retransSegs(fmt.Sprintf("/proc/%d/net/snmp", t.upstream.PID()))
	if m < 0 {
		return -1
	}
	return n + m
}

func writeTransferTable(w io.Writer, dir string, size int64, res []transferPair, remote bool) {
	where := "the host's, /proc/net/snmp"
	if remote {
		where = "the host's and the upstream namespace's, /proc/net/snmp and /proc/UPSTREAM/net/snmp"
	}
	fmt.Fprintf(w, "\n%s, %d MiB each (CPU per GiB: /proc of the upstream and weft, getrusage of the client; retransmits: %s)\n\n", dir, size>>20, where)
	head, rule := "| pair | direct MiB/s | weft MiB/s | weft ÷ direct | direct CPU ms/GiB: client · upstream | weft leg CPU ms/GiB: client · upstream · weft | TCP retransmits: direct · weft |", "|---|---:|---:|---:|---|---|---|"
	if remote {
		head, rule = head+" all CPUs busy ms/GiB: direct · weft |", rule+"---|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	var ratios, dRates, wRates, weftCPU, dTotal, wTotal []float64
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for i, p := range res {
		ratio := p.weft.mibps() / p.direct.mibps()
		ratios = append(ratios, ratio)
		dRates = append(dRates, p.direct.mibps())
		wRates = append(wRates, p.weft.mibps())
		weftCPU = append(weftCPU, ms(p.weft.perGiB(p.weft.weft)))
		dTotal = append(dTotal, ms(p.direct.perGiB(p.direct.client+p.direct.upstream)))
		wTotal = append(wTotal, ms(p.weft.perGiB(p.weft.client+p.weft.upstream+p.weft.weft)))
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %.0f%% | %.0f · %.0f | %.0f · %.0f · %.0f | %s · %s |", i+1,
			p.direct.mibps(), p.weft.mibps(), 100*ratio,
			ms(p.direct.perGiB(p.direct.client)), ms(p.direct.perGiB(p.direct.upstream)),
			ms(p.weft.perGiB(p.weft.client)), ms(p.weft.perGiB(p.weft.upstream)), ms(p.weft.perGiB(p.weft.weft)),
			count(p.direct.retrans), count(p.weft.retrans))
		if remote {
			busy := func(l transferLeg) string {
				if l.host < 0 {
					return "?"
				}
				return strconv.FormatFloat(ms(l.perGiB(l.host)), 'f', 0, 64)
			}
			fmt.Fprintf(w, " %s · %s |", busy(p.direct), busy(p.weft))
		}
		fmt.Fprintln(w)
	}
	over := 0
	for _, r := range ratios {
		if r >= 0.8 {
			over++
		}
	}
	fmt.Fprintf(w, "\n%s: weft ÷ direct median **%.0f%%** (%d of %d pairs ≥ 80%%); median MiB/s direct %.0f, weft %.0f; weft's own CPU %.0f ms/GiB (median); all processes %.0f ms/GiB direct, %.0f through weft (medians)\n",
		dir, 100*medianOf(ratios), over, len(ratios), medianOf(dRates), medianOf(wRates), medianOf(weftCPU), medianOf(dTotal), medianOf(wTotal))
}

// count is n, or "?" when unknown (negative).
func count(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// retransSegs is the TCP RetransSegs counter in an snmp file of /proc (a
// network namespace's; -1 if unknown).
func retransSegs(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RetransSegs" && i < len(f) {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					return -1
				}
				return v
			}
		}
	}
	return -1
}

// hostBusy is the time all CPUs together spent not idle (user, nice,
// system, irq, softirq; /proc/stat), or -1 if unknown.
func hostBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return -1
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return -1
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// transferClientCommand is `weft bench transfer-client`: one transfer on a
// plain socket, its size, time and this process's CPU as one JSON line.
// A download reads `GET /?stream=SIZE` (a Content-Length body) in -io-size
// reads; an upload sends `POST /?sink` with a SIZE-byte Content-Length body
// in -io-size writes and reads the upstream's count back.
func transferClientCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft bench transfer-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "host:port of the upstream or the proxy")
	dir := fs.String("dir", "download", "download or upload")
	size := fs.Int64("size", 1<<30, "body bytes")
	ioSize := fs.Int("io-size", 256<<10, "read or write size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || *size < 0 || *ioSize < 1 {
		return errors.New("weft bench transfer-client: need -addr, -size ≥ 0 and -io-size ≥ 1")
	}
	buf := make([]byte, *ioSize)
	for i := range buf {
		buf[i] = 'a' + byte(i%26)
	}
	cpu0, start := selfCPU(), time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
	}
	var n int64
	switch *dir {
	case "download":
		n, err = download(conn, *size, buf)
	case "upload":
		n, err = upload(conn, *size, buf)
	default:
		return fmt.Errorf("weft bench transfer-client: -dir %q: want download or upload", *dir)
	}
	elapsed, cpu := time.Since(start), selfCPU()-cpu0
	if err != nil {
		return fmt.Errorf("weft bench transfer-client: %s after %d bytes: %w", *dir, n, err)
	}
	b, err := json.Marshal(transferClientResult{Bytes: n, ElapsedNS: int64(elapsed), CPUNS: int64(cpu)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

// download asks for size bytes and reads them in len(buf) reads (a read
// that size or larger bypasses the bufio.Reader once its buffer is empty).
func download(conn net.Conn, size int64, buf []byte) (int64, error) {
	if _, err := fmt.Fprintf(conn, "GET /?stream=%d HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n", size); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 16<<10), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
		return 0, fmt.Errorf("status %d, Content-Length %d: want 200 and %d", resp.StatusCode, resp.ContentLength, size)
	}
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// upload sends size bytes to ?sink in len(buf) writes and checks the count
// the upstream answers with.
func upload(conn net.Conn, size int64, buf []byte) (int64, error) {
	if _, err := fmt.Fprintf(conn, "POST /?sink HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", size); err != nil {
		return 0, err
	}
	var n int64
	for n < size {
		p := buf
		if int64(len(p)) > size-n {
			p = p[:size-n]
		}
		m, err := conn.Write(p)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return n, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return n, err
	}
	if resp.StatusCode != http.StatusOK || string(body) != strconv.FormatInt(size, 10) {
		return n, fmt.Errorf("status %d, body %q: want 200 and %d", resp.StatusCode, body, size)
	}
	return n, nil
}
