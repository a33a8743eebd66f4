package grpcload

import (
	"testing"

	"github.com/weftmesh/weft/bench/internal/leaktest"
)

// TestMain fails the run when a goroutine the tests started is still
// running 5s after they passed.
func TestMain(m *testing.M) { leaktest.Main(m) }
