package conformance_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/weftmesh/weft/proxy/wasm"
)

// TestProperties: the guest reads Envoy-named properties with
// proxy_get_property and echoes them in headers; each must match what the
// client sent, the connection, the plugin spec, the node, and (on the
// response path) the route, cluster and upstream the proxy used. A value the
// guest set with proxy_set_property on the request path reads back later.
func TestProperties(t *testing.T) {
	t.Parallel()
	env := wasm.Env{NodeID: "node-7", NodeMetadata: map[string]string{"REGION": "eu-west-1"}}
	spec := wasm.PluginSpec{Name: unique("props"), RootID: "props_root", VMID: unique("vm-props"), Module: goGuest(t, "properties")}
	plugin := loadPlugin(t, spec, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	res := px.mustDo(t, request{
		Method: "DELETE",
		Path:   "/props/a?x=1",
		Host:   "props.test",
		Header: [][2]string{{"X-Client-Tag", "tag-42"}},
	})
	if res.Status != 200 || res.Upstream == nil {
		t.Fatalf("status %d, body %q", res.Status, res.Body)
	}
	dialed := px.Dialed()
	if len(dialed) != 1 {
		t.Fatalf("client made %d connections, want 1", len(dialed))
	}
	src, srcPort := splitHostPort(t, dialed[0])
	dst, dstPort := splitHostPort(t, px.client.Addr)
	upHost, upPort := splitHostPort(t, up.Addr)

	request := map[string]string{
		"x-prop-request-path":         "/props/a?x=1",
		"x-prop-request-url-path":     "/props/a",
		"x-prop-request-host":         "props.test",
		"x-prop-request-scheme":       "http",
		"x-prop-request-method":       "DELETE",
		"x-prop-request-id":           res.ID,
		"x-prop-request-protocol":     "HTTP/1.1",
		"x-prop-request-time":         strconv.FormatInt(res.Trace.StartTime.UnixNano(), 10),
		"x-prop-source-address":       src + ":" + srcPort,
		"x-prop-source-port":          srcPort,
		"x-prop-destination-address":  dst + ":" + dstPort,
		"x-prop-destination-port":     dstPort,
		"x-prop-connection-id":        strconv.FormatUint(res.Trace.ConnID, 10),
		"x-prop-connection-mtls":      "false",
		"x-prop-plugin-name":          spec.Name,
		"x-prop-plugin-root-id":       spec.RootID,
		"x-prop-plugin-vm-id":         spec.VMID,
		"x-prop-node-id":              "node-7",
		"x-prop-node-metadata-REGION": "eu-west-1",
		"x-prop-listener-direction":   "2", // Envoy TrafficDirection OUTBOUND

		"x-prop-request-headers-x-client-tag": "tag-42",
		"x-prop-unknown":                      "notfound",
	}
	for h, want := range request {
		if got := res.Upstream.Get(h); got != want {
			t.Errorf("request-path property %s = %q, want %q", h, got, want)
		}
	}
	if e := res.Upstream.Get("x-set-property-error"); e != "" {
		t.Errorf("proxy_set_property(weft.note) failed: %s", e)
	}

	response := map[string]string{
		"x-prop-response-code":    "200",
		"x-prop-cluster-name":     "backend",
		"x-prop-route-name":       "conformance-route",
		"x-prop-upstream-address": upHost + ":" + upPort,
		"x-prop-weft-note":        "set-by-guest",
	}
	for h, want := range response {
		if got := res.Get(h); got != want {
			t.Errorf("response-path property %s = %q, want %q", h, got, want)
		}
	}
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}
