package route

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// How long an upstream rests after it refused the gateway's key, and after
// a 429 that did not say how long to wait.
const (
	authCooldown      = 5 * time.Minute
	rateLimitCooldown = 10 * time.Second
	// maxCooldown bounds what an upstream may ask for in Retry-After.
	maxCooldown = time.Hour
	// keptFails bounds the failure times remembered per upstream.
	keptFails = 64
)

// healths holds each upstream's health by upstream identity, so that a
// config reload keeps what the gateway learnt of its upstreams and the
// calls in flight on them.
var healths = caddy.NewUsagePool()

func acquireHealth(id string) *health {
	v, _, _ := healths.LoadOrNew("llm_route:health:"+id, func() (caddy.Destructor, error) {
		return new(health), nil
	})
	return v.(*health)
}

func releaseHealth(id string) { _, _ = healths.Delete("llm_route:health:" + id) }

// health is what the gateway knows of one upstream: its recent failures,
// a cool-down it must sit out, and the calls it serves now.
type health struct {
	inFlight atomic.Int64

	mu          sync.Mutex
	fails       []time.Time // failure times, oldest first
	coolUntil   time.Time
	coolReason  Outcome
	lastFail    time.Time
	lastError   string
	lastErrorAt time.Time
	requests    uint64
	failures    uint64
}

// Destruct is a no-op: health holds no resources.
func (*health) Destruct() error { return nil }

// availability says whether an upstream may be tried now, and if not,
// until when and why.
type availability struct {
	ok     bool
	until  time.Time
	reason Outcome
	// lastFail is when the upstream last failed, for picking the one that
	// failed longest ago when none is available.
	lastFail time.Time
}

// check returns the upstream's availability under a model's max_fails and
// fail_duration.
func (s *health) check(now time.Time, maxFails int, failFor time.Duration) availability {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := availability{ok: true, lastFail: s.lastFail}
	if now.Before(s.coolUntil) {
		a.ok, a.until, a.reason = false, s.coolUntil, s.coolReason
		return a
	}
	recent := s.fails
	for len(recent) > 0 && now.Sub(recent[0]) >= failFor {
		recent = recent[1:]
	}
	if len(recent) >= maxFails {
		a.ok, a.until, a.reason = false, recent[len(recent)-maxFails].Add(failFor), OutcomeUnhealthy
	}
	return a
}

// record notes the outcome of one try.
func (s *health) record(o Outcome, status int, cooldown time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if !o.upstreamFault() {
		return
	}
	s.failures++
	s.lastFail = now
	s.lastErrorAt = now
	s.lastError = o.describe(status)
	switch o {
	case OutcomeRateLimited, OutcomeAuthRefused:
		if until := now.Add(cooldown); until.After(s.coolUntil) {
			s.coolUntil, s.coolReason = until, o
		}
	default:
		if len(s.fails) == keptFails {
			s.fails = append(s.fails[:0], s.fails[1:]...)
		}
		s.fails = append(s.fails, now)
	}
}

// recover brings the upstream back after an active health check
// succeeded: its failures and a refused key are forgotten. A rate-limit
// cool-down stays: the upstream asked for it, and a probe that passes says
// nothing of the limit.
func (s *health) recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = s.fails[:0]
	if s.coolReason != OutcomeRateLimited {
		s.coolUntil = time.Time{}
	}
}

// probeFailed notes a failed active health check without counting it as a
// failure of traffic.
func (s *health) probeFailed(msg string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastError, s.lastErrorAt = msg, now
}

// PolicyState is what a policy remembers of one model between calls: its
// round-robin position, or per-upstream scores. It is kept by the model's
// name and upstream identities, so a config reload that keeps them keeps it.
type PolicyState struct {
	// Counter is free for a policy's position, e.g. round robin's.
	Counter atomic.Uint64

	mu     sync.Mutex
	scores map[string]int64
}

// Update runs f under the state's lock with the per-upstream scores, keyed
// by upstream ID, that f may change.
func (s *PolicyState) Update(f func(scores map[string]int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scores == nil {
		s.scores = make(map[string]int64)
	}
	f(s.scores)
}

// Destruct is a no-op: the state holds no resources.
func (*PolicyState) Destruct() error { return nil }

var policyStates = caddy.NewUsagePool()

func policyKey(model string, ids []string) string {
	key := "llm_route:policy:" + model
	for _, id := range ids {
		key += "\n" + id
	}
	return key
}

func acquirePolicyState(model string, ids []string) *PolicyState {
	v, _, _ := policyStates.LoadOrNew(policyKey(model, ids), func() (caddy.Destructor, error) {
		return new(PolicyState), nil
	})
	return v.(*PolicyState)
}

func releasePolicyState(model string, ids []string) {
	_, _ = policyStates.Delete(policyKey(model, ids))
}
