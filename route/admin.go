package route

import (
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/internal/adminapi"
)

func init() {
	adminapi.Handle("/llm/upstreams", caddy.AdminHandlerFunc(serveUpstreams))
}

// live holds the provisioned llm_route handlers, for the admin view. During
// a reload the old and the new config are both here for a moment; the view
// shows each model's upstream once.
var live = struct {
	sync.Mutex
	handlers []*Handler
}{}

func register(h *Handler) {
	live.Lock()
	live.handlers = append(live.handlers, h)
	live.Unlock()
}

func unregister(h *Handler) {
	live.Lock()
	defer live.Unlock()
	for i, v := range live.handlers {
		if v == h {
			live.handlers = append(live.handlers[:i], live.handlers[i+1:]...)
			return
		}
	}
}

// upstreamsView is the answer of GET /llm/upstreams.
type upstreamsView struct {
	Models []modelView `json:"models"`
}

type modelView struct {
	Model     string         `json:"model"`
	Policy    string         `json:"lb_policy"`
	Fallbacks []string       `json:"fallbacks,omitempty"`
	Upstreams []upstreamView `json:"upstreams"`
}

// upstreamView is one upstream as the admin API shows it: never its key,
// only the first 8 hex digits of the key's SHA-256.
type upstreamView struct {
	ID            string     `json:"id"`
	Provider      string     `json:"provider"`
	URL           string     `json:"url"`
	UpstreamModel string     `json:"upstream_model"`
	KeyHash       string     `json:"key_hash"`
	Weight        int        `json:"weight"`
	Healthy       bool       `json:"healthy"`
	InFlight      int64      `json:"in_flight"`
	Requests      uint64     `json:"requests"`
	Failures      uint64     `json:"failures"`
	RecentFails   int        `json:"recent_failures"`
	CooldownUntil *time.Time `json:"cooldown_until,omitempty"`
	CooldownWhy   Outcome    `json:"cooldown_reason,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
}

func serveUpstreams(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return adminapi.Error(http.StatusMethodNotAllowed, "use GET")
	}
	return adminapi.WriteJSON(w, http.StatusOK, snapshot(time.Now()))
}

// snapshot returns every model's upstreams and their state, for the admin
// view and the metrics.
func snapshot(now time.Time) upstreamsView {
	live.Lock()
	handlers := append([]*Handler(nil), live.handlers...)
	live.Unlock()
	view := upstreamsView{Models: []modelView{}}
	index := map[string]int{}
	seen := map[string]bool{}
	// The newest config first, so that its settings describe each model.
	for i := len(handlers) - 1; i >= 0; i-- {
		for _, m := range handlers[i].allModels() {
			at, ok := index[m.Name]
			if !ok {
				at = len(view.Models)
				index[m.Name] = at
				view.Models = append(view.Models, modelView{Model: m.Name, Policy: m.policyName, Fallbacks: m.Fallbacks, Upstreams: []upstreamView{}})
			}
			for _, u := range m.Upstreams {
				if seen[m.Name+"\n"+u.id] {
					continue
				}
				seen[m.Name+"\n"+u.id] = true
				view.Models[at].Upstreams = append(view.Models[at].Upstreams, u.view(m, now))
			}
		}
	}
	return view
}

func (u *Upstream) view(m *Model, now time.Time) upstreamView {
	a := u.state.check(now, m.maxFails, m.failFor)
	s := u.state
	s.mu.Lock()
	defer s.mu.Unlock()
	v := upstreamView{
		ID: u.id, Provider: u.providerName, URL: u.base, UpstreamModel: u.upstreamName, KeyHash: u.keyHash,
		Weight: u.EffectiveWeight(), Healthy: a.ok, InFlight: u.InFlight(),
		Requests: s.requests, Failures: s.failures, LastError: s.lastError,
	}
	for _, f := range s.fails {
		if now.Sub(f) < m.failFor {
			v.RecentFails++
		}
	}
	if !a.ok {
		until := a.until
		v.CooldownUntil, v.CooldownWhy = &until, a.reason
	}
	if !s.lastErrorAt.IsZero() {
		at := s.lastErrorAt
		v.LastErrorAt = &at
	}
	return v
}
