package main

import (
	"testing"

	"github.com/weftmesh/weft/examples/demo/grpcsvc"
)

// run makes its calls against a demo gRPC server (the demo's own test
// calls it through the sidecar).
func TestRunCallsTheDemoService(t *testing.T) {
	s, err := grpcsvc.Start("grpc-a")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := run(s.Addr(), 2); err != nil {
		t.Fatal(err)
	}
	s.SetServing(false)
	if err := run(s.Addr(), 1); err != nil {
		t.Fatal(err) // NOT_SERVING is an answer, not an error
	}
}
