package telemetry

import (
	"math"
	"sort"
)

// Quantile estimates the q-quantile (0..1) from cumulative bucket counts
// keyed by upper bound, interpolating linearly inside the bucket, as
// Prometheus' histogram_quantile does. A quantile in the +Inf bucket is the
// highest finite bound. It returns NaN for an empty histogram.
func Quantile(q float64, buckets map[float64]float64) float64 {
	bounds := make([]float64, 0, len(buckets))
	for ub := range buckets {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return math.NaN()
	}
	total := buckets[bounds[len(bounds)-1]]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, ub := range bounds {
		c := buckets[ub]
		if c >= rank {
			if math.IsInf(ub, 1) {
				return prevBound
			}
			if c == prevCount {
				return ub
			}
			return prevBound + (ub-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = ub, c
	}
	return prevBound
}
