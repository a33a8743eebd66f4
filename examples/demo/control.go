package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/ctl"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/identity"
)

//go:embed mesh.yaml.tmpl
var meshTemplate string

// The control plane part of the demo: the node id of the sidecar it drives,
// the canary weights the embedded mesh starts with, and the live change the
// tour makes (the arguments of `weft ctl set-weight`).
const (
	meshNode            = "demo-app"
	canaryV1, canaryV2  = 90, 10
	liveService         = "reviews"
	liveWeights         = "v1=50,v2=50"
	liveV1, liveV2      = 50, 50
	meshScrapeInterval  = 2 * time.Second
	meshApplyWithin     = 15 * time.Second
	meshStatusPollEvery = 5 * time.Millisecond
)

// meshData fills the embedded mesh resources.
type meshData struct {
	ReviewsV1, ReviewsV2, Ratings, Accounts string
	Node, Outbound                          string
	V1Weight, V2Weight                      int
}

// meshResources renders the embedded mesh resources (YAML documents).
func meshResources(d meshData) ([]byte, error) {
	t, err := template.New("mesh").Parse(meshTemplate)
	if err != nil {
		return nil, fmt.Errorf("mesh template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("mesh template: %w", err)
	}
	return b.Bytes(), nil
}

// meshAddrs are where the control plane part listens ("127.0.0.1:0" for
// any free port).
type meshAddrs struct {
	control, outbound, admin string
}

// meshDemo is an in-process control plane (control/server, with a
// temporary data directory) and a sidecar it drives through control/client,
// as `weft control` and `weft proxy --control URL --node demo-app` would.
type meshDemo struct {
	log     *zap.Logger
	dataDir string
	srv     *server.Server
	// http calls the API as the bootstrap admin (the token in
	// DATA/admin.token), trusting the mesh CA (DATA/ca.pem).
	http    *http.Client
	token   string
	ident   *identity.Source // the sidecar's node certificate
	proxy   *proxy.Proxy
	admin   *admin.Server
	cancel  context.CancelFunc // stops the control client
	done    chan struct{}      // closed when the control client returned
	sidecar string             // the sidecar's outbound address
	version string             // the config version the sidecar applied at start
}

// startMesh starts the control plane, applies the demo mesh to it, and
// starts the sidecar demo-app, returning once the sidecar has applied (and
// ACKed) its first snapshot. On error everything started is stopped.
func startMesh(ctx context.Context, log *zap.Logger, addrs meshAddrs, svcs []*service) (_ *meshDemo, err error) {
	// m is not the named result: a failed return sets that to nil before
	// the deferred close runs.
	m := &meshDemo{log: log}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	if m.dataDir, err = os.MkdirTemp("", "weft-demo-control-*"); err != nil {
		return nil, fmt.Errorf("control plane: data directory: %w", err)
	}
	m.srv, err = server.Start(ctx, server.Options{Addr: addrs.control, DataDir: filepath.Join(m.dataDir, "control"),
		ScrapeInterval: meshScrapeInterval, Logger: log.With(zap.String("component", "control"))})
	if err != nil {
		return nil, fmt.Errorf("control plane on %s: %w", addrs.control, err)
	}
	// As an operator would: trust DATA/ca.pem, authenticate with the
	// bootstrap admin token in DATA/admin.token.
	roots, err := client.LoadCA(m.srv.CAFile())
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	m.token = m.srv.AdminToken()
	m.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, TLSClientConfig: client.TLSConfig(roots, nil)}}
	resources, err := meshResources(meshData{
		ReviewsV1: svcs[0].ln.Addr().String(), ReviewsV2: svcs[1].ln.Addr().String(),
		Ratings: svcs[2].ln.Addr().String(), Accounts: svcs[3].ln.Addr().String(),
		Node: meshNode, Outbound: addrs.outbound, V1Weight: canaryV1, V2Weight: canaryV2})
	if err != nil {
		return nil, err
	}
	var res server.WriteResult
	if err := m.call(ctx, http.MethodPost, "/v1/apply", resources, &res); err != nil {
		return nil, fmt.Errorf("control plane: applying the demo mesh: %w", err)
	}

	slog := log.With(zap.String("sidecar", meshNode))
	if m.proxy, err = proxy.New(ctx, proxy.Options{Logger: slog, DrainTimeout: 2 * time.Second}); err != nil {
		return nil, fmt.Errorf("sidecar %s: %w", meshNode, err)
	}
	if m.admin, err = admin.Start(addrs.admin, m.proxy, m.proxy.Metrics().Registry(), slog); err != nil {
		return nil, fmt.Errorf("sidecar %s: admin: %w", meshNode, err)
	}
	// Like `weft ctl token demo-app` then `weft proxy --control URL --node
	// demo-app --control-ca ca.pem --join-token-file F`: the join token buys
	// the first certificate, which then authenticates the watch, the ACKs
	// and the renewals (mTLS).
	var jt server.TokenResponse
	if err := m.call(ctx, http.MethodPost, "/v1/tokens", []byte(`{"node":"`+meshNode+`"}`), &jt); err != nil {
		return nil, fmt.Errorf("sidecar %s: join token: %w", meshNode, err)
	}
	m.ident = identity.NewSource()
	tc := client.TLSConfig(roots, m.ident)
	ic := &client.IdentityClient{URL: m.srv.URL(), NodeID: meshNode, Token: jt.Token, Source: m.ident,
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}}
	cctx, cancel := context.WithCancel(ctx)
	m.cancel, m.done = cancel, make(chan struct{})
	idDone := make(chan struct{})
	go func() {
		defer close(idDone)
		_ = m.ident.Rotate(cctx, identity.RotateOptions{Signer: ic, Logger: slog.Named("identity")})
	}()
	select {
	case <-m.ident.Ready():
	case <-time.After(meshApplyWithin):
		cancel()
		<-idDone
		m.cancel = nil
		return nil, fmt.Errorf("sidecar %s: no certificate from the control plane within %v", meshNode, meshApplyWithin)
	}
	go func() {
		defer close(m.done)
		defer func() { <-idDone }()
		// Watch, apply, ACK over mTLS; the control plane scrapes the admin
		// server it reports.
		_ = client.Run(cctx, client.Options{URL: m.srv.URL(), NodeID: meshNode, TLS: tc, CacheDir: filepath.Join(m.dataDir, "sidecar"),
			Applier: m.proxy, Logger: slog, AdminAddr: m.admin.Addr().String()})
	}()
	n, err := m.waitApplied(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("sidecar %s: %w", meshNode, err)
	}
	m.version = n.Applied
	a := m.proxy.ListenerAddr("outbound")
	if a == nil {
		return nil, fmt.Errorf("sidecar %s: applied version %s but has no outbound listener", meshNode, n.Applied)
	}
	m.sidecar = a.String()
	return m, nil
}

// URL is the control plane's base URL.
func (m *meshDemo) URL() string { return m.srv.URL() }

// call sends a request to the control plane API and decodes its JSON
// answer into out; a non-2xx answer is an error carrying the server's
// message.
func (m *meshDemo) call(ctx context.Context, method, path string, body []byte, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.srv.URL()+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+m.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb server.ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, eb.Error)
		}
		return fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// node is the sidecar's entry in the control plane's /v1/status.
func (m *meshDemo) node(ctx context.Context) (server.NodeStatus, error) {
	var st server.Status
	if err := m.call(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return server.NodeStatus{}, err
	}
	for _, n := range st.Nodes {
		if n.Node == meshNode {
			return n, nil
		}
	}
	return server.NodeStatus{}, fmt.Errorf("node %s is not in /v1/status", meshNode)
}

// waitApplied polls /v1/status until the sidecar has ACKed a desired
// version other than not, for at most meshApplyWithin. A NACK of the
// desired version ends the wait with its error.
func (m *meshDemo) waitApplied(ctx context.Context, not string) (server.NodeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, meshApplyWithin)
	defer cancel()
	tick := time.NewTicker(meshStatusPollEvery)
	defer tick.Stop()
	for {
		n, err := m.node(ctx)
		switch {
		case err == nil && n.Desired != "" && n.Desired != not && n.Applied == n.Desired:
			return n, nil
		case err == nil && n.LastNack != nil && n.LastNack.Version == n.Desired:
			return n, fmt.Errorf("refused version %s (NACK): %s", n.Desired, n.LastNack.Error)
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("desired version %q, applied %q, watching %t", n.Desired, n.Applied, n.Watching)
			}
			return n, fmt.Errorf("no new version applied within %v: %w", meshApplyWithin, err)
		case <-tick.C:
		}
	}
}

// tour shows the control plane driving the sidecar: the canary split it
// configured, a live weight change through its API (the call `weft ctl
// set-weight` makes), the sidecar applying it, and the new split.
func (m *meshDemo) tour(ctx context.Context, t *tourer) {
	base := "http://" + m.sidecar
	before := t.countAt(base, liveService, "/", 200)
	fmt.Fprintf(t.out, "control plane: 200 requests to reviews through sidecar %s: v1=%d v2=%d (TrafficRule reviews splits %d/%d)\n",
		meshNode, before["reviews-v1"], before["reviews-v2"], canaryV1, canaryV2)

	old, err := m.node(ctx)
	if err != nil {
		fmt.Fprintf(t.out, "control plane: reading /v1/status failed: %v\n", err)
		return
	}
	var said bytes.Buffer
	start := time.Now()
	err = ctl.Command(ctx, []string{"-server", m.URL(), "-ca", m.srv.CAFile(), "-token-file", m.srv.AdminTokenFile(), "set-weight", liveService, liveWeights}, &said, &said)
	called := time.Since(start)
	result := strings.ReplaceAll(strings.TrimSpace(said.String()), "\n", ", ")
	if err != nil {
		fmt.Fprintf(t.out, "control plane: set-weight %s %s failed: %v %s\n", liveService, liveWeights, err, result)
		return
	}
	fmt.Fprintf(t.out, "control plane: set-weight %s %s through its API (as weft ctl does): %s (the call took %v)\n",
		liveService, liveWeights, result, called.Round(time.Millisecond))
	n, err := m.waitApplied(ctx, old.Desired)
	if err != nil {
		fmt.Fprintf(t.out, "control plane: sidecar %s did not apply the change: %v\n", meshNode, err)
		return
	}
	fmt.Fprintf(t.out, "control plane: sidecar %s applied version %s (was %s) and ACKed it, %v after the call (/v1/status: desired %s, applied %s, in_sync %t)\n",
		meshNode, n.Applied, old.Applied, time.Since(start).Round(time.Millisecond), n.Desired, n.Applied, n.InSync)
	after := t.countAt(base, liveService, "/", 200)
	fmt.Fprintf(t.out, "control plane: 200 requests to reviews through sidecar %s after the change: v1=%d v2=%d (now %d/%d)\n",
		meshNode, after["reviews-v1"], after["reviews-v2"], liveV1, liveV2)
}

// intro says what runs: the control plane and the sidecar it drives.
func (m *meshDemo) intro(w io.Writer) {
	fmt.Fprintf(w, "control plane on %s (in process, TLS from its mesh CA %s, operators by token; state in %s, removed at exit)\n", m.URL(), m.srv.CAFile(), m.dataDir)
	fmt.Fprintf(w, "a second sidecar, %s, on http://%s (admin http://%s) joined with a single-use join token and takes its config over mTLS as %s: version %s applied\n",
		meshNode, m.sidecar, m.admin.Addr(), m.ident.SVID().ID, m.version)
}

// try prints the commands to try against the control plane and its
// sidecar, comments aligned.
func (m *meshDemo) try(w io.Writer) {
	ctlCmd := "go run ./cmd/weft ctl -server " + m.URL() + " -ca " + m.srv.CAFile() + " -token-file " + m.srv.AdminTokenFile() + " "
	curlAPI := "curl -s --cacert " + m.srv.CAFile() + " -H \"Authorization: Bearer $(cat " + m.srv.AdminTokenFile() + ")\" "
	lines := [][2]string{
		{"curl -s -H 'Host: reviews' http://" + m.sidecar + "/", fmt.Sprintf("%d%% v1, %d%% v2 since the tour's live change", liveV1, liveV2)},
		{"curl -s -H 'Host: ratings' http://" + m.sidecar + "/", "retried, as TrafficRule ratings says"},
		{ctlCmd + "set-weight " + liveService + " " + liveWeights, "the tour's change (the same API call)"},
		{ctlCmd + "set-weight " + liveService + " v1=0,v2=100", "promote v2, live"},
		{ctlCmd + "get trafficrule " + liveService, "the rule set-weight rewrote"},
		{ctlCmd + "status", "desired and applied version per sidecar"},
		{curlAPI + m.URL() + "/v1/status", "the same, as JSON"},
		{"curl -si --cacert " + m.srv.CAFile() + " " + m.URL() + "/v1/status", "401: no token, no answer"},
		{m.URL() + "/ui#token=" + m.token, "in a browser (trust " + m.srv.CAFile() + " or accept the warning): the mesh view"},
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	fmt.Fprintf(w, "\nThe control plane at %s drives sidecar %s on %s (mesh services by Host):\n", m.URL(), meshNode, m.sidecar)
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  # %s\n", width, l[0], l[1])
	}
}

// close stops the sidecar's control client, its admin server and proxy,
// then the control plane, and removes the data directory. It is safe on a
// partly started meshDemo.
func (m *meshDemo) close() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
	if m.admin != nil {
		_ = m.admin.Close(context.Background())
	}
	if m.proxy != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := m.proxy.Shutdown(sctx); err != nil {
			m.log.Warn("sidecar shutdown", zap.String("sidecar", meshNode), zap.Error(err))
		}
		cancel()
	}
	if m.srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.srv.Shutdown(sctx); err != nil {
			m.log.Warn("control plane shutdown", zap.Error(err))
		}
		cancel()
	}
	if m.http != nil {
		m.http.CloseIdleConnections()
	}
	if m.dataDir != "" {
		if err := os.RemoveAll(m.dataDir); err != nil {
			m.log.Warn("removing the control plane's data directory", zap.String("dir", m.dataDir), zap.Error(err))
		}
	}
}
