package route

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// upstreams makes n upstreams with the given weights and fresh health, as
// provisioning would.
func upstreams(weights ...int) []*Upstream {
	out := make([]*Upstream, len(weights))
	for i, w := range weights {
		out[i] = &Upstream{Weight: w, id: fmt.Sprintf("u%d", i), state: new(health)}
	}
	return out
}

func picks(p Policy, ups []*Upstream, n int) string {
	var b strings.Builder
	state := new(PolicyState)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	for range n {
		b.WriteString(p.Select(ups, state, r).id[1:])
	}
	return b.String()
}

func TestRoundRobinPolicy(t *testing.T) {
	if got := picks(RoundRobin{}, upstreams(1, 1, 1), 7); got != "0120120" {
		t.Fatalf("order %s", got)
	}
}

func TestWeightedRoundRobinPolicy(t *testing.T) {
	// Smooth: a's three turns are spread out, never a a a b.
	if got := picks(WeightedRoundRobin{}, upstreams(3, 1), 8); got != "00100010" {
		t.Fatalf("order %s", got)
	}
	if got := picks(WeightedRoundRobin{}, upstreams(5, 1, 1), 7); got != "0010200" {
		t.Fatalf("order %s", got)
	}
	// Unset weights count as 1.
	if got := picks(WeightedRoundRobin{}, upstreams(0, 0), 4); got != "0101" {
		t.Fatalf("order %s", got)
	}
}

func TestRandomPolicy(t *testing.T) {
	got := picks(Random{}, upstreams(1, 1, 1), 3000)
	for _, c := range "012" {
		// Each is expected 1000 times; 850 is over 5 standard deviations off.
		if n := strings.Count(got, string(c)); n < 850 || n > 1150 {
			t.Fatalf("upstream %c chosen %d times of 3000", c, n)
		}
	}
}

func TestLeastConnPolicy(t *testing.T) {
	ups := upstreams(1, 1, 1)
	ups[0].state.inFlight.Store(3)
	ups[1].state.inFlight.Store(1)
	ups[2].state.inFlight.Store(2)
	if got := picks(LeastConn{}, ups, 5); got != "11111" {
		t.Fatalf("order %s", got)
	}
	// Ties are broken at random, so both tied upstreams get calls.
	ups[2].state.inFlight.Store(1)
	got := picks(LeastConn{}, ups, 400)
	if strings.Contains(got, "0") || strings.Count(got, "1") < 150 || strings.Count(got, "2") < 150 {
		t.Fatalf("tied picks %d and %d, busy one %d", strings.Count(got, "1"), strings.Count(got, "2"), strings.Count(got, "0"))
	}
}

func TestFirstPolicy(t *testing.T) {
	if got := picks(First{}, upstreams(1, 5), 3); got != "000" {
		t.Fatalf("order %s", got)
	}
}

// TestNext: the model skips tried and resting upstreams, falls back to the
// one that failed longest ago when all rest after failures, and never to
// one resting after a 429.
func TestNext(t *testing.T) {
	m := &Model{Upstreams: upstreams(1, 1, 1), policy: First{}, policyState: new(PolicyState), maxFails: 1, failFor: time.Minute}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	a, b, c := m.Upstreams[0], m.Upstreams[1], m.Upstreams[2]
	if got := m.next(r, []*Upstream{a}, false); got != b {
		t.Fatalf("got %v, want the next untried", got)
	}
	now := time.Now()
	b.state.record(OutcomeServerError, 500, 0, now.Add(-2*time.Second))
	a.state.record(OutcomeServerError, 500, 0, now.Add(-time.Second))
	if got := m.next(r, nil, true); got != c {
		t.Fatalf("got %v, want the healthy one", got)
	}
	c.state.record(OutcomeRateLimited, 429, time.Minute, now)
	if got := m.next(r, nil, true); got != b {
		t.Fatalf("got %v, want the one that failed longest ago", got)
	}
	if got := m.next(r, nil, false); got != nil {
		t.Fatalf("a retry went to %v, which rests", got)
	}
	b.state.recover()
	if got := m.next(r, nil, false); got != b {
		t.Fatalf("got %v after recovery", got)
	}
	if s := soonestBack([]*Model{{Upstreams: []*Upstream{c}, maxFails: 1, failFor: time.Minute}}); s < 59 || s > 60 {
		t.Fatalf("back in %ds, the 429 asked for a minute", s)
	}
}

func TestHealth(t *testing.T) {
	s := new(health)
	now := time.Now()
	for i := range 2 {
		s.record(OutcomeConnectError, 0, 0, now.Add(time.Duration(i)*time.Second))
	}
	if a := s.check(now.Add(2*time.Second), 3, 30*time.Second); !a.ok {
		t.Fatal("out after 2 failures of 3")
	}
	s.record(OutcomeTimeout, 0, 0, now.Add(2*time.Second))
	a := s.check(now.Add(3*time.Second), 3, 30*time.Second)
	if a.ok || a.reason != OutcomeUnhealthy || !a.until.Equal(now.Add(30*time.Second)) {
		t.Fatalf("after 3 failures: %+v", a)
	}
	if a := s.check(now.Add(31*time.Second), 3, 30*time.Second); !a.ok {
		t.Fatal("the oldest failure expired: the upstream is back")
	}
	// A client's mistake says nothing of the upstream.
	s2 := new(health)
	for range 5 {
		s2.record(OutcomeClientError, 400, 0, now)
	}
	if a := s2.check(now, 1, time.Minute); !a.ok || s2.requests != 5 || s2.failures != 0 {
		t.Fatalf("client errors counted against the upstream: %+v", a)
	}
	// A refused key rests long; the probe brings it back, not a 429's rest.
	s3 := new(health)
	s3.record(OutcomeAuthRefused, 401, authCooldown, now)
	if a := s3.check(now.Add(time.Minute), 3, time.Second); a.ok || a.reason != OutcomeAuthRefused {
		t.Fatalf("refused key: %+v", a)
	}
	s3.recover()
	if a := s3.check(now.Add(time.Minute), 3, time.Second); !a.ok {
		t.Fatalf("probe did not bring it back: %+v", a)
	}
	s3.record(OutcomeRateLimited, 429, time.Hour, now)
	s3.recover()
	if a := s3.check(now.Add(time.Minute), 3, time.Second); a.ok {
		t.Fatal("a probe ended a rate-limit rest")
	}
	if !strings.Contains(s3.lastError, "rate_limited (status 429)") {
		t.Fatalf("last error %q", s3.lastError)
	}
}
