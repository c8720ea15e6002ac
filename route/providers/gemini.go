package providers

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/wire/gemini"
)

func init() {
	caddy.RegisterModule(Gemini{})
}

// Gemini speaks Google's Gemini API (generateContent, and
// streamGenerateContent as server-sent events) to the upstream and
// translates OpenAI chat completions to it and back: system instructions,
// images, tools (their schemas as parametersJsonSchema, or cleaned for
// "parameters" with legacy_schema), function calls and responses, stop
// sequences, thinking, and usage with cached and thinking tokens. The base
// URL is the API's host (https://generativelanguage.googleapis.com), with
// or without its version (/v1beta by default); the key goes in
// x-goog-api-key.
type Gemini struct {
	// LegacySchema sends tool parameters as Gemini's OpenAPI-subset
	// "parameters", cleaned of the JSON Schema it rejects, for endpoints
	// without parametersJsonSchema.
	LegacySchema bool `json:"legacy_schema,omitempty"`

	translate
}

// CaddyModule returns the Caddy module information.
func (Gemini) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.providers.gemini",
		New: func() caddy.Module { return new(Gemini) },
	}
}

// Provision sets up the codec.
func (g *Gemini) Provision(ctx caddy.Context) error {
	enc := gemini.Encoder{LegacySchema: g.LegacySchema}
	g.translate = translate{logger: ctx.Logger(), format: upstreamFormat{
		encodeRequest:  enc.EncodeRequest,
		decodeResponse: gemini.DecodeResponse,
		newDecoder:     func() streamDecoder { return &gemini.StreamDecoder{} },
		decodeError:    gemini.DecodeError,
	}}
	return nil
}

// UnmarshalCaddyfile sets the options from the upstream's block:
//
//	upstream gemini <base_url> [<api_key>] {
//		legacy_schema
//	}
func (g *Gemini) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // provider name
	for d.NextBlock(0) {
		switch d.Val() {
		case "legacy_schema":
			if d.NextArg() {
				return d.Err("legacy_schema takes no value")
			}
			g.LegacySchema = true
		default:
			return unknownOption(d, "gemini", "legacy_schema")
		}
	}
	return nil
}

// geminiBase is the base URL with an API version: its own, or /v1beta.
func geminiBase(base string) string {
	if strings.HasSuffix(base, "/v1beta") || strings.HasSuffix(base, "/v1") || strings.HasSuffix(base, "/v1alpha") {
		return base
	}
	return base + "/v1beta"
}

// NewRequest builds the upstream request; the model goes in the path.
func (g *Gemini) NewRequest(ctx context.Context, x *route.Exchange) (*http.Request, error) {
	body, err := g.request(x, nil)
	if err != nil {
		return nil, err
	}
	req, err := newRequest(ctx, x, geminiBase(x.Upstream.BaseURL())+gemini.Path(x.Model, x.Request.Stream), body)
	if err != nil {
		return nil, err
	}
	if key := x.Upstream.Key(); key != "" {
		req.Header.Set("x-goog-api-key", key)
	}
	return req, nil
}

// ProbeRequest is the active health check: GET <base>/v1beta<uri> with the
// key as Gemini takes it.
func (g *Gemini) ProbeRequest(ctx context.Context, u *route.Upstream, uri string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, geminiBase(u.BaseURL())+uri, nil)
	if err != nil {
		return nil, err
	}
	if key := u.Key(); key != "" {
		req.Header.Set("x-goog-api-key", key)
	}
	return req, nil
}

// Response translates a whole generateContent response.
func (g *Gemini) Response(x *route.Exchange, body []byte) ([]byte, *llm.Usage, error) {
	return g.response(x, body)
}

// Stream translates the server-sent chunks.
func (g *Gemini) Stream(x *route.Exchange, body io.Reader) route.Stream { return g.stream(x, body) }

// Error maps Google's error: RESOURCE_EXHAUSTED is a rate limit,
// UNAVAILABLE an overload, a bad key an authentication failure.
func (g *Gemini) Error(_ *route.Exchange, status int, body []byte) *llm.Error {
	return g.errorOf(status, body)
}

// Interface guards
var (
	_ route.Provider        = (*Gemini)(nil)
	_ route.Prober          = (*Gemini)(nil)
	_ caddy.Provisioner     = (*Gemini)(nil)
	_ caddyfile.Unmarshaler = (*Gemini)(nil)
)
