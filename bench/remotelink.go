package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/bench/proc"
	"github.com/weftmesh/weft/bench/upstream"
)

// remoteLink is `weft bench transfer -remote-netns`: the upstream on
// "another host", i.e. in a network namespace of its own behind a veth
// pair, optionally shaped with tc in both directions. The client reaches
// weft on the host's loopback, as in a pod; weft (and the direct leg's
// client) reach the upstream over the veth, as a sidecar reaches a NIC.
type remoteLink struct {
	// rateBits is the shaped rate in bits per second (0: unshaped).
	rateBits int64
	// delay is added one way on each side with netem (0: none).
	delay time.Duration
	// rps spreads each veth end's receive work over every CPU by flow
	// hash (RPS), as a NIC with RSS does: a flow stays on one CPU and in
	// order. Without it a shaped veth reorders: tbf dequeues on whichever
	// CPU its timer or a sender runs, and veth hands each packet to that
	// CPU's backlog (917 spurious retransmits in 3 GiB at 25gbit).
	rps bool
	// hostCPUs and nsCPUs, when set (-pin), are CPU lists RPS steers
	// each end's receive work to instead of all CPUs: the host end's to
	// the client's and weft's CPUs, the namespace end's to the
	// upstream's, as two hosts each receive on their own CPUs.
	hostCPUs, nsCPUs string

	ns                string // the namespace's name, weft-remote-PID
	hostDev, nsDev    string // the veth ends, weftrPID and weftrPIDn
	hostAddr, nsAddr  netip.Addr
	ipPath, tcPath    string
	upstreamPort      int
	setUp, torndown   bool
	shapedDescription string
}

// remoteNamePrefix names every namespace this tool creates; the PID that
// follows is the creating process's, so that a run can tell a crashed
// run's leftovers (its PID is gone) from a concurrent run's.
const (
	remoteNamePrefix = "weft-remote-"
	remoteDevPrefix  = "weftr"
	remoteUpstream   = 8080
)

// remoteSubnet is where the /30 of a run's veth pair is taken from.
var remoteSubnet = netip.MustParsePrefix("10.213.0.0/16")

// parseLinkFlags validates -remote-netns, -link-rate and -link-delay. An
// empty rate, "0" or "unshaped" leaves the veth unshaped.
func parseLinkFlags(remote bool, rate string, delay time.Duration, rps bool) (*remoteLink, error) {
	rate = strings.TrimSpace(rate)
	if !remote {
		if rate != "" {
			return nil, errors.New("weft bench transfer: -link-rate needs -remote-netns (loopback is not shaped)")
		}
		if delay != 0 {
			return nil, errors.New("weft bench transfer: -link-delay needs -remote-netns (loopback is not shaped)")
		}
		return nil, nil
	}
	l := &remoteLink{delay: delay, rps: rps, upstreamPort: remoteUpstream}
	if delay < 0 {
		return nil, fmt.Errorf("weft bench transfer: -link-delay %s: must not be negative", delay)
	}
	if rate != "" && rate != "unshaped" && rate != "0" {
		bits, err := parseRate(rate)
		if err != nil {
			return nil, fmt.Errorf("weft bench transfer: -link-rate %q: %w", rate, err)
		}
		l.rateBits = bits
	}
	return l, nil
}

// parseRate reads a rate as tc writes it: a number and a unit of bit,
// kbit, mbit, gbit or tbit (decimal multiples, bits per second).
func parseRate(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	low := strings.ToLower(s)
	for _, u := range units {
		num, ok := strings.CutSuffix(low, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || v <= 0 || v != v {
			return 0, fmt.Errorf("want a positive number before %q, e.g. 10gbit, 500mbit", u.suffix)
		}
		bits := v * u.mult
		if bits < 8000 || bits > 1e14 {
			return 0, errors.New("want a rate between 8kbit and 100tbit")
		}
		return int64(bits), nil
	}
	return 0, errors.New("not a rate: want a number with a unit of bit, kbit, mbit, gbit or tbit, e.g. 10gbit")
}

// formatRate is bits per second as tc would print it.
func formatRate(bits int64) string {
	for _, u := range []struct {
		suffix string
		div    int64
	}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if bits >= u.div && bits%u.div == 0 {
			return strconv.FormatInt(bits/u.div, 10) + u.suffix
		}
	}
	return strconv.FormatInt(bits, 10) + "bit"
}

// run runs ip or tc with a deadline, its output in the error.
func (l *remoteLink) run(ctx context.Context, path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", path, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// removeStale deletes namespaces and veth ends a crashed run left (their
// creator's PID is gone); a live run's are left alone.
func (l *remoteLink) removeStale(ctx context.Context) ([]string, error) {
	var removed []string
	out, err := l.run(ctx, l.ipPath, "netns", "list")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pid, ok := ownerPID(f[0], remoteNamePrefix)
		if !ok || pidAlive(pid) {
			continue
		}
		if _, err := l.run(ctx, l.ipPath, "netns", "delete", f[0]); err != nil {
			return removed, fmt.Errorf("removing a stale namespace: %w", err)
		}
		removed = append(removed, "netns "+f[0])
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return removed, err
	}
	for _, i := range ifs {
		pid, ok := ownerPID(i.Name, remoteDevPrefix)
		if !ok || pidAlive(pid) {
			continue
		}
		if _, err := l.run(ctx, l.ipPath, "link", "delete", i.Name); err != nil {
			return removed, fmt.Errorf("removing a stale veth: %w", err)
		}
		removed = append(removed, "link "+i.Name)
	}
	return removed, nil
}

// ownerPID is the PID in a name this tool gave (prefix, digits, and for
// the veth's host end nothing more).
func ownerPID(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" {
		return 0, false
	}
	pid, err := strconv.Atoi(rest)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// pickSubnet takes the first /30 of remoteSubnet, from a place that
// depends on the PID (concurrent runs start apart), that overlaps no
// address or route of the host namespace.
func (l *remoteLink) pickSubnet(ctx context.Context, pid int) (netip.Prefix, error) {
	used, err := l.usedPrefixes(ctx)
	if err != nil {
		return netip.Prefix{}, err
	}
	n := 1 << (30 - remoteSubnet.Bits()) // /30s in the subnet
	base := remoteSubnet.Addr().As4()
	start := pid % n
	for i := 0; i < n; i++ {
		k := (start + i) % n
		a := base
		off := uint32(k) << 2
		a[2] += byte(off >> 8)
		a[3] += byte(off)
		p := netip.PrefixFrom(netip.AddrFrom4(a), 30)
		if !overlapsAny(p, used) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /30 in %s", remoteSubnet)
}

// usedPrefixes lists the host namespace's IPv4 addresses and routes
// (every table; a default route is not a conflict).
func (l *remoteLink) usedPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var used []netip.Prefix
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && ipn.IP.To4() != nil {
				ones, _ := ipn.Mask.Size()
				used = append(used, netip.PrefixFrom(ip, ones).Masked())
			}
		}
	}
	out, err := l.run(ctx, l.ipPath, "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	return append(used, routePrefixes(out)...), nil
}

// routePrefixes reads the destinations of `ip -4 route show` lines.
func routePrefixes(out string) []netip.Prefix {
	var ps []netip.Prefix
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			switch f[0] {
			case "local", "broadcast", "unicast", "multicast", "blackhole", "unreachable", "prohibit", "throw", "nat", "anycast":
				f = f[1:]
			}
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		if p, err := netip.ParsePrefix(f[0]); err == nil {
			ps = append(ps, p.Masked())
		} else if a, err := netip.ParseAddr(f[0]); err == nil {
			ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return ps
}

func overlapsAny(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if u.Bits() > 0 && p.Overlaps(u) {
			return true
		}
	}
	return false
}

// setup creates the namespace and the veth pair, addresses them, and
// shapes both directions. On error what was created is removed.
func (l *remoteLink) setup(ctx context.Context, stderr io.Writer) (err error) {
	if err := l.checkPrivileges(); err != nil {
		return err
	}
	removed, err := l.removeStale(ctx)
	if err != nil {
		return fmt.Errorf("weft bench transfer: -remote-netns: %w", err)
	}
	for _, r := range removed {
		fmt.Fprintf(stderr, "weft bench transfer: removed %s left by a crashed run\n", r)
	}
	pid := os.Getpid()
	l.ns = remoteNamePrefix + strconv.Itoa(pid)
	l.hostDev = remoteDevPrefix + strconv.Itoa(pid)
	l.nsDev = l.hostDev + "n"
	p, err := l.pickSubnet(ctx, pid)
	if err != nil {
		return fmt.Errorf("weft bench transfer: -remote-netns: %w", err)
	}
	l.hostAddr = p.Addr().Next()
	l.nsAddr = l.hostAddr.Next()
	l.setUp = true
	defer func() {
		if err != nil {
			err = errors.Join(err, l.teardown())
		}
	}()
	ip := func(args ...string) error {
		_, err := l.run(ctx, l.ipPath, args...)
		return err
	}
	steps := [][]string{
		{"netns", "add", l.ns},
		{"link", "add", l.hostDev, "type", "veth", "peer", "name", l.nsDev, "netns", l.ns},
		{"addr", "add", l.hostAddr.String() + "/30", "dev", l.hostDev},
		{"link", "set", l.hostDev, "up"},
		{"-n", l.ns, "addr", "add", l.nsAddr.String() + "/30", "dev", l.nsDev},
		{"-n", l.ns, "link", "set", l.nsDev, "up"},
		{"-n", l.ns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return fmt.Errorf("weft bench transfer: -remote-netns: %w", err)
		}
	}
	if l.rps {
		hostMask, nsMask := cpuMask(runtime.NumCPU()), cpuMask(runtime.NumCPU())
		if l.hostCPUs != "" {
			if hostMask, err = cpuListMask(l.hostCPUs); err != nil {
				return fmt.Errorf("weft bench transfer: -client-cpus, -weft-cpus: %w", err)
			}
		}
		if l.nsCPUs != "" {
			if nsMask, err = cpuListMask(l.nsCPUs); err != nil {
				return fmt.Errorf("weft bench transfer: -upstream-cpus: %w", err)
			}
		}
		if err := os.WriteFile("/sys/class/net/"+l.hostDev+"/queues/rx-0/rps_cpus", []byte(hostMask), 0); err != nil {
			return fmt.Errorf("weft bench transfer: -link-rps: %w", err)
		}
		// The namespace's own sysfs is only visible from inside it.
		if err := ip("netns", "exec", l.ns, "sh", "-c", `echo "$1" > "/sys/class/net/$2/queues/rx-0/rps_cpus"`, "sh", nsMask, l.nsDev); err != nil {
			return fmt.Errorf("weft bench transfer: -link-rps: %w", err)
		}
	}
	l.shapedDescription = "unshaped"
	if l.rateBits > 0 || l.delay > 0 {
		for _, dev := range []struct{ ns, name string }{{"", l.hostDev}, {l.ns, l.nsDev}} {
			args := l.qdiscArgs(dev.name)
			if dev.ns != "" {
				args = append([]string{"-n", dev.ns}, args...)
			}
			if _, err := l.run(ctx, l.tcPath, args...); err != nil {
				if l.delay > 0 {
					err = fmt.Errorf("%w (-link-delay needs the kernel's netem qdisc, sch_netem)", err)
				}
				return fmt.Errorf("weft bench transfer: shaping the veth: %w", err)
			}
		}
		l.shapedDescription = l.qdiscDescription()
	}
	return nil
}

// cpuMask is the rps_cpus mask of CPUs 0..n-1: hex, in comma-separated
// 32-bit words, most significant first.
func cpuMask(n int) string {
	var words []string
	for lo := 0; lo < n; lo += 32 {
		bits := n - lo
		w := uint32(0xffffffff)
		if bits < 32 {
			w = 1<<bits - 1
		}
		words = append([]string{fmt.Sprintf("%08x", w)}, words...)
	}
	return strings.Join(words, ",")
}

// cpuListMask is the rps_cpus mask of a CPU list as taskset takes it
// ("1", "0,2-3").
func cpuListMask(list string) (string, error) {
	var cpus []int
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= 4096 {
			return "", fmt.Errorf("CPU list %q: want CPUs and ranges like 0,2-3", list)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	words := make([]uint32, (cpus[len(cpus)-1]+32)/32)
	for _, c := range cpus {
		if len(words) <= c/32 {
			words = append(words, make([]uint32, c/32+1-len(words))...)
		}
		words[c/32] |= 1 << (c % 32)
	}
	var out []string
	for i := len(words) - 1; i >= 0; i-- {
		out = append(out, fmt.Sprintf("%08x", words[i]))
	}
	return strings.Join(out, ","), nil
}

// tbfBurst is the token bucket's depth for a rate: 100 µs of the rate,
// and at least two 64 KiB GSO packets (a smaller bucket makes tbf cut
// every GSO packet into MTU segments, a cost no NIC with TSO has).
func tbfBurst(bits int64) int64 {
	b := bits / 8 / 10000
	if b < 128<<10 {
		b = 128 << 10
	}
	return b
}

// qdiscArgs is tc's arguments for the root qdisc of dev: tbf for a rate
// alone; netem (rate and delay) when a delay is asked.
func (l *remoteLink) qdiscArgs(dev string) []string {
	if l.delay > 0 {
		args := []string{"qdisc", "replace", "dev", dev, "root", "netem", "delay", strconv.FormatInt(l.delay.Microseconds(), 10) + "us", "limit", "100000"}
		if l.rateBits > 0 {
			args = append(args, "rate", strconv.FormatInt(l.rateBits, 10)+"bit")
		}
		return args
	}
	return []string{"qdisc", "replace", "dev", dev, "root", "tbf", "rate", strconv.FormatInt(l.rateBits, 10) + "bit",
		"burst", strconv.FormatInt(tbfBurst(l.rateBits), 10), "latency", "5ms"}
}

func (l *remoteLink) qdiscDescription() string {
	if l.delay > 0 {
		s := fmt.Sprintf("netem delay %s each way", l.delay)
		if l.rateBits > 0 {
			s += ", rate " + formatRate(l.rateBits)
		}
		return s + ", both directions"
	}
	return fmt.Sprintf("tbf %s (burst %d KiB, latency 5ms) both directions", formatRate(l.rateBits), tbfBurst(l.rateBits)>>10)
}

// teardown removes the namespace (which takes its veth end, and so the
// pair, with it) and the host end if it is somehow left. Idempotent; it
// ignores the caller's context, which may be what was cancelled.
func (l *remoteLink) teardown() error {
	if !l.setUp || l.torndown {
		return nil
	}
	l.torndown = true
	ctx := context.Background()
	var errs []error
	if l.nsExists(ctx) {
		if _, err := l.run(ctx, l.ipPath, "netns", "delete", l.ns); err != nil {
			errs = append(errs, err)
		}
	}
	// The kernel dismantles a deleted namespace's devices in the
	// background; the host's end of the pair goes with it, a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for l.hostDevExists() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if l.hostDevExists() {
		if _, err := l.run(ctx, l.ipPath, "link", "delete", l.hostDev); err != nil && l.hostDevExists() {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("weft bench transfer: removing namespace %s: %w", l.ns, err)
	}
	return nil
}

func (l *remoteLink) hostDevExists() bool {
	_, err := net.InterfaceByName(l.hostDev)
	return err == nil
}

func (l *remoteLink) nsExists(ctx context.Context) bool {
	out, err := l.run(ctx, l.ipPath, "netns", "list")
	if err != nil {
		return true // try the delete; its error says why
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == l.ns {
			return true
		}
	}
	return false
}

// upstreamAddr is where the upstream listens inside the namespace.
func (l *remoteLink) upstreamAddr() string {
	return net.JoinHostPort(l.nsAddr.String(), strconv.Itoa(l.upstreamPort))
}

// wrap is the command line that runs path with args in the namespace.
func (l *remoteLink) wrap(path string, args []string) (string, []string) {
	return l.ipPath, append([]string{"netns", "exec", l.ns, path}, args...)
}

// describe is the line the run prints about the link.
func (l *remoteLink) describe() string {
	rps := "RPS over all CPUs by flow hash"
	switch {
	case !l.rps:
		rps = "no RPS"
	case l.hostCPUs != "":
		rps = fmt.Sprintf("RPS: the host end receives on CPUs %s, the namespace end on CPUs %s", l.hostCPUs, l.nsCPUs)
	}
	return fmt.Sprintf("upstream in network namespace %s at %s over a veth pair (host end %s %s; %s), link %s",
		l.ns, l.upstreamAddr(), l.hostDev, l.hostAddr, rps, l.shapedDescription)
}

// startRemoteUpstream is StartUpstreamProcess inside the link's
// namespace: `ip netns exec NS SELF bench upstream` (ip execs the command,
// so the PID, its CPU and its namespace's counters are the upstream's),
// listening on the namespace's veth address.
func (e *Env) startRemoteUpstream(ctx context.Context, l *remoteLink, cfg upstream.Config) (*proc.Process, string, error) {
	bin, err := e.r.selfBinary(ctx)
	if err != nil {
		return nil, "", err
	}
	addr := l.upstreamAddr()
	path, args := l.wrap(bin, append(e.r.selfArgs("upstream"), upstreamFlags(addr, cfg)...))
	p, err := e.startProcess(procSpec{name: "upstream", path: path, args: args}, false)
	if err != nil {
		return nil, "", err
	}
	if err := e.WaitHTTP(ctx, "http://"+addr+"/", p, nil); err != nil {
		return nil, "", err
	}
	return p, addr, nil
}
