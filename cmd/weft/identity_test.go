package main

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestControlAddressList: --control takes several replicas; a bad item or
// a mix of http and https is refused with a reason before anything is
// dialled.
func TestControlAddressList(t *testing.T) {
	for in, want := range map[string]string{
		"https://a:7070,a:7070":           `--control: control plane address 2 "a:7070": want https://HOST[:PORT]`,
		"https://a:7070,http://b:7070":    "--control mixes http:// and https:// replicas",
		"https://a:7070, https://b:7070 ": "--control-ca FILE is required",
	} {
		_, err := meshIdentity(context.Background(), in, "n1", "", "", "", 0, zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--control %q: %v, want %q", in, err, want)
		}
	}
	if _, err := meshIdentity(context.Background(), "http://a:7070,http://b:7070", "n1", "", "", "", 0, zap.NewNop()); err != nil {
		t.Errorf("two plain-http replicas: %v", err)
	}
}
