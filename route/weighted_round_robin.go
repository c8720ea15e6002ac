package route

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(WeightedRoundRobin{})
}

// WeightedRoundRobin gives each upstream a share of the calls in proportion
// to its weight, smoothly (nginx's algorithm): with weights 3 and 1 the order
// is a a b a, never a run of one upstream's whole share. When an upstream
// is out, the others share its turns by their weights.
type WeightedRoundRobin struct{}

// CaddyModule returns the Caddy module information.
func (WeightedRoundRobin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.policies.weighted_round_robin",
		New: func() caddy.Module { return new(WeightedRoundRobin) },
	}
}

// Select raises each candidate's score by its weight, takes the highest,
// and lowers the chosen one's by the sum of the weights.
func (WeightedRoundRobin) Select(candidates []*Upstream, state *PolicyState, _ *http.Request) *Upstream {
	var best *Upstream
	state.Update(func(scores map[string]int64) {
		var total, top int64
		for _, u := range candidates {
			w := int64(u.EffectiveWeight())
			total += w
			scores[u.ID()] += w
			if s := scores[u.ID()]; best == nil || s > top {
				best, top = u, s
			}
		}
		scores[best.ID()] -= total
	})
	return best
}

var _ Policy = WeightedRoundRobin{}
