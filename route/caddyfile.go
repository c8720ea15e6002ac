package route

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

// ParseCaddyfile parses the llm_route directive.
func ParseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	llm_route [<matcher>] {
//		max_body_size <size>
//		model <name> {
//			upstream <provider> <base_url> [<api_key>] {
//				model   <upstream_model>
//				header  <name> <value>
//				timeout <duration>
//			}
//		}
//		<catalog> [<args...>] [{ ... }]
//	}
//
// The model blocks make the config catalog, asked first; any other
// subdirective names an llm.route.<catalog> module.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	var cfg Config
	var others []json.RawMessage
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_body_size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil || size == 0 || size > math.MaxInt64 {
				return d.Errf("max_body_size: '%s' is not a size such as 10MB", d.Val())
			}
			h.MaxBodySize = int64(size)
			if d.NextArg() {
				return d.ArgErr()
			}
		case "model":
			m, err := parseModel(d)
			if err != nil {
				return err
			}
			cfg.Models = append(cfg.Models, m)
		default:
			name := d.Val()
			if _, err := caddy.GetModule("llm.route." + name); err != nil {
				return d.Errf("unknown subdirective '%s' of llm_route (neither an option nor a model catalog module)", name)
			}
			mod, err := caddyfile.UnmarshalModule(d, "llm.route."+name)
			if err != nil {
				return err
			}
			others = append(others, caddyconfig.JSONModuleObject(mod, "source", name, nil))
		}
	}
	if len(cfg.Models) > 0 {
		h.CatalogsRaw = append(h.CatalogsRaw, caddyconfig.JSONModuleObject(cfg, "source", "config", nil))
	}
	h.CatalogsRaw = append(h.CatalogsRaw, others...)
	return nil
}

func parseModel(d *caddyfile.Dispenser) (*Model, error) {
	if !d.NextArg() {
		return nil, d.Err("model: a model name is required")
	}
	m := &Model{Name: d.Val()}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "upstream":
			u, err := parseUpstream(d)
			if err != nil {
				return nil, err
			}
			m.Upstreams = append(m.Upstreams, u)
		default:
			return nil, d.Errf("unknown subdirective '%s' in model '%s'", d.Val(), m.Name)
		}
	}
	if len(m.Upstreams) == 0 {
		return nil, d.Errf("model '%s' has no upstream", m.Name)
	}
	return m, nil
}

func parseUpstream(d *caddyfile.Dispenser) (*Upstream, error) {
	args := d.RemainingArgs()
	if len(args) < 2 || len(args) > 3 {
		return nil, d.Err("usage: upstream <provider> <base_url> [<api_key>]")
	}
	if _, err := caddy.GetModule("llm.route.providers." + args[0]); err != nil {
		return nil, d.Errf("unknown provider '%s'; known providers: %s", args[0], knownProviders())
	}
	u := &Upstream{
		ProviderRaw: caddyconfig.JSONModuleObject(struct{}{}, "name", args[0], nil),
		URL:         args[1],
	}
	if len(args) == 3 {
		u.APIKey = args[2]
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "model":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			u.Model = d.Val()
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("usage: header <name> <value>")
			}
			if u.Headers == nil {
				u.Headers = make(http.Header)
			}
			u.Headers.Add(args[0], args[1])
			continue
		case "timeout":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return nil, d.Errf("timeout: '%s' is not a positive duration such as 30s", d.Val())
			}
			u.Timeout = caddy.Duration(dur)
		default:
			return nil, d.Errf("unknown subdirective '%s' in upstream", d.Val())
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	return u, nil
}

func knownProviders() string {
	var names []string
	for _, m := range caddy.GetModules("llm.route.providers") {
		names = append(names, m.ID.Name())
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
