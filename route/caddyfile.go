package route

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmoneapi/llmoneapi/internal/directive"
	"github.com/llmoneapi/llmoneapi/llm"
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
			size, err := directive.Size(d)
			if err != nil {
				return err
			}
			h.MaxBodySize = size
		case "model":
			m, err := parseModel(d)
			if err != nil {
				return err
			}
			cfg.Models = append(cfg.Models, m)
		default:
			mod, raw, err := directive.Guest(d, "llm_route", "llm.route", "source", "model catalog")
			if err != nil {
				return err
			}
			if _, ok := mod.(Catalog); !ok {
				return d.Errf("module %T is not a model catalog", mod)
			}
			others = append(others, raw)
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
		case "price":
			p, err := parsePrice(d)
			if err != nil {
				return nil, err
			}
			m.Price = p
		default:
			return nil, d.Errf("unknown subdirective '%s' in model '%s'", d.Val(), m.Name)
		}
	}
	if len(m.Upstreams) == 0 {
		return nil, d.Errf("model '%s' has no upstream", m.Name)
	}
	return m, nil
}

// parsePrice parses "price <input> <output> [<cached input>]", in USD per
// million tokens.
func parsePrice(d *caddyfile.Dispenser) (*llm.Price, error) {
	args := d.RemainingArgs()
	if len(args) < 2 || len(args) > 3 {
		return nil, d.Err("price: want <input> <output> [<cached input>], in USD per million tokens, e.g. 'price 0.15 0.60 0.075'")
	}
	var v [3]float64
	for i, a := range args {
		f, err := strconv.ParseFloat(a, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, d.Errf("price: '%s' is not a price in USD per million tokens", a)
		}
		v[i] = f
	}
	return &llm.Price{Input: v[0], Output: v[1], CachedInput: v[2]}, nil
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
