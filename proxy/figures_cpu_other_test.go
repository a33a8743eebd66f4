//go:build !unix

package proxy

import "time"

// processCPU is not measured on this OS: the figures log 0.
func processCPU() time.Duration { return 0 }
