package route

import (
	"math/rand/v2"
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(Random{})
}

// Random picks an available upstream at random, each as likely.
type Random struct{}

// CaddyModule returns the Caddy module information.
func (Random) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.policies.random",
		New: func() caddy.Module { return new(Random) },
	}
}

// Select picks one candidate at random.
func (Random) Select(candidates []*Upstream, _ *PolicyState, _ *http.Request) *Upstream {
	return candidates[rand.IntN(len(candidates))]
}

var _ Policy = Random{}
