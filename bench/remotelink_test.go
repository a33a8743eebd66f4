package bench

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseLinkFlags(t *testing.T) {
	for _, c := range []struct {
		remote bool
		rate   string
		delay  time.Duration
		bits   int64
		err    string // a substring of the error; "" for none
	}{
		{remote: false},
		{remote: true, bits: 0},
		{remote: true, rate: "unshaped"},
		{remote: true, rate: "10gbit", bits: 10e9},
		{remote: true, rate: "25Gbit", bits: 25e9},
		{remote: true, rate: "1.5gbit", bits: 15e8},
		{remote: true, rate: "500mbit", bits: 500e6},
		{remote: true, rate: "64kbit", bits: 64e3},
		{remote: true, rate: "10gbit", delay: time.Millisecond, bits: 10e9},
		{remote: true, rate: "10gb", err: `-link-rate "10gb": not a rate`},
		{remote: true, rate: "fast", err: `-link-rate "fast": not a rate`},
		{remote: true, rate: "gbit", err: `-link-rate "gbit": want a positive number`},
		{remote: true, rate: "-1gbit", err: `-link-rate "-1gbit": want a positive number`},
		{remote: true, rate: "1bit", err: `-link-rate "1bit": want a rate between`},
		{remote: true, delay: -time.Millisecond, err: "-link-delay -1ms: must not be negative"},
		{remote: false, rate: "10gbit", err: "-link-rate needs -remote-netns"},
		{remote: false, delay: time.Millisecond, err: "-link-delay needs -remote-netns"},
	} {
		l, err := parseLinkFlags(c.remote, c.rate, c.delay, true)
		name := strconv.FormatBool(c.remote) + "/" + c.rate + "/" + c.delay.String()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err = %v, want one containing %q", name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !c.remote {
			if l != nil {
				t.Errorf("%s: a link without -remote-netns", name)
			}
			continue
		}
		if l == nil || l.rateBits != c.bits || l.delay != c.delay {
			t.Errorf("%s: got %+v, want %d bit/s and delay %s", name, l, c.bits, c.delay)
		}
	}
}

// A bad -link-rate is refused before anything is set up (so also when
// not root), naming the flag.
func TestTransferRefusesBadLinkRate(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := Command(context.Background(), []string{"transfer", "-remote-netns", "-link-rate", "10gb"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), `-link-rate "10gb"`) {
		t.Fatalf("err = %v", err)
	}
	err = Command(context.Background(), []string{"transfer", "-link-rate", "10gbit"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-link-rate needs -remote-netns") {
		t.Fatalf("without -remote-netns: err = %v", err)
	}
}

func TestCPUMask(t *testing.T) {
	for n, want := range map[int]string{1: "00000001", 2: "00000003", 32: "ffffffff", 33: "00000001,ffffffff", 64: "ffffffff,ffffffff"} {
		if got := cpuMask(n); got != want {
			t.Errorf("cpuMask(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCPUListMask(t *testing.T) {
	for list, want := range map[string]string{"0": "00000001", "1": "00000002", "0,1": "00000003", "0-1,1": "00000003", "0,2-3": "0000000d", "33": "00000002,00000000", "31,0": "80000001"} {
		if got, err := cpuListMask(list); err != nil || got != want {
			t.Errorf("cpuListMask(%q) = %q, %v; want %q", list, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "2-1", "-1", "0,,1"} {
		if got, err := cpuListMask(bad); err == nil {
			t.Errorf("cpuListMask(%q) = %q, want an error", bad, got)
		}
	}
}

func TestFormatRateAndBurst(t *testing.T) {
	for bits, want := range map[int64]string{10e9: "10gbit", 25e9: "25gbit", 1e9: "1gbit", 15e8: "1500mbit", 64e3: "64kbit", 12345: "12345bit"} {
		if got := formatRate(bits); got != want {
			t.Errorf("formatRate(%d) = %q, want %q", bits, got, want)
		}
	}
	// Two GSO packets at least; 100 µs of the rate above that.
	if b := tbfBurst(1e9); b != 128<<10 {
		t.Errorf("1gbit: burst %d", b)
	}
	if b := tbfBurst(25e9); b != 312500 {
		t.Errorf("25gbit: burst %d", b)
	}
}

func TestRoutePrefixesAndOverlap(t *testing.T) {
	out := "default via 192.0.2.1 dev eth0\n" +
		"10.213.4.0/24 dev x proto kernel scope link src 10.213.4.1\n" +
		"local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1\n" +
		"broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1\n" +
		"unreachable 10.213.9.8/30\n"
	got := routePrefixes(out)
	want := []string{"10.213.4.0/24", "127.0.0.1/32", "127.255.255.255/32", "10.213.9.8/30"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for p, over := range map[string]bool{"10.213.4.8/30": true, "10.213.9.8/30": true, "10.213.9.12/30": false, "10.213.5.0/30": false} {
		if overlapsAny(netip.MustParsePrefix(p), got) != over {
			t.Errorf("%s: overlap want %v", p, over)
		}
	}
	// A default route (0/0) is no conflict.
	if overlapsAny(netip.MustParsePrefix("10.213.0.0/30"), []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}) {
		t.Error("0.0.0.0/0 counted as a conflict")
	}
}

func TestOwnerPID(t *testing.T) {
	for name, want := range map[string]int{"weft-remote-42": 42, "weft-remote-": 0, "weft-remote-4x": 0, "wbt_big": 0, "weft-remote--1": 0} {
		pid, ok := ownerPID(name, remoteNamePrefix)
		if pid != want || ok != (want > 0) {
			t.Errorf("%s: %d, %v", name, pid, ok)
		}
	}
}

// needNetns skips unless the test can create namespaces, veths and
// qdiscs.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot create a network namespace")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	// Root in a container may still lack CAP_NET_ADMIN or /run/netns.
	probe := "weftprobe" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "delete", probe).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete %s: %v: %s", probe, err, out)
	}
}

func netnsNames(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// deadPID is the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// `weft bench transfer -remote-netns` moves its bytes from an upstream in
// a namespace of its own over a shaped veth, directly and through weft,
// removes a crashed run's namespace first and leaves neither namespace
// nor veth behind.
func TestTransferRemoteNetns(t *testing.T) {
	needNetns(t)
	bin := weftForTest(t)
	// A crashed run's leftovers: a namespace with a veth pair, named
	// after a PID that is gone.
	stale := deadPID(t)
	staleNS, staleDev := remoteNamePrefix+strconv.Itoa(stale), remoteDevPrefix+strconv.Itoa(stale)
	for _, args := range [][]string{{"netns", "add", staleNS}, {"link", "add", staleDev, "type", "veth", "peer", "name", staleDev + "n", "netns", staleNS}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "delete", staleNS).Run()
		_ = exec.Command("ip", "link", "delete", staleDev).Run()
	})

	ns, dev := remoteNamePrefix+strconv.Itoa(os.Getpid()), remoteDevPrefix+strconv.Itoa(os.Getpid())
	var stdout, stderr bytes.Buffer
	args := []string{"transfer", "-weft-bin", bin, "-self-bin", os.Args[0], "-remote-netns", "-link-rate", "10gbit",
		"-mib", "8", "-pairs", "1", "-dir", "download", "-io-size", "65536"}
	err := Command(context.Background(), args, &stdout, &stderr)
	// Whatever the outcome, nothing of the run is left.
	if names := netnsNames(t); contains(names, ns) || contains(names, staleNS) {
		t.Errorf("namespaces left: %v", names)
	}
	for _, d := range []string{dev, staleDev} {
		if _, ierr := net.InterfaceByName(d); ierr == nil {
			t.Errorf("veth %s left", d)
		}
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	out := stdout.String()
	// The tool fails a transfer of any other length (transferRun.one),
	// so a table with both legs is 8 MiB moved each way.
	for _, want := range []string{
		"upstream in network namespace " + ns + " at 10.213.",
		"RPS over all CPUs by flow hash), link tbf 10gbit",
		"\ndownload, 8 MiB each",
		"the upstream namespace's",
		"\n| 1 | ",
		"\ndownload: weft ÷ direct median",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"download pair 1 direct: ", "download pair 1 weft: ", "removed netns " + staleNS + " left by a crashed run"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// An interrupted run removes its namespace too.
func TestTransferRemoteNetnsInterrupted(t *testing.T) {
	needNetns(t)
	bin := weftForTest(t)
	ns := remoteNamePrefix + strconv.Itoa(os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	var stdout, stderr lockedBuffer
	go func() {
		defer close(done)
		// 1 GiB at 1gbit: about 9 s per leg, far longer than the wait below.
		args := []string{"transfer", "-weft-bin", bin, "-self-bin", os.Args[0], "-remote-netns", "-link-rate", "1gbit",
			"-pairs", "1", "-dir", "download"}
		runErr = Command(ctx, args, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = exec.Command("ip", "netns", "delete", ns).Run()
	})
	// Wait until the first transfer has started, then interrupt.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stdout.String(), "upstream in network namespace") {
		select {
		case <-done:
			t.Fatalf("ended before the interrupt: %v\n%s", runErr, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no transfer started within 60s:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !contains(netnsNames(t), ns) {
		t.Fatalf("namespace %s not there during the run", ns)
	}
	dev := remoteDevPrefix + strconv.Itoa(os.Getpid())
	hex := func(m string) string { return strings.TrimLeft(strings.ReplaceAll(strings.TrimSpace(m), ",", ""), "0") }
	if b, err := os.ReadFile("/sys/class/net/" + dev + "/queues/rx-0/rps_cpus"); err != nil || hex(string(b)) != hex(cpuMask(runtime.NumCPU())) {
		t.Errorf("%s's rps_cpus: %q, %v; want %s", dev, b, err, cpuMask(runtime.NumCPU()))
	}
	cancel()
	select {
	case <-done:
		if runErr == nil {
			t.Fatal("an interrupted run returned no error")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("not stopped within 60s of the interrupt")
	}
	if contains(netnsNames(t), ns) {
		t.Errorf("namespace %s left after the interrupt", ns)
	}
}

// lockedBuffer is a bytes.Buffer a running command writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
