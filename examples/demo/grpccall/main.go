// Command grpccall calls the gRPC service of `weft demo` through its
// sidecar, with nothing to install but Go:
//
//	go run ./examples/demo/grpccall -addr 127.0.0.1:10000
//
// It makes unary calls (and says which endpoint answered each), one
// server-streaming call and a health check, as grpcurl would.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/weftmesh/weft/examples/demo/grpcsvc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:10000", "the demo sidecar's address (weft demo prints it)")
	n := flag.Int("n", 6, "unary calls to make")
	flag.Parse()
	if err := run(*addr, *n); err != nil {
		fmt.Fprintf(os.Stderr, "grpccall: %v\n", err)
		os.Exit(1)
	}
}

func run(addr string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := grpcsvc.Dial(addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	got, err := grpcsvc.Unary(ctx, cc, n)
	if err != nil {
		return err
	}
	fmt.Printf("%d x %s/UnaryCall through %s, answered by: %s\n", n, grpcsvc.Service, addr, grpcsvc.Counts(got))
	msgs, by, err := grpcsvc.Stream(ctx, cc, 3)
	if err != nil {
		return err
	}
	fmt.Printf("%s/StreamingOutputCall: %d messages streamed from %s\n", grpcsvc.Service, msgs, by)
	status, err := grpcsvc.Check(ctx, cc)
	if err != nil {
		return err
	}
	fmt.Printf("grpc.health.v1.Health/Check {service: %s}: %s\n", grpcsvc.Service, status)
	return nil
}
