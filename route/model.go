package route

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/llm"
)

// Model is a model the gateway serves and the upstreams that serve it.
type Model struct {
	// Name is the model name clients ask for.
	Name string `json:"name"`
	// Upstreams serve the model. With more than one, requests take turns
	// (round robin).
	Upstreams []*Upstream `json:"upstreams"`
	// Price is what the model costs, in USD per million tokens; it gives
	// each call's cost and the spend that budgets count.
	Price *llm.Price `json:"price,omitempty"`

	next atomic.Uint64
}

// Provision provisions the model's upstreams. Catalogs call it for each
// model they hold.
func (m *Model) Provision(ctx caddy.Context) error {
	if m.Name == "" {
		return errors.New("model without a name")
	}
	if len(m.Upstreams) == 0 {
		return fmt.Errorf("model '%s' has no upstream", m.Name)
	}
	if p := m.Price; p != nil && (p.Input < 0 || p.Output < 0 || p.CachedInput < 0) {
		return fmt.Errorf("model '%s': a price must not be negative", m.Name)
	}
	for i, u := range m.Upstreams {
		if err := u.Provision(ctx); err != nil {
			return fmt.Errorf("model '%s', upstream %d: %w", m.Name, i+1, err)
		}
	}
	return nil
}

// pick returns the upstream for the next request.
func (m *Model) pick() *Upstream {
	if len(m.Upstreams) == 1 {
		return m.Upstreams[0]
	}
	return m.Upstreams[(m.next.Add(1)-1)%uint64(len(m.Upstreams))]
}

// Upstream is one place that serves a model: a provider API at a base URL
// with its own key.
type Upstream struct {
	// ProviderRaw is the provider module that speaks the upstream's API,
	// e.g. {"name": "openai"}.
	ProviderRaw json.RawMessage `json:"provider" caddy:"namespace=llm.route.providers inline_key=name"`
	// URL is the API's base URL, e.g. "https://api.openai.com/v1".
	URL string `json:"url"`
	// APIKey is the upstream's API key. Placeholders such as
	// {env.OPENAI_API_KEY} are resolved when the config loads, so the key
	// need not appear in the config. It never reaches a client or a log.
	APIKey string `json:"api_key,omitempty"`
	// Model is the model name to send upstream; default: the name the
	// client asked for.
	Model string `json:"model,omitempty"`
	// Headers are added to every upstream request. Placeholders in values
	// are resolved when the config loads.
	Headers http.Header `json:"headers,omitempty"`
	// Timeout is how long to wait for the upstream's response headers,
	// which for an unstreamed response means the whole answer. Default 5m.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	provider     Provider
	providerName string
	base         string
	host         string
	key          string
	header       http.Header
}

// Provider returns the upstream's provider and its module name.
func (u *Upstream) Provider() (Provider, string) { return u.provider, u.providerName }

// BaseURL returns the base URL without a trailing slash.
func (u *Upstream) BaseURL() string { return u.base }

// Host returns the upstream's host, the name used for it in logs and stats.
func (u *Upstream) Host() string { return u.host }

// Key returns the resolved API key.
func (u *Upstream) Key() string { return u.key }

// Header returns the resolved extra headers.
func (u *Upstream) Header() http.Header { return u.header }

// Provision loads the provider and resolves the URL, key and headers.
func (u *Upstream) Provision(ctx caddy.Context) error {
	if u.URL == "" {
		return errors.New("no url")
	}
	if u.ProviderRaw == nil {
		return errors.New("no provider")
	}
	repl := caddy.NewReplacer()
	raw := repl.ReplaceAll(u.URL, "")
	parsed, err := url.Parse(raw)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return fmt.Errorf("url '%s' is not an http:// or https:// URL", u.URL)
	}
	if parsed.User != nil || parsed.RawQuery != "" || parsed.Fragment != "" {
		return fmt.Errorf("url '%s' must not carry credentials, a query or a fragment; put the key in api_key", parsed.Redacted())
	}
	u.base = strings.TrimRight(raw, "/")
	u.host = parsed.Host
	u.key = repl.ReplaceAll(u.APIKey, "")
	u.header = make(http.Header, len(u.Headers))
	for name, values := range u.Headers {
		for _, v := range values {
			u.header.Add(name, repl.ReplaceAll(v, ""))
		}
	}
	if u.Timeout < 0 {
		return fmt.Errorf("negative timeout")
	}
	mod, err := ctx.LoadModule(u, "ProviderRaw")
	if err != nil {
		return fmt.Errorf("loading provider: %w", err)
	}
	p, ok := mod.(Provider)
	if !ok {
		return fmt.Errorf("module %T is not an llm.route.providers provider", mod)
	}
	u.provider = p
	u.providerName = mod.(caddy.Module).CaddyModule().ID.Name()
	return nil
}
