package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
)

// Peer proxies run with one worker (thread) so that they compare with a
// proxy pinned to one CPU, keep-alive to the upstream, and no access log.

// Nginx proxies through nginx (Debian nginx-light): one worker process, a
// keep-alive upstream pool, access log off, daemon off.
func Nginx() Scenario {
	return Scenario{
		Name:        "nginx",
		Description: "client → nginx (1 worker, keep-alive upstream pool) → upstream",
		Quick:       true,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			bin, err := lookPeer("nginx", "/usr/sbin/nginx")
			if err != nil {
				return "", err
			}
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			listen, err := FreeAddr()
			if err != nil {
				return "", err
			}
			conf, err := env.WriteFile("nginx.conf", []byte(nginxConfig(env.Dir, listen, up)))
			if err != nil {
				return "", err
			}
			p, err := env.StartProcess("nginx", bin, "-p", env.Dir, "-c", conf, "-e", filepath.Join(env.Dir, "error.log"))
			if err != nil {
				return "", err
			}
			url := "http://" + listen + "/"
			return url, env.WaitHTTP(ctx, url, p, nil)
		},
	}
}

func nginxConfig(dir, listen, upstreamAddr string) string {
	return nginxMain(dir, "up", upstreamAddr, fmt.Sprintf(`    server {
        listen %s;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
`, listen))
}

// nginxMain is an nginx.conf for the harness: one worker in the
// foreground, files in dir, keep-alive raised on both sides (so nginx does
// not close connections every 1,000 requests), an upstream pool named
// upstream to upstreamAddr, and server (the server block).
func nginxMain(dir, upstream, upstreamAddr, server string) string {
	userLine := ""
	if os.Geteuid() == 0 {
		// As root, nginx would switch its worker to "nobody", which cannot
		// enter the harness's private temp directory.
		userLine = "user root;\n"
	}
	return userLine + fmt.Sprintf(`worker_processes 1;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream %[2]s {
        server %[3]s;
        keepalive 256;
        keepalive_requests 1000000;
    }
%[4]s}
`, dir, upstream, upstreamAddr, server)
}

// HAProxy proxies through HAProxy: one thread, HTTP mode, keep-alive and
// connection reuse to the upstream.
func HAProxy() Scenario {
	return Scenario{
		Name:        "haproxy",
		Description: "client → HAProxy (1 thread, http-reuse always) → upstream",
		Quick:       true,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			bin, err := lookPeer("haproxy", "/usr/sbin/haproxy")
			if err != nil {
				return "", err
			}
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			listen, err := FreeAddr()
			if err != nil {
				return "", err
			}
			conf, err := env.WriteFile("haproxy.cfg", []byte(haproxyConfig(env.Dir, listen, up, haproxyMaxConn())))
			if err != nil {
				return "", err
			}
			p, err := env.StartProcess("haproxy", bin, "-db", "-f", conf)
			if err != nil {
				return "", err
			}
			url := "http://" + listen + "/"
			return url, env.WaitHTTP(ctx, url, p, nil)
		},
	}
}

func haproxyConfig(dir, listen, upstreamAddr string, maxConn int) string {
	return fmt.Sprintf(`global
    nbthread 1
    pidfile %[1]s/haproxy.pid
    maxconn %[4]d

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind %[2]s
    default_backend up

backend up
    http-reuse always
    server up1 %[3]s
`, dir, listen, upstreamAddr, maxConn)
}

// Caddy proxies through Caddy's reverse_proxy (GOMAXPROCS follows its CPU
// affinity when pinned).
func Caddy() Scenario {
	return Scenario{
		Name:        "caddy",
		Description: "client → Caddy reverse_proxy → upstream",
		Quick:       true,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			bin, err := lookPeer("caddy")
			if err != nil {
				return "", err
			}
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			listen, err := FreeAddr()
			if err != nil {
				return "", err
			}
			conf, err := env.WriteFile("Caddyfile", []byte(caddyConfig(listen, up)))
			if err != nil {
				return "", err
			}
			// Caddy keeps state under XDG dirs; keep it in the temp dir.
			procEnv := []string{"XDG_DATA_HOME=" + env.Dir, "XDG_CONFIG_HOME=" + env.Dir, "HOME=" + env.Dir}
			p, err := env.StartProcessEnv("caddy", procEnv, bin, "run", "--config", conf, "--adapter", "caddyfile")
			if err != nil {
				return "", err
			}
			url := "http://" + listen + "/"
			return url, env.WaitHTTP(ctx, url, p, nil)
		},
	}
}

func caddyConfig(listen, upstreamAddr string) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
	log {
		level ERROR
	}
}

http://%s {
	reverse_proxy %s
}
`, listen, upstreamAddr)
}

// lookPeer finds a peer's binary on PATH (or at one of the fallback paths:
// nginx lives in /usr/sbin, which is not on every user's PATH), or returns
// a skip.
func lookPeer(name string, fallbacks ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, f := range fallbacks {
		if st, err := os.Stat(f); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	hint := ""
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		hint = " (apt-get install " + strings.ReplaceAll(name, "nginx", "nginx-light") + ")"
	}
	return "", Skipf("%s is not installed%s", name, hint)
}

// RefProxy proxies through a reference proxy of package refproxy, run as
// `weft bench ref-proxy -kind KIND` in its own process: "ref-epoll", a
// one-thread epoll event loop in Go (the shape of nginx and HAProxy), or
// "ref-fasthttp", fasthttp's server handing requests to its HostClient
// (what weft is built on, doing nothing else). They show what weft's CPU
// per request is made of; they are not proxies to deploy.
func RefProxy(kind string) Scenario {
	what := map[string]string{
		"epoll":    "a one-thread epoll event loop in Go",
		"fasthttp": "fasthttp's server and HostClient, nothing else",
	}[kind]
	return Scenario{
		Name:        "ref-" + kind,
		Description: "client → reference proxy: " + what + " (a measuring stick, not a product) → upstream",
		Compare:     "nginx",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			bin, err := env.r.selfBinary(ctx)
			if err != nil {
				return "", err
			}
			listen, err := FreeAddr()
			if err != nil {
				return "", err
			}
			args := append(env.r.selfArgs("ref-proxy"), "-kind", kind, "-listen", listen, "-upstream", up)
			p, err := env.StartProcess("ref-"+kind, bin, args...)
			if err != nil {
				return "", err
			}
			url := "http://" + listen + "/"
			return url, env.WaitHTTP(ctx, url, p, nil)
		},
	}
}
