//go:build !unix

package e2e

import "time"

// ProcessCPU is not measured on this platform (0: no cpu-ns/op reported).
func ProcessCPU() time.Duration { return 0 }
