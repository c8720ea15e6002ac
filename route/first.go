package route

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(First{})
}

// First picks the first available upstream in the order written: a primary
// and its backups.
type First struct{}

// CaddyModule returns the Caddy module information.
func (First) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.policies.first",
		New: func() caddy.Module { return new(First) },
	}
}

// Select returns the first candidate.
func (First) Select(candidates []*Upstream, _ *PolicyState, _ *http.Request) *Upstream {
	return candidates[0]
}

var _ Policy = First{}
