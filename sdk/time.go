package sdk

import (
	"time"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// Now is the host's wall clock.
func Now() time.Time { return time.Unix(0, int64(abi.CurrentTimeNanos())) }

// SetTickPeriod makes the host call the Plugin's OnTick (Ticker) every d; 0
// stops ticks. Call it from the Plugin's constructor or its callbacks.
func SetTickPeriod(d time.Duration) error {
	return statusErr(abi.SetTickPeriod(uint32(d / time.Millisecond)))
}
