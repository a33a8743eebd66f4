package config

import (
	"errors"
	"strings"
	"testing"
)

func TestTracingDefaultsAndValidation(t *testing.T) {
	base := "node: {id: orders-1}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{direct_response: {status: 200}}]}]\n"
	c, err := Parse("t.yaml", []byte("tracing: {enabled: true, otlp_endpoint: 'http://127.0.0.1:4318/v1/traces'}\n"+base))
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Tracing
	if tr.ServiceName != "orders-1" || tr.SamplingPercent == nil || *tr.SamplingPercent != 100 || tr.ForceHeader != "x-weft-trace" ||
		tr.BatchSize != 512 || tr.QueueSize != 4096 || tr.FlushInterval.D().String() != "1s" || tr.ExportTimeout.D().String() != "5s" {
		t.Fatalf("defaults: %+v", tr)
	}
	c, err = Parse("t.yaml", []byte("tracing: {enabled: true, sampling_percent: 0, otlp_endpoint: 'http://c:4318/v1/traces'}\n"+base))
	if err != nil || *c.Tracing.SamplingPercent != 0 {
		t.Fatalf("sampling_percent 0 must stay 0: %v %+v", err, c)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"tracing: {enabled: true}", "tracing.otlp_endpoint: otlp_endpoint is required"},
		{"tracing: {enabled: true, otlp_endpoint: 'ftp://x/'}", "is not an http:// or https:// URL"},
		{"tracing: {sampling_percent: 101}", "tracing.sampling_percent: must be between 0 and 100"},
		{"tracing: {force_header: 'a b'}", "tracing.force_header: header name"},
		{"tracing: {batch_size: 100, queue_size: 10}", "tracing.batch_size: batch_size 100 is larger than queue_size 10"},
		{"tracing: {flush_interval: -1s}", "tracing.flush_interval: duration \"-1s\" is negative"},
	} {
		_, err := Parse("t.yaml", []byte(bad.yaml+"\n"+base))
		var es Errors
		if !errors.As(err, &es) || !strings.Contains(err.Error(), bad.want) || !strings.HasPrefix(err.Error(), "t.yaml:1: ") {
			t.Errorf("%s: got %v, want t.yaml:1: ...%s", bad.yaml, err, bad.want)
		}
	}
}
