package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/telemetry"
)

// DefaultServer is the control plane URL when neither -server nor
// $WEFT_SERVER is set.
const DefaultServer = "https://127.0.0.1:7070"

const usage = `usage: weft ctl [-server URL] [-ca FILE] [-token TOKEN | -token-file FILE] [-cert F -key F] COMMAND

commands:
  apply -f FILE                      create or replace every resource in FILE ("-" = stdin), atomically
  get KIND [NAME] [-n NS] [-o yaml|json]
                                     list resources of a kind, or show one
  delete KIND NAME [-n NS]           delete a resource
  status                             each sidecar's desired and applied version, last NACK
  set-weight SERVICE VERSION=W[,VERSION=W...] [-n NS]
                                     set the traffic split of a service (weights add to 100)
  modules push FILE                  upload a .wasm module; prints its sha256
  modules list                       list uploaded modules
  telemetry                          requests/s, error rate, p50/p99 per service
  token NODE [-ttl 1h] [-uses 1]     mint a join token for a sidecar (admin); printed once
  ca-cert -fingerprint sha256:HEX [-o FILE]
                                     fetch the mesh CA bundle, pinned by the fingerprint
                                     weft control printed (no -ca needed)

KIND is Service, TrafficRule, Filter, Policy or Sidecar (any case, plural ok).
Flags default from the environment: WEFT_SERVER, WEFT_CA, WEFT_TOKEN, WEFT_TOKEN_FILE,
WEFT_CERT, WEFT_KEY.
`

func env(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// Command runs `weft ctl`. args exclude the command name.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := env("WEFT_SERVER", "WEFT_CONTROL")
	if def == "" {
		def = DefaultServer
	}
	srv := fs.String("server", def, "control plane URL ($WEFT_SERVER)")
	caFile := fs.String("ca", env("WEFT_CA"), "CA bundle the server's certificate must chain to: the control plane's DATA/ca.pem ($WEFT_CA)")
	token := fs.String("token", env("WEFT_TOKEN"), "bearer token ($WEFT_TOKEN)")
	tokenFile := fs.String("token-file", env("WEFT_TOKEN_FILE"), "read the bearer token from this file, e.g. DATA/admin.token ($WEFT_TOKEN_FILE)")
	certFile := fs.String("cert", env("WEFT_CERT"), "client certificate (PEM) instead of a token ($WEFT_CERT)")
	keyFile := fs.String("key", env("WEFT_KEY"), "the client certificate's key ($WEFT_KEY)")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("ctl: name a command")
	}
	base := strings.TrimRight(*srv, "/")
	if rest[0] == "ca-cert" {
		return fetchCA(ctx, base, rest[1:], stdout, stderr)
	}
	tok := strings.TrimSpace(*token)
	if tok == "" && *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("ctl: -token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	tc, err := tlsConfig(*caFile, *certFile, *keyFile)
	if err != nil {
		return err
	}
	c := &cli{base: base, token: tok, caFile: *caFile, out: stdout, errw: stderr,
		http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}}
	switch rest[0] {
	case "apply":
		return c.apply(ctx, rest[1:])
	case "get":
		return c.get(ctx, rest[1:])
	case "delete":
		return c.delete(ctx, rest[1:])
	case "status":
		return c.status(ctx)
	case "set-weight":
		return c.setWeight(ctx, rest[1:])
	case "modules":
		return c.modules(ctx, rest[1:])
	case "telemetry":
		return c.telemetry(ctx)
	case "token":
		return c.joinToken(ctx, rest[1:])
	default:
		fs.Usage()
		return fmt.Errorf("ctl: unknown command %q", rest[0])
	}
}

type cli struct {
	base, token, caFile string
	out, errw           io.Writer
	http                *http.Client
}

// apiError is a non-2xx answer.
type apiError struct {
	Status int
	Body   server.ErrorBody
}

// Error is the status and the server's message.
func (e *apiError) Error() string {
	if e.Body.Error != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Body.Error)
	}
	return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
}

// do sends a request and decodes a JSON answer into out (when not nil).
// It returns the response headers.
func (c *cli) do(ctx context.Context, method, path string, body []byte, hdr map[string]string, out any) (http.Header, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ctl: %w (%s)", err, c.hint(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode}
		_ = json.Unmarshal(b, &e.Body)
		if e.Body.Error == "" {
			e.Body.Error = strings.TrimSpace(string(b))
		}
		return resp.Header, e
	}
	if out != nil {
		if w, ok := out.(*[]byte); ok {
			*w = b
			return resp.Header, nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return resp.Header, fmt.Errorf("ctl: decoding the answer: %w", err)
		}
	}
	return resp.Header, nil
}

func (c *cli) printResult(res server.WriteResult) {
	for _, w := range res.Warnings {
		fmt.Fprintf(c.out, "warning: %s\n", w)
	}
	if len(res.Changed) == 0 {
		fmt.Fprintf(c.out, "unchanged (revision %d)\n", res.Revision)
		return
	}
	for _, k := range res.Changed {
		fmt.Fprintf(c.out, "%s: changed\n", k)
	}
	fmt.Fprintf(c.out, "revision %d\n", res.Revision)
}

func (c *cli) apply(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	file := fs.String("f", "", "resource file (YAML or JSON; \"-\" = stdin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("apply: -f FILE is required")
	}
	var b []byte
	var err error
	if *file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(*file)
	}
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	// Decode locally first: a syntax error names the file and line.
	if _, err := mesh.Decode(*file, b); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	var res server.WriteResult
	if _, err := c.do(ctx, "POST", "/v1/apply", b, map[string]string{"Content-Type": "application/yaml"}, &res); err != nil {
		return fmt.Errorf("apply %s: %w", *file, err)
	}
	c.printResult(res)
	return nil
}

// splitName reads NAME or NAMESPACE/NAME.
func splitName(name, ns string) (string, string) {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return ns, name
}

// interleaved parses flags that may come after positional arguments
// ("get services orders -o json").
func interleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) get(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	ns := fs.String("n", mesh.DefaultNamespace, "namespace")
	format := fs.String("o", "", "output: table (default for a list), yaml (default for one) or json")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || len(pos) > 2 {
		return errors.New("get: usage: get KIND [NAME] [-o table|yaml|json]")
	}
	k, err := mesh.ParseKind(pos[0])
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	path := "/v1/resources/" + string(k)
	if len(pos) == 2 {
		n, name := splitName(pos[1], *ns)
		path += "/" + n + "/" + name
	}
	out := *format
	if out == "" {
		out = "yaml"
		if len(pos) == 1 {
			out = "table"
		}
	}
	switch out {
	case "table":
		path += "?format=yaml"
	case "yaml", "json":
		path += "?format=" + out
	default:
		return fmt.Errorf("get: -o %q: want table, yaml or json", out)
	}
	var b []byte
	if _, err := c.do(ctx, "GET", path, nil, nil, &b); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	if out != "table" {
		_, err = c.out.Write(b)
		return err
	}
	rs, err := mesh.Decode("answer", b)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tVERSION\tOWNER")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Kind, r.Namespace, r.Name, r.ResourceVersion, dash(r.Owner))
	}
	return tw.Flush()
}

func (c *cli) delete(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("delete", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	ns := fs.String("n", mesh.DefaultNamespace, "namespace")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("delete: usage: delete KIND NAME")
	}
	k, err := mesh.ParseKind(pos[0])
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	n, name := splitName(pos[1], *ns)
	var res server.WriteResult
	if _, err := c.do(ctx, "DELETE", "/v1/resources/"+string(k)+"/"+n+"/"+name, nil, nil, &res); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	c.printResult(res)
	return nil
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func (c *cli) status(ctx context.Context) error {
	var st server.Status
	if _, err := c.do(ctx, "GET", "/v1/status", nil, nil, &st); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	fmt.Fprintf(c.out, "revision %d, %d modules\n", st.Revision, st.Modules)
	if fs := st.FileSource; fs != nil {
		fmt.Fprintf(c.out, "file source %s: %d files, last sync %s", fs.Dir, fs.Files, ago(fs.LastSync))
		if fs.LastError != "" {
			fmt.Fprintf(c.out, ", LAST CHANGE REFUSED:\n  %s", strings.ReplaceAll(fs.LastError, "\n", "\n  "))
		}
		fmt.Fprintln(c.out)
	}
	for _, w := range st.Warnings {
		fmt.Fprintf(c.out, "warning: %s\n", w)
	}
	for _, r := range st.ModuleRefusals {
		fmt.Fprintf(c.out, "module refused %s: %s %s (%s): %s\n", ago(r.At), r.Filter, r.Ref, r.Field, r.Reason)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSERVICE\tDESIRED\tAPPLIED\tSYNC\tWATCHING\tLAST SEEN\tLAST NACK")
	for _, n := range st.Nodes {
		sync := "yes"
		if !n.InSync {
			sync = "NO"
		}
		if !n.Declared {
			sync = "undeclared"
		}
		nack := "-"
		if n.LastNack != nil {
			nack = fmt.Sprintf("v%s %s: %s", n.LastNack.Version, ago(n.LastNack.At), n.LastNack.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\n", n.Node, dash(n.Service), dash(n.Desired), dash(n.Applied), sync, n.Watching, ago(n.LastSeen), nack)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseWeights reads "v1=90,v2=10".
func parseWeights(s string) ([]mesh.Split, error) {
	var out []mesh.Split
	sum := 0
	for _, part := range strings.Split(s, ",") {
		v, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("%q: want VERSION=WEIGHT", part)
		}
		n, err := strconv.Atoi(w)
		if err != nil || n < 0 || n > 100 {
			return nil, fmt.Errorf("%q: the weight must be a number from 0 to 100", part)
		}
		sum += n
		out = append(out, mesh.Split{Version: v, Weight: n})
	}
	if sum != 100 {
		return nil, fmt.Errorf("weights add up to %d, want 100", sum)
	}
	return out, nil
}

// setWeight rewrites the split of the service's traffic rule: every route
// that splits, or else its catch-all route, or else a new catch-all route;
// a service with no rule gets one named after it. The write is conditional
// on the version read and retried on a conflict.
func (c *cli) setWeight(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("set-weight", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	ns := fs.String("n", mesh.DefaultNamespace, "namespace of the service")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("set-weight: usage: set-weight SERVICE VERSION=W[,VERSION=W...]")
	}
	split, err := parseWeights(pos[1])
	if err != nil {
		return fmt.Errorf("set-weight: %w", err)
	}
	svcNS, svcName := splitName(pos[0], *ns)
	svc := mesh.Key{Kind: mesh.KindService, Namespace: svcNS, Name: svcName}
	const attempts = 5
	for i := 0; ; i++ {
		rule, err := c.findRule(ctx, svc)
		if err != nil {
			return fmt.Errorf("set-weight: %w", err)
		}
		method, path := "POST", "/v1/resources"
		if rule == nil {
			rule = &mesh.Resource{Kind: mesh.KindTrafficRule, Name: svcName, Namespace: svcNS,
				Spec: &mesh.TrafficRuleSpec{Service: svcName}}
		} else {
			method, path = "PUT", fmt.Sprintf("/v1/resources/TrafficRule/%s/%s", rule.Namespace, rule.Name)
		}
		setSplit(rule.TrafficRule(), split)
		body, err := json.Marshal(rule)
		if err != nil {
			return err
		}
		var res server.WriteResult
		_, err = c.do(ctx, method, path, body, map[string]string{"Content-Type": "application/json"}, &res)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict && strings.Contains(ae.Body.Error, "resource_version") && i+1 < attempts {
			continue // someone else wrote it: read again
		}
		if err != nil {
			return fmt.Errorf("set-weight: %w", err)
		}
		c.printResult(res)
		return nil
	}
}

func setSplit(t *mesh.TrafficRuleSpec, split []mesh.Split) {
	set := false
	for i := range t.Routes {
		if len(t.Routes[i].Split) > 0 {
			t.Routes[i].Split = append([]mesh.Split(nil), split...)
			set = true
		}
	}
	if set {
		return
	}
	for i := range t.Routes {
		m := t.Routes[i].Match
		if (m.Prefix == "" || m.Prefix == "/") && m.Path == "" && m.Regex == "" && len(m.Methods) == 0 && len(m.Headers) == 0 && len(m.Query) == 0 && len(m.Cookies) == 0 {
			t.Routes[i].Version = ""
			t.Routes[i].Split = append([]mesh.Split(nil), split...)
			return
		}
	}
	t.Routes = append(t.Routes, mesh.RuleRoute{Name: "default", Split: split})
}

// findRule returns the traffic rule routing svc (with its
// resource_version), or nil.
func (c *cli) findRule(ctx context.Context, svc mesh.Key) (*mesh.Resource, error) {
	var b []byte
	if _, err := c.do(ctx, "GET", "/v1/resources/TrafficRule", nil, nil, &b); err != nil {
		return nil, err
	}
	rs, err := mesh.Decode("rules", b)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if mesh.ServiceRef(r.Namespace, r.TrafficRule().Service) == svc {
			return r, nil
		}
	}
	return nil, nil
}

func (c *cli) modules(ctx context.Context, args []string) error {
	if len(args) == 1 && args[0] == "list" {
		var ms []struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
			Refs   int    `json:"refs"`
		}
		if _, err := c.do(ctx, "GET", "/v1/modules", nil, nil, &ms); err != nil {
			return fmt.Errorf("modules list: %w", err)
		}
		for _, m := range ms {
			fmt.Fprintf(c.out, "%s\t%d bytes\t%d refs\n", m.SHA256, m.Size, m.Refs)
		}
		return nil
	}
	if len(args) != 2 || args[0] != "push" {
		return errors.New("modules: usage: modules push FILE | modules list")
	}
	b, err := os.ReadFile(args[1])
	if err != nil {
		return fmt.Errorf("modules push: %w", err)
	}
	var m struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	}
	if _, err := c.do(ctx, "POST", "/v1/modules", b, map[string]string{"Content-Type": "application/wasm"}, &m); err != nil {
		return fmt.Errorf("modules push %s: %w", args[1], err)
	}
	fmt.Fprintln(c.out, m.SHA256)
	return nil
}

func (c *cli) telemetry(ctx context.Context) error {
	var v telemetry.View
	if _, err := c.do(ctx, "GET", "/v1/telemetry", nil, nil, &v); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tREQ/S\tERRORS\tP50\tP99\tTOTAL\tSIDECARS")
	for _, s := range v.Services {
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f%%\t%.2fms\t%.2fms\t%.0f\t%d\n", s.Service, s.RequestsPerSecond, 100*s.ErrorRate, s.P50Ms, s.P99Ms, s.RequestsTotal, s.Sidecars)
	}
	return tw.Flush()
}
