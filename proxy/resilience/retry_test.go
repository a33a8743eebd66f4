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
