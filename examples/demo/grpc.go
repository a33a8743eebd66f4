package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/examples/demo/grpcsvc"
)

// grpcHealthWait bounds how long the tour waits for the sidecar's gRPC
// health checks (every 300ms, two failures to leave) to act.
const grpcHealthWait = 5 * time.Second

// grpc shows gRPC through the sidecar: calls balanced over the two
// servers by service name, then a server saying NOT_SERVING through its
// health service leaving the balancer, and rejoining it.
func (t *tourer) grpc(ctx context.Context, sidecar string, servers []*grpcsvc.Server) {
	cc, err := grpcsvc.Dial(sidecar)
	if err != nil {
		fmt.Fprintf(t.out, "gRPC: %v\n", err)
		return
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	calls := func() string {
		got, err := grpcsvc.Unary(ctx, cc, 10)
		if err != nil {
			return err.Error()
		}
		return "10 UnaryCalls answered by " + grpcsvc.Counts(got)
	}
	msgs, by, err := grpcsvc.Stream(ctx, cc, 3)
	stream := fmt.Sprintf("a server stream of %d messages from %s", msgs, by)
	if err != nil {
		stream = err.Error()
	}
	status, err := grpcsvc.Check(ctx, cc)
	if err != nil {
		status = err.Error()
	}
	fmt.Fprintf(t.out, "gRPC through the sidecar (h2c, routed by service %s): %s; %s; Health/Check: %s\n",
		grpcsvc.Service, calls(), stream, status)

	a := servers[0]
	a.SetServing(false)
	fmt.Fprintf(t.out, "gRPC health check: %s set NOT_SERVING; %s; %s\n", a.Name, t.waitHealth(a.Addr(), false), calls())
	a.SetServing(true)
	fmt.Fprintf(t.out, "gRPC health check: %s SERVING again; %s; %s\n", a.Name, t.waitHealth(a.Addr(), true), calls())
}

// waitHealth polls the admin's /clusters until endpoint addr of the
// grpc-test cluster is (healthy) or is not, and says how long it took.
func (t *tourer) waitHealth(addr string, healthy bool) string {
	start := time.Now()
	for time.Since(start) < grpcHealthWait {
		if h, ok := t.endpointHealthy("grpc-test", addr); ok && h == healthy {
			took := time.Since(start).Round(100 * time.Millisecond)
			if healthy {
				return fmt.Sprintf("the sidecar's checks put it back in the balancer in %v", took)
			}
			return fmt.Sprintf("the sidecar's checks took it out of the balancer in %v", took)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("its health in /clusters did not change within %v", grpcHealthWait)
}

// endpointHealthy reads an endpoint's health from the admin's /clusters.
func (t *tourer) endpointHealthy(cluster, addr string) (healthy, ok bool) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.admin + "/clusters")
	if err := t.c.DoTimeout(req, resp, 3*time.Second); err != nil {
		return false, false
	}
	var clusters []struct {
		Name      string `json:"name"`
		Endpoints []struct {
			Address string `json:"address"`
			Healthy bool   `json:"healthy"`
		} `json:"endpoints"`
	}
	if json.Unmarshal(resp.Body(), &clusters) != nil {
		return false, false
	}
	for _, c := range clusters {
		for _, e := range c.Endpoints {
			if c.Name == cluster && e.Address == addr {
				return e.Healthy, true
			}
		}
	}
	return false, false
}

// tryGRPC prints the commands that call the gRPC service through the
// sidecar: grpcurl (by server reflection) and, needing nothing but Go,
// examples/demo/grpccall; comments aligned.
func tryGRPC(w io.Writer, sidecar string) {
	lines := [][2]string{
		{"grpcurl -plaintext " + sidecar + " list", "the services, by reflection through the sidecar"},
		{"grpcurl -plaintext -v -d '{\"response_size\": 3}' " + sidecar + " " + grpcsvc.Service + "/UnaryCall", "x-served-by: which server answered"},
		{"grpcurl -plaintext -d '{\"service\": \"" + grpcsvc.Service + "\"}' " + sidecar + " grpc.health.v1.Health/Check", "what the sidecar's health checks ask"},
		{"go run ./examples/demo/grpccall -addr " + sidecar, "the same calls, with nothing to install"},
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	fmt.Fprintf(w, "\ngRPC through the sidecar (grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest):\n")
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  # %s\n", width, l[0], l[1])
	}
}
