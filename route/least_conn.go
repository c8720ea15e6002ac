package route

import (
	"math/rand/v2"
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(LeastConn{})
}

// LeastConn picks the upstream with the fewest calls in flight (counted
// across config reloads), at random among those tied: a slow upstream then
// gets fewer calls.
type LeastConn struct{}

// CaddyModule returns the Caddy module information.
func (LeastConn) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.policies.least_conn",
		New: func() caddy.Module { return new(LeastConn) },
	}
}

// Select picks the least busy candidate.
func (LeastConn) Select(candidates []*Upstream, _ *PolicyState, _ *http.Request) *Upstream {
	var best *Upstream
	var fewest int64
	ties := 0
	for _, u := range candidates {
		n := u.InFlight()
		switch {
		case best == nil || n < fewest:
			best, fewest, ties = u, n, 1
		case n == fewest:
			// Reservoir sampling: each of the tied is kept with equal odds.
			ties++
			if rand.IntN(ties) == 0 {
				best = u
			}
		}
	}
	return best
}

var _ Policy = LeastConn{}
