package resilience

import (
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

func TestRetriable(t *testing.T) {
	cases := []struct {
		on     []string
		codes  []int
		f      Failure
		status int
		want   bool
	}{
		{[]string{"5xx"}, nil, NoFailure, 503, true},
		{[]string{"5xx"}, nil, NoFailure, 404, false},
		{[]string{"5xx"}, nil, ConnectFailure, 0, true},
		{[]string{"gateway-error"}, nil, NoFailure, 500, false},
		{[]string{"gateway-error"}, nil, NoFailure, 502, true},
		{[]string{"gateway-error"}, nil, Reset, 0, true},
		{[]string{"connect-failure"}, nil, Reset, 0, false},
		{[]string{"connect-failure"}, nil, ConnectFailure, 0, true},
		{[]string{"connect-failure"}, nil, NoFailure, 503, false},
		{[]string{"reset"}, nil, Reset, 0, true},
		{[]string{"reset"}, nil, Timeout, 0, false},
		{[]string{"retriable-status-codes"}, []int{409}, NoFailure, 409, true},
		{[]string{"retriable-status-codes"}, []int{409}, NoFailure, 410, false},
	}
	for i, c := range cases {
		p, err := Compile(&config.RetryPolicy{On: c.on, RetriableStatusCodes: c.codes})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Retriable(c.f, c.status); got != c.want {
			t.Errorf("case %d %v %v f=%d status=%d: got %v want %v", i, c.on, c.codes, c.f, c.status, got, c.want)
		}
	}
	var nilp *Policy
	if nilp.Retriable(ConnectFailure, 0) || nilp.Attempts() != 0 {
		t.Error("nil policy must never retry")
	}
	if _, err := Compile(&config.RetryPolicy{On: []string{"sometimes"}}); err == nil {
		t.Error("unknown retry_on accepted")
	}
}

func TestMethodAllowed(t *testing.T) {
	p, _ := Compile(&config.RetryPolicy{})
	for m, want := range map[string]bool{"GET": true, "PUT": true, "DELETE": true, "POST": false, "PATCH": false} {
		if p.MethodAllowed([]byte(m)) != want {
			t.Errorf("%s: want %v", m, want)
		}
	}
	p, _ = Compile(&config.RetryPolicy{RetryNonIdempotent: true})
	if !p.MethodAllowed([]byte("POST")) {
		t.Error("retry_non_idempotent should allow POST")
	}
}

func TestBackoffBounded(t *testing.T) {
	p, _ := Compile(&config.RetryPolicy{BackoffBase: config.Duration(10 * time.Millisecond), BackoffMax: config.Duration(40 * time.Millisecond)})
	var sawNonZero bool
	for n := 1; n <= 8; n++ {
		for i := 0; i < 200; i++ {
			d := p.Backoff(n)
			limit := 10 * time.Millisecond << (n - 1)
			if limit > 40*time.Millisecond {
				limit = 40 * time.Millisecond
			}
			if d < 0 || d > limit {
				t.Fatalf("backoff(%d)=%v outside [0,%v]", n, d, limit)
			}
			sawNonZero = sawNonZero || d > 0
		}
	}
	if !sawNonZero {
		t.Fatal("jitter always zero")
	}
}

func TestBudget(t *testing.T) {
	p, _ := Compile(&config.RetryPolicy{BudgetPercent: 50, BudgetMinConcurrency: 1})
	var b Budget
	for i := 0; i < 10; i++ {
		b.StartRequest()
	}
	admitted := 0
	for i := 0; i < 10; i++ {
		if b.TryRetry(p) {
			admitted++
		}
	}
	if admitted != 5 {
		t.Fatalf("admitted %d retries with 10 active at 50%%, want 5", admitted)
	}
	b.EndRetry()
	if !b.TryRetry(p) {
		t.Fatal("a released retry slot was not reusable")
	}
}

// TestCompileDefaults checks the defaults a policy gets for what it leaves
// out, and that what it sets is kept.
func TestCompileDefaults(t *testing.T) {
	cases := []struct {
		name         string
		cfg          config.RetryPolicy
		wantAttempts int
		wantPerTry   time.Duration
	}{
		{"empty policy retries twice", config.RetryPolicy{}, 2, 0},
		{"attempts kept", config.RetryPolicy{Attempts: 5}, 5, 0},
		{"one attempt kept", config.RetryPolicy{Attempts: 1}, 1, 0},
		{"per-try timeout kept", config.RetryPolicy{PerTryTimeout: config.Duration(300 * time.Millisecond)}, 2, 300 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Compile(&c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Attempts(); got != c.wantAttempts {
				t.Errorf("Attempts() = %d, want %d", got, c.wantAttempts)
			}
			if got := p.PerTryTimeout(); got != c.wantPerTry {
				t.Errorf("PerTryTimeout() = %v, want %v", got, c.wantPerTry)
			}
		})
	}
	var nilp *Policy
	if nilp.PerTryTimeout() != 0 || nilp.MethodAllowed([]byte("GET")) || nilp.Backoff(1) != 0 || nilp.GRPC() || nilp.RetriableGRPC(14) {
		t.Error("a nil policy must have no per-try timeout, allow no method, wait no backoff and retry no gRPC status")
	}
	p, err := Compile(nil)
	if p != nil || err != nil {
		t.Errorf("Compile(nil) = %v, %v; want nil, nil", p, err)
	}
}

// maxBackoff is the largest of many Backoff(n) draws: with full jitter over
// [0, window], 500 draws land in the window's top half but with probability
// 2^-500, so it tells the window apart from half of it.
func maxBackoff(p *Policy, n int) time.Duration {
	var m time.Duration
	for i := 0; i < 500; i++ {
		m = max(m, p.Backoff(n))
	}
	return m
}

// TestBackoffWindow checks the jitter window of each retry: the base, doubled
// per retry, capped at the maximum; 25ms and ten times the base by default;
// no wait before the first try.
func TestBackoffWindow(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name      string
		base, max time.Duration
		n         int
		window    time.Duration
	}{
		{"default base", 0, 0, 1, 25 * ms},
		{"default max is ten bases", 0, 0, 8, 250 * ms},
		{"default max from a set base", 10 * ms, 0, 8, 100 * ms},
		{"first retry", 10 * ms, 40 * ms, 1, 10 * ms},
		{"second retry doubles", 10 * ms, 40 * ms, 2, 20 * ms},
		{"third retry doubles again", 10 * ms, 40 * ms, 3, 40 * ms},
		{"capped", 10 * ms, 40 * ms, 6, 40 * ms},
		{"cap not a power of two", 10 * ms, 30 * ms, 3, 30 * ms},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Compile(&config.RetryPolicy{BackoffBase: config.Duration(c.base), BackoffMax: config.Duration(c.max)})
			if err != nil {
				t.Fatal(err)
			}
			got := maxBackoff(p, c.n)
			if got > c.window || got <= c.window/2 {
				t.Errorf("largest Backoff(%d) of 500 = %v, want in (%v, %v]", c.n, got, c.window/2, c.window)
			}
		})
	}
	p, _ := Compile(&config.RetryPolicy{})
	for _, n := range []int{0, -1} {
		if got := maxBackoff(p, n); got != 0 {
			t.Errorf("Backoff(%d) = %v, want 0 (no wait before the first try)", n, got)
		}
	}
}

// TestBackoffInclusive checks the window includes its upper end: with a 1ns
// window both 0 and 1ns come up.
func TestBackoffInclusive(t *testing.T) {
	p, _ := Compile(&config.RetryPolicy{BackoffBase: 1, BackoffMax: 1})
	seen := map[time.Duration]bool{}
	for i := 0; i < 200; i++ {
		seen[p.Backoff(1)] = true
	}
	if len(seen) != 2 || !seen[0] || !seen[1] {
		t.Errorf("Backoff(1) over a 1ns window gave %v, want both 0 and 1ns", seen)
	}
}

// TestRetriableStatuses covers the status half of Retriable: the 5xx class
// from 500 up, and retriable_status_codes, which imply their retry_on.
func TestRetriableStatuses(t *testing.T) {
	eight := []int{400, 401, 403, 404, 405, 409, 410, 429}
	cases := []struct {
		name   string
		on     []string
		codes  []int
		status int
		want   bool
	}{
		{"500 is a 5xx", []string{"5xx"}, nil, 500, true},
		{"499 is not", []string{"5xx"}, nil, 499, false},
		{"599 is a 5xx", []string{"5xx"}, nil, 599, true},
		{"gateway-error 503", []string{"gateway-error"}, nil, 503, true},
		{"gateway-error 504", []string{"gateway-error"}, nil, 504, true},
		{"gateway-error not 501", []string{"gateway-error"}, nil, 501, false},
		{"codes imply retriable-status-codes", []string{"5xx"}, []int{409}, 409, true},
		{"codes alone", nil, []int{429}, 429, true},
		{"no status", []string{"retriable-status-codes"}, []int{409}, 0, false},
		{"last of eight codes", nil, eight, 429, true},
		{"first of eight codes", nil, eight, 400, true},
		{"not among eight codes", nil, eight, 418, false},
		{"retry_on without codes", []string{"retriable-status-codes"}, nil, 409, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Compile(&config.RetryPolicy{On: c.on, RetriableStatusCodes: c.codes})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Retriable(NoFailure, c.status); got != c.want {
				t.Errorf("Retriable(NoFailure, %d) = %v, want %v", c.status, got, c.want)
			}
		})
	}
	if _, err := Compile(&config.RetryPolicy{RetriableStatusCodes: append(eight, 431)}); err == nil {
		t.Error("nine retriable status codes accepted, the most is eight")
	}
}

// TestRetriableFailures covers how each failure without a response is
// retried under each retry_on, and that the default retry_on is 5xx,
// connect-failure and reset.
func TestRetriableFailures(t *testing.T) {
	cases := []struct {
		on   []string
		f    Failure
		want bool
	}{
		{nil, ConnectFailure, true},
		{nil, Reset, true},
		{nil, Timeout, true},
		{nil, NoEndpoint, true},
		{[]string{"reset"}, NoEndpoint, false},
		{[]string{"connect-failure"}, NoEndpoint, true},
		{[]string{"gateway-error"}, Timeout, true},
		{[]string{"connect-failure"}, Timeout, false},
		{[]string{"retriable-status-codes"}, ConnectFailure, false},
		{[]string{"unavailable"}, Reset, false},
	}
	for _, c := range cases {
		p, err := Compile(&config.RetryPolicy{On: c.on})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Retriable(c.f, 0); got != c.want {
			t.Errorf("on %v: Retriable(%d) = %v, want %v", c.on, c.f, got, c.want)
		}
	}
}

// TestRetriableGRPC checks gRPC statuses are retried exactly when named.
func TestRetriableGRPC(t *testing.T) {
	cases := []struct {
		on       []string
		code     int
		wantGRPC bool
		want     bool
	}{
		{[]string{"unavailable"}, 14, true, true},
		{[]string{"unavailable"}, 13, true, false},
		{[]string{"cancelled"}, 1, true, true},
		{[]string{"cancelled"}, 0, true, false},
		{[]string{"deadline-exceeded", "internal", "resource-exhausted"}, 4, true, true},
		{[]string{"deadline-exceeded", "internal", "resource-exhausted"}, 8, true, true},
		{[]string{"deadline-exceeded", "internal", "resource-exhausted"}, 13, true, true},
		{[]string{"deadline-exceeded", "internal", "resource-exhausted"}, 14, true, false},
		{[]string{"unavailable"}, 14 + 32, true, false},
		{[]string{"unavailable"}, -18, true, false},
		{[]string{"5xx"}, 14, false, false},
	}
	for _, c := range cases {
		p, err := Compile(&config.RetryPolicy{On: c.on})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.GRPC(); got != c.wantGRPC {
			t.Errorf("on %v: GRPC() = %v, want %v", c.on, got, c.wantGRPC)
		}
		if got := p.RetriableGRPC(c.code); got != c.want {
			t.Errorf("on %v: RetriableGRPC(%d) = %v, want %v", c.on, c.code, got, c.want)
		}
	}
}

// TestBudgetFollowsActiveRequests checks the budget's share tracks requests
// as they end, with the minimum as its floor and the defaults of 20% and 10.
func TestBudgetFollowsActiveRequests(t *testing.T) {
	admit := func(b *Budget, p *Policy) int {
		n := 0
		for b.TryRetry(p) {
			n++
		}
		for i := 0; i < n; i++ {
			b.EndRetry()
		}
		return n
	}
	p, _ := Compile(&config.RetryPolicy{BudgetPercent: 50, BudgetMinConcurrency: 2})
	var b Budget
	for i := 0; i < 20; i++ {
		b.StartRequest()
	}
	if got := admit(&b, p); got != 10 {
		t.Fatalf("20 active at 50%%: admitted %d, want 10", got)
	}
	for i := 0; i < 14; i++ {
		b.EndRequest()
	}
	if b.Active() != 6 {
		t.Fatalf("Active() = %d after 20 starts and 14 ends, want 6", b.Active())
	}
	if got := admit(&b, p); got != 3 {
		t.Fatalf("6 active at 50%%: admitted %d, want 3", got)
	}
	for i := 0; i < 6; i++ {
		b.EndRequest()
	}
	if got := admit(&b, p); got != 2 {
		t.Fatalf("0 active, minimum 2: admitted %d, want 2", got)
	}

	def, _ := Compile(&config.RetryPolicy{})
	var d Budget
	for i := 0; i < 100; i++ {
		d.StartRequest()
	}
	if got := admit(&d, def); got != 20 {
		t.Fatalf("100 active at the default 20%%: admitted %d, want 20", got)
	}
	var quiet Budget
	if got := admit(&quiet, def); got != 10 {
		t.Fatalf("0 active, default minimum: admitted %d, want 10", got)
	}
	if (&Budget{}).TryRetry(nil) {
		t.Error("a nil policy admitted a retry")
	}
}

// A disabled policy compiles to none: no retries, the default ones
// included.
func TestCompileDisabled(t *testing.T) {
	p, err := Compile(&config.RetryPolicy{Disabled: true, Attempts: 3, On: []string{"connect-failure"}})
	if err != nil || p != nil {
		t.Fatalf("disabled policy compiled to %+v, %v; want nil", p, err)
	}
	if p.Attempts() != 0 || p.Retriable(ConnectFailure, 0) {
		t.Fatal("a nil policy retries")
	}
}
