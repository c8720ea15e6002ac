package stats

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"

	promreg "github.com/llmoneapi/llmoneapi/internal/metrics"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Prometheus{})
}

// Prometheus is a stats recorder that keeps metrics in Caddy's registry,
// served by Caddy's metrics handler and the admin endpoint's /metrics. The
// collectors are created once per process and registered again in every
// config, so counters go on counting across reloads.
//
// Names and units follow the OpenTelemetry GenAI semantic conventions, in
// Prometheus form:
//
//   - gen_ai_client_token_usage (histogram, tokens per call), by
//     gen_ai_token_type "input" (prompt) and "output" (completion);
//   - gen_ai_server_request_duration_seconds (histogram), with error_type
//     (the error code the client got, or the status class, "" on success);
//   - gen_ai_server_time_to_first_token_seconds (histogram), streamed
//     successful calls;
//   - gen_ai_server_time_per_output_token_seconds (histogram), streamed
//     successful calls with more than one output token: the time after the
//     first byte over the tokens after the first;
//
// and the gateway's own:
//
//   - llmoneapi_requests_total (counter), by status_class (2xx, 4xx, ...);
//   - llmoneapi_cost_usd_total (counter), USD from the models' prices;
//   - llmoneapi_gateway_overhead_seconds (histogram): the time to the
//     client's first byte less the upstream tries' own time, i.e. what the
//     gateway (auth, routing, retries' backoff) added;
//   - llmoneapi_stats_records_total (counter, from llm_stats itself), by
//     recorder and result: the recorder queues' drops are result="dropped".
//
// Every series has the labels gen_ai_operation_name (chat, text_completion,
// embeddings), gen_ai_provider_name (openai, anthropic, azure.ai.openai,
// gcp.gemini, or the provider module's name), gen_ai_request_model and
// gen_ai_response_model (the model that served the call). They are bounded
// by the config. Labels that grow with the users are only added when the
// config names them.
type Prometheus struct {
	// Labels to add to every series, beyond the bounded ones: any of
	// "user", "key" (the key's public id), "team" and "upstream" (the
	// upstream host). Each multiplies the number of series by the number
	// of its values, so add them only where those are few.
	Labels []string `json:"labels,omitempty"`

	m *promMetrics
}

// CaddyModule returns the Caddy module information.
func (Prometheus) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.stats.prometheus",
		New: func() caddy.Module { return new(Prometheus) },
	}
}

// optionalLabels are the labels a config may add, and their names in the
// series.
var optionalLabels = map[string]string{"user": "user", "key": "key_id", "team": "team", "upstream": "upstream"}

func checkLabel(l string) error {
	if _, ok := optionalLabels[l]; !ok {
		return fmt.Errorf("prometheus: unknown label '%s': use user, key, team or upstream", l)
	}
	return nil
}

// The OpenTelemetry GenAI semantic conventions' advised buckets.
var (
	tokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	durationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	ttftBuckets     = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}
	tpotBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}
	// The gateway's overhead is small: from 100µs up.
	overheadBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 12)
)

// promMetrics are the collectors of one set of optional labels.
type promMetrics struct {
	tokens, duration, ttft, tpot, overhead *prometheus.HistogramVec
	requests, cost                         *prometheus.CounterVec
	optional                               []string // the config's label keys, in order

	seriesMu sync.Mutex
	series   map[promSeriesKey]*promSeries
}

// promSets holds the collectors per set of optional labels, for the
// process's lifetime: that is what keeps the counts across reloads.
var promSets struct {
	sync.Mutex
	m map[string]*promMetrics
}

func metricsFor(optional []string) *promMetrics {
	promSets.Lock()
	defer promSets.Unlock()
	key := strings.Join(optional, ",")
	if m := promSets.m[key]; m != nil {
		return m
	}
	base := []string{"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model"}
	for _, o := range optional {
		base = append(base, optionalLabels[o])
	}
	with := func(extra string) []string { return append(slices.Clone(base), extra) }
	histogram := func(name, help string, buckets []float64, labels []string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	}
	m := &promMetrics{
		tokens: histogram("gen_ai_client_token_usage", "Tokens used per call, by token type (input, output).",
			tokenBuckets, with("gen_ai_token_type")),
		duration: histogram("gen_ai_server_request_duration_seconds", "Duration of the calls through the gateway.",
			durationBuckets, with("error_type")),
		ttft: histogram("gen_ai_server_time_to_first_token_seconds", "Time to the first byte of streamed successful calls.",
			ttftBuckets, base),
		tpot: histogram("gen_ai_server_time_per_output_token_seconds", "Time per output token after the first, of streamed successful calls.",
			tpotBuckets, base),
		overhead: histogram("llmoneapi_gateway_overhead_seconds", "Time to the client's first byte not spent in upstream tries.",
			overheadBuckets, base),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llmoneapi_requests_total",
			Help: "Calls through the gateway, by status class."}, with("status_class")),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llmoneapi_cost_usd_total",
			Help: "What the calls cost in USD, from the models' prices."}, base),
		optional: optional,
	}
	if promSets.m == nil {
		promSets.m = map[string]*promMetrics{}
	}
	promSets.m[key] = m
	return m
}

func (m *promMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.tokens, m.duration, m.ttft, m.tpot, m.overhead, m.requests, m.cost}
}

// Provision checks the labels and registers the collectors in the
// config's registry.
func (p *Prometheus) Provision(ctx caddy.Context) error {
	optional := slices.Clone(p.Labels)
	for _, l := range optional {
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	slices.Sort(optional)
	optional = slices.Compact(optional)
	p.m = metricsFor(optional)
	reg := ctx.GetMetricsRegistry()
	if err := promreg.Register(reg, p.m.collectors()...); err != nil {
		return fmt.Errorf("prometheus: registering metrics (two prometheus recorders in one config must have the same labels): %w", err)
	}
	return nil
}

// Record implements Recorder.
func (p *Prometheus) Record(_ context.Context, c llm.Call) error {
	m := p.m
	ok := c.Status < 400 && c.ErrorCode == ""
	errorType := ""
	if !ok {
		errorType = c.ErrorCode
		if errorType == "" {
			errorType = statusClass(c.Status)
		}
	}
	tokens := c.UsageSource != llm.UsageNone && c.UsageSource != ""
	streamed := ok && c.Stream && c.TTFT > 0
	perToken := streamed && c.Usage.CompletionTokens > 1 && c.Duration > c.TTFT

	m.seriesMu.Lock()
	s := m.seriesOf(&c)
	requests := s.with(&s.requests, statusClass(c.Status), m.requests.MetricVec)
	duration := s.with(&s.duration, errorType, m.duration.MetricVec)
	var input, output, cost, ttft, tpot, overhead prometheus.Metric
	if tokens {
		input = s.with(&s.tokens, "input", m.tokens.MetricVec)
		output = s.with(&s.tokens, "output", m.tokens.MetricVec)
	}
	if c.Cost > 0 {
		cost = s.own(&s.cost, m.cost.MetricVec)
	}
	if streamed {
		ttft = s.own(&s.ttft, m.ttft.MetricVec)
	}
	if perToken {
		tpot = s.own(&s.tpot, m.tpot.MetricVec)
	}
	if c.TTFT > 0 && len(c.Attempts) > 0 {
		overhead = s.own(&s.overhead, m.overhead.MetricVec)
	}
	m.seriesMu.Unlock()

	requests.(prometheus.Counter).Inc()
	duration.(prometheus.Observer).Observe(c.Duration.Seconds())
	if tokens {
		input.(prometheus.Observer).Observe(float64(c.Usage.PromptTokens))
		output.(prometheus.Observer).Observe(float64(c.Usage.CompletionTokens))
	}
	if cost != nil {
		cost.(prometheus.Counter).Add(c.Cost)
	}
	if streamed {
		ttft.(prometheus.Observer).Observe(c.TTFT.Seconds())
	}
	if perToken {
		tpot.(prometheus.Observer).Observe((c.Duration - c.TTFT).Seconds() / float64(c.Usage.CompletionTokens-1))
	}
	if overhead != nil {
		o := c.TTFT
		for _, a := range c.Attempts {
			o -= a.Latency
		}
		overhead.(prometheus.Observer).Observe(max(o, 0).Seconds())
	}
	return nil
}

// promSeriesKey is the label values every series of a call has: the
// bounded ones, then the config's optional ones in order.
type promSeriesKey struct {
	operation, provider, model, served string
	optional                           [4]string
}

// promSeries are the children of one promSeriesKey, found once: a record
// then costs one map lookup instead of one WithLabelValues (hashing every
// label) per metric. Children are made on first use, as WithLabelValues
// makes them, so that a series appears only once something was observed in
// it. The maps are keyed by the value of the metric's extra label (status
// class, error type, token type).
type promSeries struct {
	labels                     []string // the values of promSeriesKey
	requests, duration, tokens map[string]prometheus.Metric
	cost, ttft, tpot, overhead prometheus.Metric
}

// seriesOf returns the series of c; m.seriesMu must be held.
func (m *promMetrics) seriesOf(c *llm.Call) *promSeries {
	k := promSeriesKey{operation: operationName(*c), provider: providerName(c.Provider), model: c.Model, served: c.ServedModel}
	for i, o := range m.optional {
		k.optional[i] = optionalValue(o, *c)
	}
	if s := m.series[k]; s != nil {
		return s
	}
	s := &promSeries{labels: append([]string{k.operation, k.provider, k.model, k.served}, k.optional[:len(m.optional)]...)}
	if m.series == nil {
		m.series = map[promSeriesKey]*promSeries{}
	}
	m.series[k] = s
	return s
}

// with returns the child of vec under s's labels and extra, kept in in.
func (s *promSeries) with(in *map[string]prometheus.Metric, extra string, vec *prometheus.MetricVec) prometheus.Metric {
	if c, ok := (*in)[extra]; ok {
		return c
	}
	c := child(vec, append(s.labels[:len(s.labels):len(s.labels)], extra))
	if *in == nil {
		*in = map[string]prometheus.Metric{}
	}
	(*in)[extra] = c
	return c
}

// own returns the child of vec under s's labels alone, kept in *c.
func (s *promSeries) own(c *prometheus.Metric, vec *prometheus.MetricVec) prometheus.Metric {
	if *c == nil {
		*c = child(vec, s.labels)
	}
	return *c
}

func child(vec *prometheus.MetricVec, labels []string) prometheus.Metric {
	c, err := vec.GetMetricWithLabelValues(labels...)
	if err != nil {
		panic(err) // as WithLabelValues does; the labels are the vec's own
	}
	return c
}

// operationName is the OpenTelemetry gen_ai.operation.name of the call.
func operationName(c llm.Call) string {
	switch c.API {
	case llm.APIOpenAIChat, llm.APIOpenAIResponses, llm.APIAnthropicMessages:
		return "chat"
	case llm.APIOpenAICompletions:
		return "text_completion"
	case llm.APIOpenAIEmbeddings:
		return "embeddings"
	}
	switch c.Endpoint {
	case llm.EndpointChat:
		return "chat"
	case llm.EndpointCompletions:
		return "text_completion"
	case llm.EndpointEmbeddings:
		return "embeddings"
	}
	return string(c.Endpoint)
}

// providerName is the OpenTelemetry gen_ai.provider.name of a provider
// module, where the conventions name it.
func providerName(module string) string {
	switch module {
	case "azure":
		return "azure.ai.openai"
	case "gemini":
		return "gcp.gemini"
	}
	return module
}

func optionalValue(label string, c llm.Call) string {
	if label == "upstream" {
		return c.Upstream
	}
	if c.Identity == nil {
		return ""
	}
	switch label {
	case "user":
		return c.Identity.User
	case "key":
		return c.Identity.KeyID
	}
	return c.Identity.Team
}

func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return statusClasses[status/100-1]
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// UnmarshalCaddyfile sets up the recorder from Caddyfile tokens. Syntax:
//
//	prometheus [{
//	    labels <user|key|team|upstream...>
//	}]
func (p *Prometheus) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the recorder's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "labels":
			labels := d.RemainingArgs()
			if len(labels) == 0 {
				return d.ArgErr()
			}
			for _, l := range labels {
				if err := checkLabel(l); err != nil {
					return d.WrapErr(err)
				}
			}
			p.Labels = append(p.Labels, labels...)
		default:
			return d.Errf("unrecognized prometheus recorder subdirective '%s'", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ Recorder              = (*Prometheus)(nil)
	_ caddy.Provisioner     = (*Prometheus)(nil)
	_ caddyfile.Unmarshaler = (*Prometheus)(nil)
)
