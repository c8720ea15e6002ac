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
//				weight  <n>
//				header  <name> <value>
//				timeout <duration>
//				transport {
//					dial_timeout             <duration>
//					tls_server_name          <name>
//					tls_insecure_skip_verify
//					proxy                    <url>|none
//					max_conns_per_host       <n>
//					max_idle_conns_per_host  <n>
//				}
//				<provider option> [<args...>] [{ ... }]
//			}
//			price               <input> <output> [<cached input>]
//			lb_policy           <policy>
//			lb_retries          <n>
//			lb_try_duration     <duration>
//			max_fails           <n>
//			fail_duration       <duration>
//			first_byte_timeout  <duration>
//			stream_idle_timeout <duration>
//			stream_commit       first_event|first_content
//			timeout             <duration>
//			health_uri          <path>
//			health_interval     <duration>
//			fallback            <model...>
//		}
//		<catalog> [<args...>] [{ ... }]
//	}
//
// The model blocks make the config catalog, asked first; any other
// subdirective names an llm.route.<catalog> module. In an upstream block,
// the subdirectives that are not the upstream's own are the provider's
// options (such as anthropic's version or azure's deployment), given to
// the provider module's UnmarshalCaddyfile as its block.
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
		case "lb_policy":
			raw, err := parsePolicy(d)
			if err != nil {
				return nil, err
			}
			m.PolicyRaw = raw
		case "lb_retries":
			n, err := intArg(d, 0)
			if err != nil {
				return nil, err
			}
			m.Retries = &n
		case "max_fails":
			n, err := intArg(d, 1)
			if err != nil {
				return nil, err
			}
			m.MaxFails = n
		case "lb_try_duration", "fail_duration", "first_byte_timeout", "stream_idle_timeout", "timeout", "health_interval":
			field := map[string]*caddy.Duration{
				"lb_try_duration":     &m.TryDuration,
				"fail_duration":       &m.FailDuration,
				"first_byte_timeout":  &m.FirstByteTimeout,
				"stream_idle_timeout": &m.StreamIdleTimeout,
				"timeout":             &m.Timeout,
				"health_interval":     &m.HealthInterval,
			}[d.Val()]
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			*field = dur
		case "stream_commit":
			if !d.NextArg() || (d.Val() != streamCommitEvent && d.Val() != streamCommitContent) {
				return nil, d.Errf("stream_commit: want %s or %s", streamCommitEvent, streamCommitContent)
			}
			m.StreamCommit = d.Val()
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "health_uri":
			if !d.NextArg() || !strings.HasPrefix(d.Val(), "/") {
				return nil, d.Err("health_uri: want a path such as /models")
			}
			m.HealthURI = d.Val()
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "fallback":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return nil, d.Err("fallback: name at least one model")
			}
			m.Fallbacks = append(m.Fallbacks, names...)
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

// parsePolicy parses "lb_policy <name> [<options>]". A policy module that
// reads the Caddyfile gets its options; the built-in ones take none.
func parsePolicy(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.Errf("lb_policy: name a policy: %s", knownModules("llm.route.policies"))
	}
	name := d.Val()
	id := "llm.route.policies." + name
	info, err := caddy.GetModule(id)
	if err != nil {
		return nil, d.Errf("lb_policy: unknown policy '%s'; known policies: %s", name, knownModules("llm.route.policies"))
	}
	mod := info.New()
	if _, ok := mod.(caddyfile.Unmarshaler); ok {
		um, err := caddyfile.UnmarshalModule(d, id)
		if err != nil {
			return nil, err
		}
		mod = um.(caddy.Module)
	} else if d.NextArg() {
		return nil, d.Errf("lb_policy %s takes no options", name)
	}
	return caddyconfig.JSONModuleObject(mod, "policy", name, nil), nil
}

// intArg parses the one argument of the subdirective d is on as an integer
// of at least low.
func intArg(d *caddyfile.Dispenser, low int) (int, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n < low {
		return 0, d.Errf("%s: '%s' is not a whole number of at least %d", name, d.Val(), low)
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return n, nil
}

// durationArg parses the one argument of the subdirective d is on as a
// positive duration.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: '%s' is not a positive duration such as 30s", name, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return caddy.Duration(dur), nil
}

func parseTransport(d *caddyfile.Dispenser) (*Transport, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	t := &Transport{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "dial_timeout":
			t.DialTimeout, err = durationArg(d)
		case "tls_server_name", "proxy":
			name := d.Val()
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if name == "proxy" {
				t.Proxy = d.Val()
			} else {
				t.TLSServerName = d.Val()
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "tls_insecure_skip_verify":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			t.TLSInsecureSkipVerify = true
		case "max_conns_per_host":
			t.MaxConnsPerHost, err = intArg(d, 1)
		case "max_idle_conns_per_host":
			t.MaxIdleConnsPerHost, err = intArg(d, 1)
		default:
			return nil, d.Errf("unknown subdirective '%s' in transport", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// UpstreamOptions are the upstream block's own subdirectives; the others
// are the provider's, and providers name these in their errors.
const UpstreamOptions = "model, weight, header, timeout, transport"

func parseUpstream(d *caddyfile.Dispenser) (*Upstream, error) {
	args := d.RemainingArgs()
	if len(args) < 2 || len(args) > 3 {
		return nil, d.Err("usage: upstream <provider> <base_url> [<api_key>]")
	}
	name, at := args[0], d.Token()
	info, err := caddy.GetModule("llm.route.providers." + name)
	if err != nil {
		return nil, d.Errf("unknown provider '%s'; known providers: %s", name, knownModules("llm.route.providers"))
	}
	u := &Upstream{URL: args[1]}
	if len(args) == 3 {
		u.APIKey = args[2]
	}
	var providerTokens []caddyfile.Token
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
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			u.Timeout = dur
			continue
		case "weight":
			n, err := intArg(d, 1)
			if err != nil {
				return nil, err
			}
			u.Weight = n
			continue
		case "transport":
			t, err := parseTransport(d)
			if err != nil {
				return nil, err
			}
			u.Transport = t
			continue
		default:
			if _, ok := info.New().(caddyfile.Unmarshaler); !ok {
				return nil, d.Errf("unknown subdirective '%s' in upstream: an upstream takes %s, and provider %s has no options", d.Val(), UpstreamOptions, name)
			}
			providerTokens = append(providerTokens, d.NextSegment()...)
			continue
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	provider, err := parseProvider(info, at, providerTokens)
	if err != nil {
		return nil, err
	}
	u.ProviderRaw = caddyconfig.JSONModuleObject(provider, "name", name, nil)
	return u, nil
}

// parseProvider makes the provider module from its options, the tokens of
// the upstream block's subdirectives that are not the upstream's own. The
// provider reads them as its own block, "<name> { <options> }", so that it
// parses them as any Caddy module parses its block; at, the provider name's
// token, places that block in the file for error messages.
func parseProvider(info caddy.ModuleInfo, at caddyfile.Token, options []caddyfile.Token) (any, error) {
	if len(options) == 0 {
		return struct{}{}, nil
	}
	// Only Text, File and Line: the lexer's other token fields (quoting,
	// import chains) would change how the braces read.
	head := caddyfile.Token{File: at.File, Line: at.Line, Text: info.ID.Name()}
	open := caddyfile.Token{File: at.File, Line: at.Line, Text: "{"}
	last := options[len(options)-1]
	closing := caddyfile.Token{File: last.File, Line: last.Line + last.NumLineBreaks() + 1, Text: "}"}
	tokens := append([]caddyfile.Token{head, open}, options...)
	tokens = append(tokens, closing)
	mod := info.New()
	if err := mod.(caddyfile.Unmarshaler).UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
		return nil, err
	}
	return mod, nil
}

// knownModules lists the names of the modules in namespace ns.
func knownModules(ns string) string {
	var names []string
	for _, m := range caddy.GetModules(ns) {
		names = append(names, m.ID.Name())
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
