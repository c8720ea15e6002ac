// Package llm is the vocabulary the llmoneapi handlers share: the record of one
// request (Call), who made it (Identity), what it cost (Usage), the request as
// the gateway read it (Request) and the OpenAI-style error type. It imports
// none of the project's other packages, so third-party guest modules can use it
// without pulling in a host.
package llm

import (
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

	// Request is the request body as the gateway read it, shared by the
	// handlers so that the body is read only once.
	Request *Request `json:"-"`
}

// Identity is who a client key belongs to, as an authenticator found it.
type Identity struct {
	// User is the user or team the key belongs to.
	User string `json:"user,omitempty"`
	// KeyID is a public identifier of the key, safe to log. Never the key.
	KeyID string `json:"key_id,omitempty"`
	// Models is the key's model scope; an empty scope allows every model.
	Models Scope `json:"models,omitempty"`
}

// Usage is the token usage of one call.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// UsageSource says where a call's usage figures came from.
type UsageSource string

// The usage sources.
const (
	// UsageNone: no usage is known (an error, or an upstream that reported none).
	UsageNone UsageSource = "none"
	// UsageUpstream: the upstream reported the usage.
	UsageUpstream UsageSource = "upstream"
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
	c := &Call{Start: time.Now(), UsageSource: UsageNone}
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
	}
	return nil, false
}
