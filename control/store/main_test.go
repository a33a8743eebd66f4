package store

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when goroutines the tests started (etcd members,
// clients, stores' watches, leader sessions) outlive them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
