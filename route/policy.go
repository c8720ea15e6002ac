package route

import "net/http"

// Policy chooses the upstream for the next try of a call. Policies are guest
// modules in the llm.route.policies namespace (round_robin,
// weighted_round_robin, random, least_conn, first); a third party adds one
// as one more module.
type Policy interface {
	// Select returns one of candidates: the model's upstreams that are
	// available now and not yet tried by this call, in config order, never
	// empty. state is the policy's memory for the model; it survives
	// config reloads that keep the model's upstreams. Select is called
	// concurrently.
	Select(candidates []*Upstream, state *PolicyState, r *http.Request) *Upstream
}
