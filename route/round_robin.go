package route

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(RoundRobin{})
}

// RoundRobin gives each available upstream the next call in turn. It is
// the default policy.
type RoundRobin struct{}

// CaddyModule returns the Caddy module information.
func (RoundRobin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.policies.round_robin",
		New: func() caddy.Module { return new(RoundRobin) },
	}
}

// Select takes the candidate after the last one chosen.
func (RoundRobin) Select(candidates []*Upstream, state *PolicyState, _ *http.Request) *Upstream {
	return candidates[(state.Counter.Add(1)-1)%uint64(len(candidates))]
}

var _ Policy = RoundRobin{}
