package cluster

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

// weighted makes endpoints named a, b, c... (port 1, 2, 3...) with weights.
func weighted(ws ...int) []config.Endpoint {
	eps := make([]config.Endpoint, len(ws))
	for i, w := range ws {
		eps[i] = config.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", i+1), Weight: w}
	}
	return eps
}

// letter maps the endpoints of weighted() back to a, b, c...
func letter(e *Endpoint) string {
	var port int
	_, _ = fmt.Sscanf(e.Address(), "127.0.0.1:%d", &port)
	return string(rune('a' + port - 1))
}

func TestSmoothRoundRobinSequence(t *testing.T) {
	tests := []struct {
		weights []int
		// want is one period: 5:1:1 is the example nginx documents for
		// its smooth weighted round robin; the others are worked by hand.
		want string
	}{
		{[]int{5, 1, 1}, "aabacaa"},
		{[]int{1, 1, 1}, "abc"},
		{[]int{2, 1}, "aba"},
		{[]int{4, 2, 1}, "abacaba"},
		{[]int{10, 5, 1, 1}, ""}, // properties only
		{[]int{100, 100, 3}, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			c := start(t, config.Cluster{Name: "rr", Endpoints: weighted(tt.weights...)}, Options{})
			total := 0
			for _, w := range tt.weights {
				total += w
			}
			var seq strings.Builder
			for range 3 * total {
				seq.WriteString(letter(c.Pick(0, false, nil)))
			}
			got := seq.String()
			if tt.want != "" && got != strings.Repeat(tt.want, 3) {
				t.Fatalf("sequence %s, want %s repeated", got, tt.want)
			}
			// Every period holds each endpoint exactly weight times, and
			// smoothness: no endpoint runs longer than ceil(w/others)+1.
			for p := range 3 {
				period := got[p*total : (p+1)*total]
				for i, w := range tt.weights {
					if n := strings.Count(period, string(rune('a'+i))); n != w {
						t.Fatalf("period %d has %d × %c, want %d (%s)", p, n, 'a'+i, w, period)
					}
				}
			}
			for i, w := range tt.weights {
				others := total - w
				if others == 0 {
					continue
				}
				limit := (w+others-1)/others + 1
				run := strings.Repeat(string(rune('a'+i)), limit+1)
				if strings.Contains(got, run) {
					t.Fatalf("%c runs more than %d in a row: %s", 'a'+i, limit, got)
				}
			}
		})
	}
}

func TestRoundRobinExcludeAndUnusable(t *testing.T) {
	c := start(t, config.Cluster{Name: "rr", Endpoints: weighted(5, 1, 1), PanicThreshold: -1}, Options{})
	a := c.Pick(0, false, nil)
	if letter(a) != "a" {
		t.Fatalf("first pick %s", letter(a))
	}
	for range 50 {
		if e := c.Pick(0, false, a); e == a {
			t.Fatal("Pick returned the excluded endpoint with others available")
		}
	}
	// Take b out: the schedule is rebuilt over a and c (5:1).
	b := endpointByAddr(c, "127.0.0.1:2")
	b.unhealthy.Store(true)
	c.rebuild()
	got := picks(c, 600)
	if got["127.0.0.1:2"] != 0 || got["127.0.0.1:1"] != 500 || got["127.0.0.1:3"] != 100 {
		t.Fatalf("with b unhealthy: %v, want a 500, c 100", got)
	}
	// Only a usable, and excluded: a is still returned (the only choice).
	endpointByAddr(c, "127.0.0.1:3").unhealthy.Store(true)
	c.rebuild()
	if e := c.Pick(0, false, a); e != a {
		t.Fatalf("only choice excluded: got %v", e)
	}
}

func TestSmoothScheduleScalesHugeWeights(t *testing.T) {
	c := start(t, config.Cluster{Name: "rr", Endpoints: weighted(1_000_000, 999_999, 1)}, Options{})
	s := c.view.Load().schedule
	if len(s) == 0 || len(s) > maxSchedule {
		t.Fatalf("schedule length %d, want 1..%d", len(s), maxSchedule)
	}
	n := map[string]int{}
	for _, e := range s {
		n[letter(e)]++
	}
	if n["c"] < 1 || n["a"] < n["b"] || n["b"] < len(s)/2-2 {
		t.Fatalf("scaled schedule counts %v", n)
	}
}

func BenchmarkPickRoundRobin(b *testing.B) {
	for _, ws := range [][]int{{1, 1, 1, 1, 1, 1, 1, 1}, {5, 1, 1, 3, 2, 8, 1, 1}} {
		c := start(b, config.Cluster{Name: "rr", Endpoints: weighted(ws...)}, Options{})
		b.Run(fmt.Sprint(ws), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.Pick(0, false, nil) == nil {
					b.Fatal("nil")
				}
			}
		})
		b.Run(fmt.Sprint(ws)+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.Pick(0, false, nil)
				}
			})
		})
	}
}

// lockedSmoothRR is the textbook smooth weighted round robin under one
// mutex, kept only to measure against the schedule-based picker.
type lockedSmoothRR struct {
	mu    sync.Mutex
	hosts []*Endpoint
	cur   []int64
}

func (l *lockedSmoothRR) pick() *Endpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	best, total := -1, int64(0)
	for i, e := range l.hosts {
		if !e.usable() {
			continue
		}
		l.cur[i] += int64(e.weight)
		total += int64(e.weight)
		if best < 0 || l.cur[i] > l.cur[best] {
			best = i
		}
	}
	l.cur[best] -= total
	return l.hosts[best]
}

func BenchmarkPickRoundRobinLocked(b *testing.B) {
	c := start(b, config.Cluster{Name: "rr", Endpoints: weighted(5, 1, 1, 3, 2, 8, 1, 1)}, Options{})
	eps := c.view.Load().hosts
	l := &lockedSmoothRR{hosts: eps, cur: make([]int64, len(eps))}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.pick()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.pick()
			}
		})
	})
}

// PickUntried avoids every endpoint tried while an untried one is usable,
// with every balancer (a ring hash key keeps pointing at its owner, a
// heavy weight keeps winning the draw), and falls back to the tried ones
// when nothing else is left.
func TestPickUntried(t *testing.T) {
	for _, lb := range []string{"round_robin", "least_request", "random", "ring_hash"} {
		t.Run(lb, func(t *testing.T) {
			// The first two hold nearly all the weight.
			eps := []config.Endpoint{{Address: "127.0.0.1:1", Weight: 1000}, {Address: "127.0.0.1:2", Weight: 1000},
				{Address: "127.0.0.1:3", Weight: 1}}
			c := start(t, config.Cluster{Name: "u", LB: lb, Endpoints: eps}, Options{})
			all := c.view.Load().set.endpoints
			for k := range uint64(200) {
				key := k * 0x9e3779b97f4a7c15
				if got := c.PickUntried(key, true, all[:2]); got != all[2] {
					t.Fatalf("key %d: tried the first two, got %s", k, got.Address())
				}
				if got := c.PickUntried(key, true, []*Endpoint{all[2], all[0]}); got != all[1] {
					t.Fatalf("key %d: tried the third and first, got %s", k, got.Address())
				}
				if got := c.PickUntried(key, true, all); got == nil || got == all[2] {
					t.Fatalf("key %d: every endpoint tried: got %v, want one of them other than the last tried", k, got)
				}
			}
		})
	}
}
