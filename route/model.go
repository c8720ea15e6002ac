package route

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/llm"
)

// The defaults of a model's routing settings; README "Routing" explains
// each choice.
const (
	defaultRetries          = 2
	defaultMaxFails         = 3
	defaultFailDuration     = 30 * time.Second
	defaultFirstByteTimeout = 60 * time.Second
	defaultStreamIdle       = 60 * time.Second
	defaultTimeout          = 10 * time.Minute
	defaultHealthURI        = "/models"
	defaultHealthInterval   = 30 * time.Second

	streamCommitEvent   = "first_event"
	streamCommitContent = "first_content"
)

// Model is a model the gateway serves, the upstreams that serve it, and how
// calls are spread over them and moved on when one fails.
type Model struct {
	// Name is the model name clients ask for.
	Name string `json:"name"`
	// Upstreams serve the model; the policy spreads calls over them, and a
	// call that fails before its first byte moves to another.
	Upstreams []*Upstream `json:"upstreams"`
	// Price is what the model costs, in USD per million tokens; it gives
	// each call's cost and the spend that budgets count.
	Price *llm.Price `json:"price,omitempty"`

	// PolicyRaw chooses among the healthy upstreams, e.g.
	// {"policy": "weighted_round_robin"}: a module of the
	// llm.route.policies namespace. Caddyfile: lb_policy <name>.
	// Default round_robin.
	PolicyRaw json.RawMessage `json:"lb_policy,omitempty" caddy:"namespace=llm.route.policies inline_key=policy"`
	// Retries is how many more upstreams a call may try after the first
	// fails before its first byte (each upstream at most once per call).
	// Caddyfile: lb_retries <n>. Default 2; 0 turns retries off.
	Retries *int `json:"lb_retries,omitempty"`
	// TryDuration bounds the time spent trying upstreams of this model: no
	// new try starts after it. Caddyfile: lb_try_duration <duration>.
	// Default 0: only lb_retries and timeout bound the tries.
	TryDuration caddy.Duration `json:"lb_try_duration,omitempty"`
	// MaxFails failures of an upstream within FailDuration take it out of
	// rotation until the oldest of them is FailDuration old. Caddyfile:
	// max_fails <n>. Default 3.
	MaxFails int `json:"max_fails,omitempty"`
	// FailDuration is how long a failure counts. Caddyfile: fail_duration
	// <duration>. Default 30s.
	FailDuration caddy.Duration `json:"fail_duration,omitempty"`
	// FirstByteTimeout bounds the wait for an upstream's first byte:
	// connect, headers and, for a stream, the event it is committed at (see
	// StreamCommit). A try that exceeds it moves to another upstream. Caddyfile:
	// first_byte_timeout <duration>. Default 60s for streams; for an
	// unstreamed call, whose first byte comes with the whole answer, the
	// default is Timeout.
	FirstByteTimeout caddy.Duration `json:"first_byte_timeout,omitempty"`
	// StreamIdleTimeout ends a stream whose upstream sends nothing for this
	// long between events; the client gets an error event and no [DONE].
	// Caddyfile: stream_idle_timeout <duration>. Default 60s.
	StreamIdleTimeout caddy.Duration `json:"stream_idle_timeout,omitempty"`
	// StreamCommit is when a stream is committed to the client, after
	// which nothing is retried. "first_event" (default) sends the
	// upstream's first event at once, as reverse_proxy would, so the
	// gateway adds nothing to the time to first byte. "first_content" holds
	// back the events before the first content event (a role-only chunk,
	// Anthropic's message_start, keep-alives), so that a stream that breaks
	// or stalls before its first token still moves to another upstream, at
	// the cost of a first byte that comes with the first token. Caddyfile:
	// stream_commit first_event|first_content.
	StreamCommit string `json:"stream_commit,omitempty"`
	// Timeout bounds the whole call, every try and the whole stream
	// included. Caddyfile: timeout <duration>. Default 10m.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// HealthURI, when set (or when HealthInterval is), turns on active
	// health checks: every HealthInterval each upstream is asked GET
	// <base_url><HealthURI> with its own key, and an upstream taken out by
	// failures comes back as soon as it answers 2xx. Caddyfile: health_uri
	// <path>. Default /models once health_interval is set.
	HealthURI string `json:"health_uri,omitempty"`
	// HealthInterval is how often upstreams are probed. Caddyfile:
	// health_interval <duration>. Default 30s once health_uri is set.
	HealthInterval caddy.Duration `json:"health_interval,omitempty"`
	// Fallbacks are models tried in order, each with its own upstreams and
	// policy, when every try at this model failed. Each must be a model of
	// the same llm_route, and the client's key must be allowed to use it;
	// a fallback's own fallbacks are not followed. Caddyfile: fallback
	// <model...>.
	Fallbacks []string `json:"fallbacks,omitempty"`

	policy      Policy
	policyName  string
	policyState *PolicyState
	retries     int
	maxFails    int
	failFor     time.Duration
	firstByte   time.Duration
	streamIdle  time.Duration
	// holdStream: commit streams at their first content event.
	holdStream bool
	timeout    time.Duration
	probeEvery time.Duration
}

// Provision checks the model's settings, loads its policy and provisions
// its upstreams. Catalogs call it for each model they hold, and Cleanup
// when they let go of it.
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
	if err := m.provisionSettings(); err != nil {
		return fmt.Errorf("model '%s': %w", m.Name, err)
	}
	ids := make([]string, len(m.Upstreams))
	seen := make(map[string]int, len(m.Upstreams))
	for i, u := range m.Upstreams {
		if err := u.provision(ctx, m.Name); err != nil {
			return fmt.Errorf("model '%s', upstream %d: %w", m.Name, i+1, err)
		}
		if j, dup := seen[u.id]; dup {
			return fmt.Errorf("model '%s': upstreams %d and %d are the same (provider, URL, model and key)", m.Name, j+1, i+1)
		}
		seen[u.id] = i
		ids[i] = u.id
	}
	if m.PolicyRaw == nil {
		m.PolicyRaw = json.RawMessage(`{"policy":"round_robin"}`)
	}
	mod, err := ctx.LoadModule(m, "PolicyRaw")
	if err != nil {
		return fmt.Errorf("model '%s': loading lb_policy: %w", m.Name, err)
	}
	p, ok := mod.(Policy)
	if !ok {
		return fmt.Errorf("model '%s': module %T is not an llm.route.policies policy", m.Name, mod)
	}
	m.policy, m.policyName = p, mod.(caddy.Module).CaddyModule().ID.Name()
	m.policyState = acquirePolicyState(m.Name, ids)
	return nil
}

// Cleanup lets go of the state the model shares with other configs: its
// policy's position and its upstreams' health and transports. Calls still
// running on it finish normally.
func (m *Model) Cleanup() {
	if m.policyState != nil {
		ids := make([]string, len(m.Upstreams))
		for i, u := range m.Upstreams {
			ids[i] = u.id
		}
		releasePolicyState(m.Name, ids)
	}
	for _, u := range m.Upstreams {
		u.cleanup()
	}
}

func (m *Model) provisionSettings() error {
	m.retries = defaultRetries
	if m.Retries != nil {
		if *m.Retries < 0 {
			return errors.New("lb_retries must not be negative")
		}
		m.retries = *m.Retries
	}
	m.maxFails = m.MaxFails
	switch {
	case m.MaxFails < 0:
		return errors.New("max_fails must not be negative")
	case m.MaxFails == 0:
		m.maxFails = defaultMaxFails
	}
	durations := []struct {
		name string
		v    caddy.Duration
		dst  *time.Duration
		def  time.Duration
	}{
		{"lb_try_duration", m.TryDuration, nil, 0},
		{"fail_duration", m.FailDuration, &m.failFor, defaultFailDuration},
		{"first_byte_timeout", m.FirstByteTimeout, &m.firstByte, 0},
		{"stream_idle_timeout", m.StreamIdleTimeout, &m.streamIdle, defaultStreamIdle},
		{"timeout", m.Timeout, &m.timeout, defaultTimeout},
		{"health_interval", m.HealthInterval, &m.probeEvery, 0},
	}
	for _, d := range durations {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative", d.name)
		}
		if d.dst != nil {
			*d.dst = time.Duration(d.v)
			if *d.dst == 0 {
				*d.dst = d.def
			}
		}
	}
	if m.HealthURI != "" || m.probeEvery > 0 {
		if m.HealthURI == "" {
			m.HealthURI = defaultHealthURI
		}
		if !strings.HasPrefix(m.HealthURI, "/") {
			return fmt.Errorf("health_uri '%s' must start with /", m.HealthURI)
		}
		if m.probeEvery == 0 {
			m.probeEvery = defaultHealthInterval
		}
	}
	switch m.StreamCommit {
	case "", streamCommitEvent:
	case streamCommitContent:
		m.holdStream = true
	default:
		return fmt.Errorf("stream_commit '%s': want %s or %s", m.StreamCommit, streamCommitEvent, streamCommitContent)
	}
	for _, f := range m.Fallbacks {
		if f == m.Name {
			return errors.New("a model cannot be its own fallback")
		}
	}
	return nil
}

// firstByteTimeout is how long a try at u may take to its first byte.
func (m *Model) firstByteTimeout(u *Upstream, stream bool) time.Duration {
	switch {
	case u.Timeout > 0:
		return time.Duration(u.Timeout)
	case m.firstByte > 0:
		return m.firstByte
	case stream:
		return defaultFirstByteTimeout
	}
	return m.timeout
}

// Upstream is one place that serves a model: a provider API at a base URL
// with its own key. Its identity is the provider, the base URL, the upstream
// model and a short hash of the key, so one URL with two keys is two
// upstreams, each with its own health; health, in-flight counts and
// cool-downs are kept by identity across config reloads.
type Upstream struct {
	// ProviderRaw is the provider module that speaks the upstream's API,
	// e.g. {"name": "openai"}.
	ProviderRaw json.RawMessage `json:"provider" caddy:"namespace=llm.route.providers inline_key=name"`
	// URL is the API's base URL, e.g. "https://api.openai.com/v1".
	URL string `json:"url"`
	// APIKey is the upstream's API key. Placeholders such as
	// {env.OPENAI_API_KEY} are resolved when the config loads, so the key
	// need not appear in the config; one that resolves to nothing (an unset
	// variable) fails the load. It never reaches a client or a log. Leave
	// it out for an upstream that needs no key.
	APIKey string `json:"api_key,omitempty"`
	// Model is the model name to send upstream; default: the name the
	// client asked for.
	Model string `json:"model,omitempty"`
	// Weight is the upstream's share under weighted_round_robin, relative
	// to the model's other upstreams. Caddyfile: weight <n>. Default 1.
	Weight int `json:"weight,omitempty"`
	// Headers are added to every upstream request. Placeholders in values
	// are resolved when the config loads.
	Headers http.Header `json:"headers,omitempty"`
	// Timeout, when set, is this upstream's first_byte_timeout, in place of
	// the model's.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Transport tunes the connections to this upstream (dial timeout, TLS,
	// proxy, connection limits); upstreams with the same settings share
	// one pool of connections. Default: the shared transport.
	Transport *Transport `json:"transport,omitempty"`

	provider     Provider
	providerName string
	base         string
	host         string
	key          string
	keyHash      string
	upstreamName string
	id           string
	header       http.Header
	state        *health
	client       http.RoundTripper
}

// Provider returns the upstream's provider and its module name.
func (u *Upstream) Provider() (Provider, string) { return u.provider, u.providerName }

// BaseURL returns the base URL without a trailing slash.
func (u *Upstream) BaseURL() string { return u.base }

// Host returns the upstream's host, the name used for it in logs and stats.
func (u *Upstream) Host() string { return u.host }

// Key returns the resolved API key.
func (u *Upstream) Key() string { return u.key }

// Header returns the resolved extra headers. They are shared: a provider
// copies them into each request, never hands the slices on.
func (u *Upstream) Header() http.Header { return u.header }

// ID returns the upstream's identity: provider, base URL, upstream model and
// the first 8 hex digits of the key's SHA-256 ("-" without a key). It is
// safe to log and show.
func (u *Upstream) ID() string { return u.id }

// UpstreamModel returns the model name sent to this upstream.
func (u *Upstream) UpstreamModel() string { return u.upstreamName }

// EffectiveWeight returns the upstream's weight, 1 when unset.
func (u *Upstream) EffectiveWeight() int {
	if u.Weight <= 0 {
		return 1
	}
	return u.Weight
}

// InFlight returns how many calls the upstream is serving now, across
// every config that shares it.
func (u *Upstream) InFlight() int64 { return u.state.inFlight.Load() }

// provision loads the provider, resolves the URL, key and headers, and
// takes the upstream's shared state.
func (u *Upstream) provision(ctx caddy.Context, model string) error {
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
	u.key = strings.TrimSpace(repl.ReplaceAll(u.APIKey, ""))
	if u.APIKey != "" && u.key == "" {
		// An unset {env.X} would otherwise send no key and fail every call
		// with a 401 that looks like the upstream's fault.
		return fmt.Errorf("api_key '%s' of %s resolves to nothing; set it, or leave api_key out for an upstream that needs no key", u.APIKey, parsed.Redacted())
	}
	u.header = make(http.Header, len(u.Headers))
	for name, values := range u.Headers {
		for _, v := range values {
			u.header.Add(name, repl.ReplaceAll(v, ""))
		}
	}
	if u.Timeout < 0 {
		return fmt.Errorf("negative timeout")
	}
	if u.Weight < 0 {
		return fmt.Errorf("weight %d must not be negative", u.Weight)
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
	u.upstreamName = u.Model
	if u.upstreamName == "" {
		u.upstreamName = model
	}
	u.keyHash = "-"
	if u.key != "" {
		sum := sha256.Sum256([]byte(u.key))
		u.keyHash = hex.EncodeToString(sum[:4])
	}
	u.id = u.providerName + " " + u.base + " " + u.upstreamName + " " + u.keyHash
	if u.client, err = acquireTransport(u.Transport); err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	u.state = acquireHealth(u.id)
	return nil
}

func (u *Upstream) cleanup() {
	if u.state != nil {
		releaseHealth(u.id)
	}
	if u.client != nil {
		releaseTransport(u.Transport)
	}
}
