package providers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/sse"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
)

func init() {
	caddy.RegisterModule(Anthropic{})
}

// Anthropic speaks Anthropic's Messages API to the upstream. A client of
// that API (/v1/messages, /v1/messages/count_tokens) is passed through: the
// body as it came with only the model renamed, the client's
// anthropic-version and anthropic-beta headers forwarded (its version wins
// over Version, its flags join Beta), usage read from the answer. OpenAI
// chat completions are translated to it and back, streams included: system
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

// anthropicPaths are the endpoints Anthropic serves natively, passed
// through, and their paths under <base>/v1.
var anthropicPaths = map[llm.Endpoint]string{
	llm.EndpointMessages:    "/messages",
	llm.EndpointCountTokens: "/messages/count_tokens",
}

// NewRequest builds the upstream request.
func (a *Anthropic) NewRequest(ctx context.Context, x *route.Exchange) (*http.Request, error) {
	if path, ok := anthropicPaths[x.Endpoint]; ok {
		req, err := newRequest(ctx, x, versioned(x.Upstream.BaseURL(), "/v1")+path, withModel(x))
		if err != nil {
			return nil, err
		}
		a.auth(req, x.Upstream)
		a.clientHeaders(req, x.Header)
		return req, nil
	}
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

// clientHeaders forwards an Anthropic client's version and beta flags: its
// anthropic-version replaces the configured one, since the client's body is
// written to it, and its anthropic-beta flags join the configured ones.
func (a *Anthropic) clientHeaders(req *http.Request, client http.Header) {
	if v := client.Get("anthropic-version"); v != "" {
		req.Header.Set("anthropic-version", v)
	}
	flags := slices.Clone(a.Beta)
	for _, line := range client.Values("anthropic-beta") {
		for f := range strings.SplitSeq(line, ",") {
			if f = strings.TrimSpace(f); f != "" && !slices.Contains(flags, f) {
				flags = append(flags, f)
			}
		}
	}
	if len(flags) > 0 {
		req.Header.Set("anthropic-beta", strings.Join(flags, ","))
	}
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

// Response passes a Messages client's answer through with its usage (a
// token count has none: it generates nothing), or translates a whole
// Messages response.
func (a *Anthropic) Response(x *route.Exchange, body []byte) ([]byte, *llm.Usage, error) {
	switch x.Endpoint {
	case llm.EndpointMessages:
		usage, err := anthropic.ResponseUsage(body)
		return body, usage, err
	case llm.EndpointCountTokens:
		return body, nil, nil
	}
	return a.response(x, body)
}

// Stream relays a Messages client's stream, or translates it.
func (a *Anthropic) Stream(x *route.Exchange, body io.Reader) route.Stream {
	if x.Endpoint == llm.EndpointMessages {
		return withStreamError(&anthropicStream{events: sse.NewReader(body, 0)}, anthropicStreamError)
	}
	return a.stream(x, body)
}

// anthropicStream relays a Messages stream as it comes, reading its usage
// from message_start (the input and the prompt cache) and message_delta
// (the output). Only those events are decoded.
type anthropicStream struct {
	events  *sse.Reader
	dec     anthropic.StreamDecoder
	evs     []wire.Event
	content bool // an event had content: every later one counts
	done    bool
}

func (s *anthropicStream) Next() (route.StreamEvent, error) {
	if s.done {
		s.events.Release()
		return route.StreamEvent{}, io.EOF
	}
	ev, err := s.events.Next()
	if err == io.EOF {
		return route.StreamEvent{}, fmt.Errorf("the stream ended before message_stop: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return route.StreamEvent{}, err
	}
	out := route.StreamEvent{Data: ev.Raw, More: s.events.Ready()}
	switch string(ev.Name) {
	case "message_start", "message_delta", "error":
		if s.evs, err = s.dec.Decode(s.evs[:0], ev.Data); err != nil {
			return route.StreamEvent{}, fmt.Errorf("bad stream event: %w", err)
		}
		for i := range s.evs {
			e := &s.evs[i]
			switch e.Type {
			case wire.EventError:
				return route.StreamEvent{}, fmt.Errorf("the upstream ended the stream with an error: %w", e.Err)
			case wire.EventStart, wire.EventUsage:
				if e.Usage != nil {
					out.Usage = e.Usage
				}
			}
		}
		if string(ev.Name) == "message_delta" {
			s.content = true
		}
	case "content_block_start", "content_block_delta", "content_block_stop":
		s.content = true
	case "message_stop":
		s.done, s.content, out.More = true, true, true
	}
	out.Content = s.content
	return out, nil
}

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
