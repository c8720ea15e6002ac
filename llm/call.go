// Package llm is the vocabulary the llmoneapi handlers share: the record of one
// request (Call), who made it (Identity), what it cost (Usage), the request as
// the gateway read it (Request) and the OpenAI-style error type. It imports
// none of the project's other packages, so third-party guest modules can use it
// without pulling in a host.
package llm

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Call is the record of one request through the gateway. The first llm_*
// handler that sees a request creates it and stores it in the request's Caddy
// vars; every later handler fills in what it learns, and llm_stats hands the
// finished record to its recorders. A Call belongs to its request's goroutine
// until the request ends; recorders get it only after that and must not
// change it.
type Call struct {
	// ID is the request's unique id, the same as Caddy's {http.request.uuid}.
	ID string `json:"request_id"`
	// Start is when the gateway first saw the request.
	Start time.Time `json:"start"`
	// Duration is how long the request took, set when it ends.
	Duration time.Duration `json:"duration"`
	// Endpoint is the API the client called.
	Endpoint Endpoint `json:"endpoint,omitempty"`
	// Identity is who the client key belongs to; nil when no llm_auth ran.
	Identity *Identity `json:"identity,omitempty"`
	// Model is the model the client asked for.
	Model string `json:"model,omitempty"`
	// UpstreamModel is the model name sent upstream, after renaming.
	UpstreamModel string `json:"upstream_model,omitempty"`
	// Provider is the name of the provider module that served the call.
	Provider string `json:"provider,omitempty"`
	// Upstream is the host of the upstream that served the call. Never a key.
	Upstream string `json:"upstream,omitempty"`
	// Stream tells whether the client asked for a streamed response.
	Stream bool `json:"stream"`
	// Status is the HTTP status the client got.
	Status int `json:"status"`
	// Usage is the token usage of the call.
	Usage Usage `json:"usage"`
	// UsageSource says where Usage came from.
	UsageSource UsageSource `json:"usage_source"`
	// TTFT is the time from the start of the request to the first byte of the
	// response body sent to the client.
	TTFT time.Duration `json:"ttft,omitempty"`
	// Truncated is set when a streamed response ended early, after the
	// client had already received part of it.
	Truncated bool `json:"truncated,omitempty"`
	// ClientAborted is set when the client went away before the response ended.
	ClientAborted bool `json:"client_aborted,omitempty"`
	// Error is the error message the client got, if any.
	Error string `json:"error,omitempty"`
	// ErrorCode is the stable code of the error the client got, if any
	// (e.g. "upstream_timeout"); for a truncated stream, why it was cut.
	ErrorCode string `json:"error_code,omitempty"`
	// API is the client API the request spoke (see the API constants),
	// from the request's path.
	API API `json:"api,omitempty"`
	// ServedModel is the model that finally served the call: Model, or one
	// of its fallbacks.
	ServedModel string `json:"served_model,omitempty"`
	// Price is the price of the model that served the call, nil when the
	// config gives none.
	Price *Price `json:"-"`
	// Cost is what the call cost in USD, from Usage and Price; 0 when the
	// model has no price.
	Cost float64 `json:"cost,omitempty"`
	// Attempts are the upstream tries the call took, in order; the last one
	// is the answer the client got. Retries and fallbacks show here.
	Attempts []Attempt `json:"attempts,omitempty"`

	// Request is the request body as the gateway read it, shared by the
	// handlers so that the body is read only once.
	Request *Request `json:"-"`

	admit []AdmitFunc
}

// Identity is who a client key belongs to, as an authenticator found it.
type Identity struct {
	// User is the user or team the key belongs to.
	User string `json:"user,omitempty"`
	// KeyID is a public identifier of the key, safe to log. Never the key.
	KeyID string `json:"key_id,omitempty"`
	// Models is the key's model scope; an empty scope allows every model.
	Models Scope `json:"models,omitempty"`
	// Team is the team the key belongs to, if any; budgets may be shared
	// by a team's keys.
	Team string `json:"team,omitempty"`
	// Limits are the key's rate limits, quota and budget; zero values
	// mean no limit.
	Limits Limits `json:"limits,omitzero"`
}

// Limits bound what one key may do. A zero field means no limit.
type Limits struct {
	// RPM is the most requests per minute.
	RPM int64 `json:"rpm,omitempty"`
	// TPM is the most tokens (prompt and completion) per minute.
	TPM int64 `json:"tpm,omitempty"`
	// MaxConcurrent is the most requests in flight at once.
	MaxConcurrent int64 `json:"max_concurrent,omitempty"`
	// Quota is the most tokens per QuotaPeriod.
	Quota int64 `json:"quota,omitempty"`
	// QuotaPeriod is the period the quota renews over; "" for the key's
	// lifetime.
	QuotaPeriod Period `json:"quota_period,omitempty"`
	// Budget is the most spend in USD per BudgetPeriod.
	Budget float64 `json:"budget,omitempty"`
	// BudgetPeriod is the period the budget renews over; "" for the key's
	// lifetime.
	BudgetPeriod Period `json:"budget_period,omitempty"`
}

// IsZero reports whether l sets no limit at all.
func (l Limits) IsZero() bool { return l == Limits{} }

// Period is a calendar period a quota or budget renews over, in UTC.
type Period string

// The periods.
const (
	PeriodLifetime Period = ""
	PeriodDaily    Period = "daily"
	PeriodWeekly   Period = "weekly"
	PeriodMonthly  Period = "monthly"
)

// Check returns an error for a period that is none of the known ones.
func (p Period) Check() error {
	switch p {
	case PeriodLifetime, PeriodDaily, PeriodWeekly, PeriodMonthly:
		return nil
	}
	return fmt.Errorf("'%s' is not a period: use daily, weekly, monthly, or nothing for no renewal", p)
}

// Attempt is one try of a call at one upstream.
type Attempt struct {
	// Model is the model this try served: the client's, or a fallback.
	Model string `json:"model"`
	// Provider is the provider module's name.
	Provider string `json:"provider"`
	// Upstream is the upstream's host. Never a key.
	Upstream string `json:"upstream"`
	// UpstreamID is the upstream's identity (provider, URL, model and a
	// short hash of its key), as the admin API shows it.
	UpstreamID string `json:"upstream_id,omitempty"`
	// Status is the upstream's HTTP status; 0 when none came.
	Status int `json:"status,omitempty"`
	// Outcome classifies the try, e.g. "ok", "timeout", "rate_limited".
	Outcome string `json:"outcome"`
	// Latency is how long the try took to its outcome.
	Latency time.Duration `json:"latency"`
}

// Usage is the token usage of one call.
type Usage struct {
	// PromptTokens counts every input token, cached ones included.
	PromptTokens int64 `json:"prompt_tokens"`
	// CompletionTokens counts every output token, reasoning included.
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	// CachedTokens are the prompt tokens read from the provider's prompt
	// cache (OpenAI's cached_tokens, Anthropic's cache_read_input_tokens).
	CachedTokens int64 `json:"cached_tokens,omitempty"`
	// CacheCreationTokens are prompt tokens written to the provider's
	// prompt cache (Anthropic's cache_creation_input_tokens).
	CacheCreationTokens int64 `json:"cache_creation_tokens,omitempty"`
	// ReasoningTokens are the completion tokens spent on reasoning.
	ReasoningTokens int64 `json:"reasoning_tokens,omitempty"`
}

// Total is TotalTokens, or prompt plus completion when an upstream left
// the total out.
func (u *Usage) Total() int64 {
	if u.TotalTokens != 0 {
		return u.TotalTokens
	}
	return u.PromptTokens + u.CompletionTokens
}

// UsageSource says where a call's usage figures came from.
type UsageSource string

// The usage sources.
const (
	// UsageNone: no usage is known (an error, or an upstream that reported none).
	UsageNone UsageSource = "none"
	// UsageUpstream: the upstream reported the usage.
	UsageUpstream UsageSource = "upstream"
	// UsageEstimated: the upstream reported none; the gateway counted the
	// tokens with a tokenizer.
	UsageEstimated UsageSource = "estimated"
	// UsagePartial: the stream was cut short (by the upstream or the
	// client); the usage counts what was generated until then.
	UsagePartial UsageSource = "partial"
)

// API names a client-facing API family, as recorded in Call.API.
type API string

// The client APIs.
const (
	APIOpenAIChat        API = "openai.chat"
	APIOpenAICompletions API = "openai.completions"
	APIOpenAIEmbeddings  API = "openai.embeddings"
	APIOpenAIResponses   API = "openai.responses"
	APIOpenAIModels      API = "openai.models"
	APIAnthropicMessages API = "anthropic.messages"
)

// callVar is the key of the Call in the request's Caddy vars.
const callVar = "llm.call"

// CallFrom returns the request's Call, creating it (and registering the
// {llm.*} placeholders) when no handler has yet. The request must have been
// prepared by a Caddy server, or by caddyhttp.PrepareRequest in tests.
func CallFrom(r *http.Request) *Call {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if c, ok := vars[callVar].(*Call); ok {
		return c
	}
	c := &Call{Start: time.Now(), UsageSource: UsageNone, API: APIOf(r.URL.Path)}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if id, ok := repl.GetString("http.request.uuid"); ok {
			c.ID = id
		}
		repl.Map(c.placeholder)
	}
	if vars != nil {
		vars[callVar] = c
	}
	return c
}

// placeholder resolves the {llm.*} placeholders lazily, so that they cost
// nothing unless a config uses them and always show the Call's latest state.
func (c *Call) placeholder(key string) (any, bool) {
	switch key {
	case "llm.user":
		if c.Identity != nil {
			return c.Identity.User, true
		}
		return "", true
	case "llm.key_id":
		if c.Identity != nil {
			return c.Identity.KeyID, true
		}
		return "", true
	case "llm.model":
		return c.Model, true
	case "llm.upstream_model":
		return c.UpstreamModel, true
	case "llm.provider":
		return c.Provider, true
	case "llm.upstream":
		return c.Upstream, true
	case "llm.usage.prompt_tokens":
		return c.Usage.PromptTokens, true
	case "llm.usage.completion_tokens":
		return c.Usage.CompletionTokens, true
	case "llm.usage.total_tokens":
		return c.Usage.TotalTokens, true
	case "llm.usage.source":
		return string(c.UsageSource), true
	case "llm.ttft_ms":
		if c.TTFT == 0 {
			return "", true
		}
		return strconv.FormatInt(c.TTFT.Milliseconds(), 10), true
	case "llm.stream":
		return c.Stream, true
	case "llm.cost":
		return strconv.FormatFloat(c.Cost, 'f', -1, 64), true
	case "llm.served_model":
		return c.ServedModel, true
	case "llm.attempts":
		return len(c.Attempts), true
	}
	return nil, false
}
