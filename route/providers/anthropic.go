package providers

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
)

func init() {
	caddy.RegisterModule(Anthropic{})
}

// Anthropic speaks Anthropic's Messages API to the upstream and translates
// OpenAI chat completions to it and back, streams included: system
// prompts, images, tools and streamed tool calls, tool results, stop
// sequences, reasoning (thinking), and usage with the prompt cache's reads
// and writes. The base URL is Anthropic's host (https://api.anthropic.com),
// with or without /v1; the key goes in x-api-key.
type Anthropic struct {
	// Version is the anthropic-version header. Default: 2023-06-01.
	Version string `json:"version,omitempty"`
	// Beta are anthropic-beta flags sent with every request, e.g.
	// "prompt-caching-2024-07-31".
	Beta []string `json:"beta,omitempty"`
	// MaxTokens is the max_tokens sent when the client gives none, since
	// Anthropic requires one. Default: 4096.
	MaxTokens int `json:"max_tokens,omitempty"`

	translate
}

// DefaultAnthropicVersion is the anthropic-version sent by default.
const DefaultAnthropicVersion = "2023-06-01"

// CaddyModule returns the Caddy module information.
func (Anthropic) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.providers.anthropic",
		New: func() caddy.Module { return new(Anthropic) },
	}
}

// Provision sets the defaults and the codec.
func (a *Anthropic) Provision(ctx caddy.Context) error {
	if a.Version == "" {
		a.Version = DefaultAnthropicVersion
	}
	if a.MaxTokens <= 0 {
		a.MaxTokens = anthropic.DefaultMaxTokens
	}
	a.translate = translate{logger: ctx.Logger(), format: upstreamFormat{
		encodeRequest:  anthropic.EncodeRequest,
		decodeResponse: anthropic.DecodeResponse,
		newDecoder:     func() streamDecoder { return &anthropic.StreamDecoder{} },
		decodeError:    anthropic.DecodeError,
	}}
	return nil
}

// UnmarshalCaddyfile sets the options from the upstream's block:
//
//	upstream anthropic <base_url> [<api_key>] {
//		version    <anthropic-version>
//		beta       <flag...>
//		max_tokens <n>
//	}
//
// beta may be repeated; its flags add up.
func (a *Anthropic) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // provider name
	for d.NextBlock(0) {
		switch d.Val() {
		case "version":
			v, err := optionArg(d)
			if err != nil {
				return err
			}
			a.Version = v
		case "beta":
			flags := d.RemainingArgs()
			if len(flags) == 0 {
				return d.Err("beta: name at least one anthropic-beta flag")
			}
			a.Beta = append(a.Beta, flags...)
		case "max_tokens":
			v, err := optionArg(d)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("max_tokens: '%s' is not a whole number of at least 1", v)
			}
			a.MaxTokens = n
		default:
			return unknownOption(d, "anthropic", "version", "beta", "max_tokens")
		}
	}
	return nil
}

// versioned is the upstream's base URL with its API version, /v1.
func versioned(base, version string) string {
	if strings.HasSuffix(base, version) {
		return base
	}
	return base + version
}

func (a *Anthropic) auth(req *http.Request, u *route.Upstream) {
	if key := u.Key(); key != "" {
		req.Header.Set("x-api-key", key)
	}
	req.Header.Set("anthropic-version", a.Version)
	if len(a.Beta) > 0 {
		req.Header.Set("anthropic-beta", strings.Join(a.Beta, ","))
	}
}

// NewRequest builds the upstream request.
func (a *Anthropic) NewRequest(ctx context.Context, x *route.Exchange) (*http.Request, error) {
	body, err := a.request(x, func(r *wire.Request) {
		if r.MaxTokens <= 0 {
			r.MaxTokens = a.MaxTokens
		}
	})
	if err != nil {
		return nil, err
	}
	req, err := newRequest(ctx, x, versioned(x.Upstream.BaseURL(), "/v1")+"/messages", body)
	if err != nil {
		return nil, err
	}
	a.auth(req, x.Upstream)
	return req, nil
}

// ProbeRequest is the active health check: GET <base>/v1<uri> with the key
// as Anthropic takes it.
func (a *Anthropic) ProbeRequest(ctx context.Context, u *route.Upstream, uri string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, versioned(u.BaseURL(), "/v1")+uri, nil)
	if err != nil {
		return nil, err
	}
	a.auth(req, u)
	return req, nil
}

// Response translates a whole Messages response.
func (a *Anthropic) Response(x *route.Exchange, body []byte) ([]byte, *llm.Usage, error) {
	return a.response(x, body)
}

// Stream translates the Messages event stream.
func (a *Anthropic) Stream(x *route.Exchange, body io.Reader) route.Stream { return a.stream(x, body) }

// Error maps Anthropic's error, 529 overloaded_error included.
func (a *Anthropic) Error(_ *route.Exchange, status int, body []byte) *llm.Error {
	return a.errorOf(status, body)
}

// Interface guards
var (
	_ route.Provider        = (*Anthropic)(nil)
	_ route.Prober          = (*Anthropic)(nil)
	_ caddy.Provisioner     = (*Anthropic)(nil)
	_ caddyfile.Unmarshaler = (*Anthropic)(nil)
)
