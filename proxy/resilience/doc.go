// Package resilience owns what makes a request survive a failing upstream:
// the compiled retry policy (which failures are retried, for which methods,
// how often), exponential backoff with full jitter, and the retry budget that
// keeps retries from multiplying load during an outage. It decides; it never
// sends anything itself (the proxy's upstream loop asks it).
package resilience
