package client

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	minD, maxD := 100*time.Millisecond, 2*time.Second
	for n := 0; n < 20; n++ {
		cap := minD << min(n, 30)
		if cap > maxD {
			cap = maxD
		}
		for i := 0; i < 50; i++ {
			d := backoff(n, minD, maxD)
			if d < cap/2 || d > cap {
				t.Fatalf("attempt %d: %v outside [%v, %v]", n, d, cap/2, cap)
			}
		}
	}
}
