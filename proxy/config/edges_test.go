package config

import (
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// validateRaw validates doc as written, with no defaults applied (as a
// config received as JSON, or built in code, may be).
func validateRaw(t *testing.T, doc string) error {
	t.Helper()
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	return Validate("raw.yaml", []byte(doc), &c)
}

const edgeCluster = "clusters:\n  - name: c1\n    endpoints: [{address: 127.0.0.1:8080}]\n  - name: c2\n    endpoints: [{address: 127.0.0.1:8081}]\n"

// edgeListener is one listener whose only route forwards with action.
func edgeListener(name, addr, listenerExtra, action string) string {
	return "  - name: " + name + "\n    address: " + addr + "\n" + listenerExtra +
		"    virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: " + action + "}]}]\n"
}

// TestValidationEdges: values on either side of each limit, with and
// without defaults applied.
func TestValidationEdges(t *testing.T) {
	one := func(listenerExtra, action string) string {
		return "listeners:\n" + edgeListener("l", "127.0.0.1:0", listenerExtra, action) + edgeCluster
	}
	window := func(n int64) string {
		return one(fmt.Sprintf("    http2: {initial_stream_window_size: %d, initial_connection_window_size: %d}\n", n, n), "{cluster: c1}")
	}
	const tracing = "tracing: {enabled: true, otlp_endpoint: 'http://127.0.0.1:4318/v1/traces', "
	for _, tc := range []struct {
		name string
		raw  bool // validate as written, without defaults
		doc  string
		want string // "" for accepted
	}{
		{"listeners on port 0 may share the address", false,
			"listeners:\n" + edgeListener("a", "127.0.0.1:0", "", "{cluster: c1}") + edgeListener("b", "127.0.0.1:0", "", "{cluster: c1}") + edgeCluster, ""},
		{"listeners on one port", false,
			"listeners:\n" + edgeListener("a", "127.0.0.1:8443", "", "{cluster: c1}") + edgeListener("b", "127.0.0.1:8443", "", "{cluster: c1}") + edgeCluster,
			`listeners[1].address: duplicate listener address "127.0.0.1:8443"`},
		{"smallest window", false, window(65535), ""},
		{"largest window", false, window(1<<31 - 1), ""},
		{"window too small", false, window(65534), "initial_stream_window_size: 65534 is outside HTTP/2's window range"},
		{"window too large", false, window(1 << 31), "initial_connection_window_size: 2147483648 is outside HTTP/2's window range"},
		{"a zero weight", false, one("", "{weighted_clusters: [{cluster: c1, weight: 0}, {cluster: c2, weight: 100}]}"), ""},
		{"a negative weight", false, one("", "{weighted_clusters: [{cluster: c1, weight: -1}, {cluster: c2, weight: 101}]}"), "weight must not be negative, got -1"},
		{"per-try timeout equal to the route's", false, one("", "{cluster: c1, timeout: 2s, retry: {per_try_timeout: 2s}}"), ""},
		{"per-try timeout longer than the route's", false, one("", "{cluster: c1, timeout: 2s, retry: {per_try_timeout: 3s}}"), "per_try_timeout 3s is longer than the route timeout 2s"},
		{"per-try timeout with no route timeout", true, one("", "{cluster: c1, retry: {per_try_timeout: 3s}}"), ""},
		{"backoff max equal to base", false, one("", "{cluster: c1, retry: {backoff_base: 1s, backoff_max: 1s}}"), ""},
		{"backoff max under base", false, one("", "{cluster: c1, retry: {backoff_base: 1s, backoff_max: 999ms}}"), "backoff_max 999ms is shorter than backoff_base 1s"},
		{"backoff base with no max", true, one("", "{cluster: c1, retry: {backoff_base: 1s}}"), ""},
		{"a batch the size of the queue", false, tracing + "batch_size: 10, queue_size: 10}\n" + one("", "{cluster: c1}"), ""},
		{"a batch with no queue size", true, tracing + "batch_size: 10}\n" + one("", "{cluster: c1}"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.raw {
				err = validateRaw(t, tc.doc)
			} else {
				_, err = Parse("e.yaml", []byte(tc.doc))
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v\n%s", err, tc.doc)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q\n%s", err, tc.want, tc.doc)
			}
		})
	}
}

// TestUnknownClusterListsTheDeclaredOnes: the hint lists up to 10
// declared names, sorted, then "...".
func TestUnknownClusterListsTheDeclaredOnes(t *testing.T) {
	for _, n := range []int{10, 11} {
		var b strings.Builder
		b.WriteString("listeners:\n" + edgeListener("l", "127.0.0.1:0", "", "{cluster: nope}") + "clusters:\n")
		var names []string
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "  - name: c%02d\n    endpoints: [{address: 127.0.0.1:80}]\n", i)
			names = append(names, fmt.Sprintf("%q", fmt.Sprintf("c%02d", i)))
		}
		_, err := Parse("u.yaml", []byte(b.String()))
		want := "(declared: " + strings.Join(names[:min(n, 10)], ", ")
		if n > 10 {
			want += ", ...)"
		} else {
			want += ")"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%d clusters: %v, want %q", n, err, want)
		}
	}
}
