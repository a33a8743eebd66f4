package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Config is the telemetry filter's configuration.
type Config struct {
	// Prefix starts every metric name (default "http").
	Prefix string `json:"prefix,omitempty"`
	// StatusClasses counts "2xx" instead of "200" (default false).
	StatusClasses bool `json:"status_classes,omitempty"`
	// MaxRoutes bounds the number of distinct route labels; later routes
	// are counted as "other" (default 100).
	MaxRoutes int `json:"max_routes,omitempty"`
	// SampleRate is the share of requests logged, 0..1 (default 0).
	SampleRate float64 `json:"sample_rate,omitempty"`
	// LogHeaders are request headers included in sampled log lines.
	LogHeaders []string `json:"log_headers,omitempty"`
	// LogErrors logs every response with status >= 500, sampled or not.
	LogErrors bool `json:"log_errors,omitempty"`
}

func parseConfig(raw []byte) (*Config, error) {
	c := Config{}
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	if c.Prefix == "" {
		c.Prefix = "http"
	}
	if c.MaxRoutes == 0 {
		c.MaxRoutes = 100
	}
	if c.MaxRoutes < 0 {
		return nil, fmt.Errorf("config: max_routes %d: want at least 1", c.MaxRoutes)
	}
	if c.SampleRate < 0 || c.SampleRate > 1 {
		return nil, fmt.Errorf("config: sample_rate %v: want 0..1", c.SampleRate)
	}
	for i, h := range c.LogHeaders {
		if h == "" {
			return nil, fmt.Errorf("config: log_headers[%d] is empty", i)
		}
		c.LogHeaders[i] = strings.ToLower(h)
	}
	return &c, nil
}

// statusLabel renders a status for a metric name.
func (c *Config) statusLabel(code int) string {
	if c.StatusClasses {
		if code < 100 || code > 599 {
			return "unknown"
		}
		return strconv.Itoa(code/100) + "xx"
	}
	return strconv.Itoa(code)
}

// requestsName is the counter of requests by route and status.
func (c *Config) requestsName(route, status string) string {
	return c.Prefix + "_requests_total{route=" + route + ",code=" + status + "}"
}

// logLine formats a sampled request.
func logLine(method, path string, status int, durMicros int64, route string, headers [][2]string) string {
	var b strings.Builder
	b.WriteString("request ")
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(strconv.Quote(path))
	b.WriteString(" status=")
	b.WriteString(strconv.Itoa(status))
	b.WriteString(" duration_us=")
	b.WriteString(strconv.FormatInt(durMicros, 10))
	b.WriteString(" route=")
	b.WriteString(route)
	for _, h := range headers {
		b.WriteByte(' ')
		b.WriteString(h[0])
		b.WriteByte('=')
		b.WriteString(strconv.Quote(h[1]))
	}
	return b.String()
}
