package filtertest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"gopkg.in/yaml.v3"
)

// Command implements `weft filter run FILE.wasm [flags]` and `weft filter
// test FILE.wasm -cases cases.yaml`. args start after "filter". It returns
// an error (non-zero exit) on bad usage, a filter that does not load, or a
// failed case.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, commandUsage)
		return errors.New("filter: missing subcommand (run or test)")
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stdout, stderr)
	case "test":
		return testCommand(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, commandUsage)
		return nil
	}
	fmt.Fprint(stderr, commandUsage)
	return fmt.Errorf("filter: unknown subcommand %q", args[0])
}

const commandUsage = `usage:
  weft filter run FILE.wasm [-config JSON] [-method M] [-path /x] [-H 'k: v']... [-body TEXT]
                            [-status N] [-upstream-body TEXT] [-cluster name=host:port]...
  weft filter test FILE.wasm -cases cases.yaml [-config JSON] [-cluster name=host:port]...
`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// common flags of both subcommands.
type commonFlags struct {
	config, configFile string
	clusters           multiFlag
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "plugin configuration (JSON)")
	fs.StringVar(&c.configFile, "config-file", "", "file holding the plugin configuration")
	fs.Var(&c.clusters, "cluster", "call-out cluster `name=host:port` (repeatable)")
}

func (c *commonFlags) harnessConfig() (Config, error) {
	cfg := Config{Name: "filter"}
	switch {
	case c.config != "" && c.configFile != "":
		return cfg, errors.New("-config and -config-file are exclusive")
	case c.config != "":
		cfg.PluginConfig = []byte(c.config)
	case c.configFile != "":
		b, err := os.ReadFile(c.configFile)
		if err != nil {
			return cfg, err
		}
		cfg.PluginConfig = b
	}
	for _, cl := range c.clusters {
		name, addr, ok := strings.Cut(cl, "=")
		if !ok || name == "" || addr == "" {
			return cfg, fmt.Errorf("-cluster %q: want name=host:port", cl)
		}
		if cfg.ClusterAddrs == nil {
			cfg.ClusterAddrs = map[string]string{}
		}
		cfg.ClusterAddrs[name] = addr
	}
	return cfg, nil
}

// parseArgs parses flags that may come before or after the module file.
func parseArgs(fs *flag.FlagSet, args []string) (string, error) {
	var file string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if file != "" {
			return "", fmt.Errorf("unexpected argument %q", args[0])
		}
		file, args = args[0], args[1:]
	}
	if file == "" {
		return "", errors.New("missing FILE.wasm")
	}
	return file, nil
}

func load(ctx context.Context, file string, cfg Config, upstream fasthttp.RequestHandler) (*Harness, error) {
	wasm, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	cfg.Upstream = upstream
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	h, err := Start(ctx, wasm, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return h, nil
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft filter run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	method := fs.String("method", "GET", "request method")
	path := fs.String("path", "/", "request path")
	host := fs.String("host", "example.test", "request Host")
	body := fs.String("body", "", "request body")
	var headers multiFlag
	fs.Var(&headers, "H", "request header `'name: value'` (repeatable)")
	status := fs.Int("status", 200, "status the upstream answers")
	upBody := fs.String("upstream-body", "ok", "body the upstream answers")
	file, err := parseArgs(fs, args)
	if err != nil {
		return fmt.Errorf("filter run: %w", err)
	}
	cfg, err := c.harnessConfig()
	if err != nil {
		return fmt.Errorf("filter run: %w", err)
	}
	req := Req{Method: *method, Path: *path, Host: *host, Body: *body}
	for _, hv := range headers {
		k, v, ok := strings.Cut(hv, ":")
		if !ok {
			return fmt.Errorf("filter run: -H %q: want 'name: value'", hv)
		}
		req.Headers = append(req.Headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	h, err := load(ctx, file, cfg, func(rc *fasthttp.RequestCtx) {
		rc.SetStatusCode(*status)
		rc.SetBodyString(*upBody)
	})
	if err != nil {
		return fmt.Errorf("filter run: %w", err)
	}
	defer h.Close()
	res := h.Request(req)
	if u := res.UpstreamRequest; u != nil {
		fmt.Fprintf(stdout, "upstream received:\n  %s %s\n", u.Method, u.Path)
		printHeaders(stdout, withHost(u.Host, u.Headers))
		printBody(stdout, u.Body)
	} else {
		fmt.Fprintln(stdout, "upstream received: nothing (the filter answered)")
	}
	kind := "upstream"
	if res.LocalReply {
		kind = "local reply"
	}
	fmt.Fprintf(stdout, "client received (%s):\n  %d\n", kind, res.Response.Status)
	printHeaders(stdout, res.Response.Headers)
	printBody(stdout, res.Response.Body)
	if logs := h.Logs(); len(logs) > 0 {
		fmt.Fprintln(stdout, "filter logs:")
		for _, l := range logs {
			fmt.Fprintf(stdout, "  %-5s %s\n", l.Level, l.Message)
		}
	}
	if ms, err := h.Metrics(); err == nil && len(ms) > 0 {
		fmt.Fprintln(stdout, "filter metrics:")
		names := make([]string, 0, len(ms))
		for n := range ms {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			m := ms[n]
			if m.Kind == "histogram" {
				fmt.Fprintf(stdout, "  %s %s count=%d sum=%g\n", m.Kind, n, m.Count, m.Sum)
			} else {
				fmt.Fprintf(stdout, "  %s %s %g\n", m.Kind, n, m.Value)
			}
		}
	}
	return nil
}

func printHeaders(w io.Writer, hs [][2]string) {
	for _, kv := range hs {
		fmt.Fprintf(w, "  %s: %s\n", kv[0], kv[1])
	}
}

func printBody(w io.Writer, b []byte) {
	if len(b) > 0 {
		fmt.Fprintf(w, "\n  %s\n", strings.ReplaceAll(strings.TrimRight(string(b), "\n"), "\n", "\n  "))
	}
}

// Case is one entry of a cases file for `weft filter test`.
type Case struct {
	Name    string      `yaml:"name"`
	Request CaseRequest `yaml:"request"`
	Expect  CaseExpect  `yaml:"expect"`
}

// CaseRequest is the request of a case (and how the upstream answers it).
type CaseRequest struct {
	Method  string            `yaml:"method"`
	Path    string            `yaml:"path"`
	Host    string            `yaml:"host"`
	Headers map[string]string `yaml:"headers"`
	Body    string            `yaml:"body"`
	// UpstreamStatus is the status the upstream answers (default 200).
	UpstreamStatus int `yaml:"upstream_status"`
}

// CaseExpect is what a case checks. Unset fields are not checked.
type CaseExpect struct {
	Status int `yaml:"status"`
	// Headers the client must get (value "" checks presence only).
	Headers map[string]string `yaml:"headers"`
	// UpstreamHeaders the upstream must see; "!" before a name checks
	// absence (value ignored).
	UpstreamHeaders map[string]string `yaml:"upstream_headers"`
	// Forwarded, when set, says whether the request must reach the upstream.
	Forwarded *bool `yaml:"forwarded"`
	// BodyContains is a substring of the client's body.
	BodyContains string `yaml:"body_contains"`
}

// casesFile is the YAML file: a list of cases, or {config:, cases:}.
type casesFile struct {
	Config yaml.Node `yaml:"config"`
	Cases  []Case    `yaml:"cases"`
}

func testCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft filter test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	casesPath := fs.String("cases", "", "YAML file of cases")
	file, err := parseArgs(fs, args)
	if err != nil {
		return fmt.Errorf("filter test: %w", err)
	}
	if *casesPath == "" {
		return errors.New("filter test: -cases is required")
	}
	raw, err := os.ReadFile(*casesPath)
	if err != nil {
		return fmt.Errorf("filter test: %w", err)
	}
	cases, fileConfig, err := parseCases(raw)
	if err != nil {
		return fmt.Errorf("filter test: %s: %w", *casesPath, err)
	}
	cfg, err := c.harnessConfig()
	if err != nil {
		return fmt.Errorf("filter test: %w", err)
	}
	if cfg.PluginConfig == nil {
		cfg.PluginConfig = fileConfig
	}
	h, err := load(ctx, file, cfg, nil)
	if err != nil {
		return fmt.Errorf("filter test: %w", err)
	}
	defer h.Close()
	failed := 0
	for i, tc := range cases {
		name := tc.Name
		if name == "" {
			name = fmt.Sprintf("case %d", i+1)
		}
		problems := runCase(h, tc)
		if len(problems) == 0 {
			fmt.Fprintf(stdout, "PASS %s\n", name)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL %s\n", name)
		for _, p := range problems {
			fmt.Fprintf(stdout, "     %s\n", p)
		}
	}
	fmt.Fprintf(stdout, "%d cases, %d failed\n", len(cases), failed)
	if failed > 0 {
		return fmt.Errorf("filter test: %d of %d cases failed", failed, len(cases))
	}
	return nil
}

// parseCases reads a cases file: a YAML list of cases, or a map with
// `config:` (YAML, turned into JSON for the plugin) and `cases:`.
func parseCases(raw []byte) ([]Case, []byte, error) {
	var list []Case
	if err := yaml.Unmarshal(raw, &list); err == nil {
		return list, nil, nil
	}
	var f casesFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return nil, nil, err
	}
	var cfg []byte
	if f.Config.Kind != 0 {
		var v any
		if err := f.Config.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		if s, ok := v.(string); ok {
			cfg = []byte(s)
		} else {
			b, err := jsonMarshal(v)
			if err != nil {
				return nil, nil, fmt.Errorf("config: %w", err)
			}
			cfg = b
		}
	}
	return f.Cases, cfg, nil
}

func runCase(h *Harness, tc Case) []string {
	r := Req{Method: tc.Request.Method, Path: tc.Request.Path, Host: tc.Request.Host, Body: tc.Request.Body}
	for _, k := range sortedKeys(tc.Request.Headers) {
		r.Headers = append(r.Headers, [2]string{k, tc.Request.Headers[k]})
	}
	if st := tc.Request.UpstreamStatus; st != 0 {
		r.Upstream = func(rc *fasthttp.RequestCtx) { rc.SetStatusCode(st); rc.SetBodyString("ok") }
	}
	res := h.Request(r)
	var problems []string
	e := tc.Expect
	if e.Status != 0 && res.Response.Status != e.Status {
		problems = append(problems, fmt.Sprintf("status %d, want %d", res.Response.Status, e.Status))
	}
	if e.Forwarded != nil && (res.UpstreamRequest != nil) != *e.Forwarded {
		problems = append(problems, fmt.Sprintf("forwarded %v, want %v", res.UpstreamRequest != nil, *e.Forwarded))
	}
	if e.BodyContains != "" && !strings.Contains(string(res.Response.Body), e.BodyContains) {
		problems = append(problems, fmt.Sprintf("body %q does not contain %q", res.Response.Body, e.BodyContains))
	}
	for _, k := range sortedKeys(e.Headers) {
		problems = append(problems, checkHeader("response header", res.Response.Headers, k, e.Headers[k])...)
	}
	for _, k := range sortedKeys(e.UpstreamHeaders) {
		if res.UpstreamRequest == nil {
			problems = append(problems, "upstream headers expected, but the request was not forwarded")
			break
		}
		problems = append(problems, checkHeader("upstream header", res.UpstreamRequest.Headers, k, e.UpstreamHeaders[k])...)
	}
	return problems
}

func checkHeader(what string, hs [][2]string, name, want string) []string {
	if absent, ok := strings.CutPrefix(name, "!"); ok {
		if v, found := lookup(hs, absent); found {
			return []string{fmt.Sprintf("%s %s = %q, want it absent", what, absent, v)}
		}
		return nil
	}
	v, found := lookup(hs, name)
	switch {
	case !found:
		return []string{fmt.Sprintf("%s %s missing", what, name)}
	case want != "" && v != want:
		return []string{fmt.Sprintf("%s %s = %q, want %q", what, name, v, want)}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// withHost puts host first unless the headers already carry it.
func withHost(host string, headers [][2]string) [][2]string {
	for _, h := range headers {
		if strings.EqualFold(h[0], "host") {
			return headers
		}
	}
	return append([][2]string{{"host", host}}, headers...)
}
