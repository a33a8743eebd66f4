package loadgen

import (
	"os"
	"testing"

	"github.com/weftmesh/weft/bench/internal/leakcheck"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
