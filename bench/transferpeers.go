package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/weftmesh/weft/bench/proc"
)

// transferPeers are the proxies `weft bench transfer -peers` can put in a
// pair beside weft, each configured to stream a large body the way weft
// does (no whole-body buffering, 256 KiB buffers), so that its leg tells
// what any proxy's second hop costs on this machine.
var transferPeers = []string{"nginx", "haproxy"}

// parsePeers checks a -peers list.
func parsePeers(list string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		known := false
		for _, k := range transferPeers {
			known = known || p == k
		}
		if !known {
			return nil, fmt.Errorf("weft bench transfer: -peers: %q is not one of %s", p, strings.Join(transferPeers, ", "))
		}
		for _, o := range out {
			if o == p {
				return nil, fmt.Errorf("weft bench transfer: -peers: %q named twice", p)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// startTransferPeer starts peer in front of the upstream at upAddr and
// returns its listen address once it answers.
func startTransferPeer(ctx context.Context, env *Env, peer, upAddr string) (string, *proc.Process, error) {
	listen, err := FreeAddr()
	if err != nil {
		return "", nil, err
	}
	var p *proc.Process
	switch peer {
	case "nginx":
		bin, err := lookPeer("nginx", "/usr/sbin/nginx")
		if err != nil {
			return "", nil, err
		}
		conf, err := env.WriteFile("nginx.conf", []byte(nginxMain(env.Dir, "up", upAddr, nginxTransferServer(listen))))
		if err != nil {
			return "", nil, err
		}
		if p, err = env.StartProcess("nginx", bin, "-p", env.Dir, "-c", conf, "-e", env.Dir+"/error.log"); err != nil {
			return "", nil, err
		}
	case "haproxy":
		bin, err := lookPeer("haproxy", "/usr/sbin/haproxy")
		if err != nil {
			return "", nil, err
		}
		conf, err := env.WriteFile("haproxy.cfg", []byte(haproxyTransferConfig(env.Dir, listen, upAddr)))
		if err != nil {
			return "", nil, err
		}
		if p, err = env.StartProcess("haproxy", bin, "-db", "-f", conf); err != nil {
			return "", nil, err
		}
	default:
		return "", nil, fmt.Errorf("weft bench transfer: unknown peer %q", peer)
	}
	return listen, p, env.WaitHTTP(ctx, "http://"+listen+"/", p, nil)
}

// nginxTransferServer streams both ways (proxy_buffering and
// proxy_request_buffering off: nginx's default would spool a large answer
// to a temp file) through 256 KiB buffers (the upload's too,
// client_body_buffer_size), any body size, no timeout a
// slow transfer could meet.
func nginxTransferServer(listen string) string {
	return fmt.Sprintf(`    server {
        listen %s;
        client_max_body_size 0;
        client_body_buffer_size 256k;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_buffer_size 256k;
            proxy_buffers 4 256k;
            proxy_busy_buffers_size 512k;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
`, listen)
}

// haproxyTransferConfig forwards with 256 KiB buffers and kernel splicing
// where HAProxy finds it worth it (splice-auto), as weft splices a large
// body.
func haproxyTransferConfig(dir, listen, upAddr string) string {
	return fmt.Sprintf(`global
    nbthread 1
    pidfile %[1]s/haproxy.pid
    maxconn 256
    tune.bufsize 262144

defaults
    mode http
    option http-keep-alive
    option splice-auto
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend transfer
    bind %[2]s
    default_backend up

backend up
    http-reuse always
    server up1 %[3]s
`, dir, listen, upAddr)
}

// writePeerTable is the table of one peer's legs against the direct legs
// of the same pairs.
func writePeerTable(w io.Writer, dir, peer string, res []transferPair) {
	fmt.Fprintf(w, "\n%s through %s (CPU per GiB: /proc of %s's processes)\n\n", dir, peer, peer)
	fmt.Fprintf(w, "| pair | direct MiB/s | %[1]s MiB/s | %[1]s ÷ direct | %[1]s CPU ms/GiB |\n", peer)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var ratios, rates, cpu []float64
	for i, p := range res {
		l := p.peers[peer]
		ratio := l.mibps() / p.direct.mibps()
		ratios, rates, cpu = append(ratios, ratio), append(rates, l.mibps()), append(cpu, ms(l.perGiB(l.peer)))
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %.0f%% | %.0f |\n", i+1, p.direct.mibps(), l.mibps(), 100*ratio, ms(l.perGiB(l.peer)))
	}
	fmt.Fprintf(w, "\n%s: %s ÷ direct median **%.0f%%**; median MiB/s %.0f; %s's own CPU %.0f ms/GiB (median)\n",
		dir, peer, 100*medianOf(ratios), medianOf(rates), peer, medianOf(cpu))
}
