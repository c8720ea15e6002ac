// Package adminapi is the admin.api.llm module: the gateway's endpoints on
// Caddy's admin API (/llm/...). The packages that own the state register
// their routes here when they are imported, so this package imports none of
// them and each view stays beside the state it shows.
package adminapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(Admin{})
}

var (
	mu     sync.Mutex
	routes = map[string]caddy.AdminHandler{}
)

// Handle registers h for the admin API path pattern (e.g. "/llm/upstreams",
// or "/llm/keys/" for a subtree). Call it from an init function.
func Handle(pattern string, h caddy.AdminHandler) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := routes[pattern]; dup {
		panic("adminapi: " + pattern + " registered twice")
	}
	routes[pattern] = h
}

// Admin serves the routes registered with Handle on Caddy's admin endpoint.
type Admin struct{}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.llm",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes returns the registered routes, in a stable order.
func (Admin) Routes() []caddy.AdminRoute {
	mu.Lock()
	defer mu.Unlock()
	out := make([]caddy.AdminRoute, 0, len(routes))
	for p, h := range routes {
		out = append(out, caddy.AdminRoute{Pattern: p, Handler: h})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pattern < out[j].Pattern })
	return out
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Error is the error an admin handler returns for a bad request; Caddy's
// admin server writes it as {"error": message} with the status.
func Error(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

var _ caddy.AdminRouter = Admin{}
