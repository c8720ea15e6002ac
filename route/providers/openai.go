// Package providers holds the built-in upstream providers, the
// llm.route.providers.* modules that speak each LLM vendor's API.
package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/sse"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/openai"
)

func init() {
	caddy.RegisterModule(OpenAI{})
}

// OpenAI speaks the OpenAI API: OpenAI itself and every server that copies
// its API (vLLM, Ollama, llama.cpp, LM Studio, DeepSeek, OpenRouter, Groq,
// Together, ...). A client request in the OpenAI API goes through as it
// came, with only the model renamed (when the upstream sets one) and
// stream_options.include_usage turned on for streams, so that the gateway
// always learns a stream's usage; the usage-only chunk that this adds is
// removed again when the client did not ask for it. The Responses API goes
// to <base_url>/responses as it came too, unless the upstream lacks it (see
// Responses). Other client APIs (Anthropic's Messages) are translated to
// chat completions and back.
type OpenAI struct {
	// Responses says how the upstream serves the Responses API
	// (/v1/responses): "native" passes calls through to
	// <base_url>/responses with the model renamed; "translate" sends them
	// as chat completions and translates the answers back, for servers that
	// have only those; "auto" tries native, and once the upstream answers
	// 404 or 405 on /responses, sends that call and every later one as chat
	// completions for as long as the config runs. Caddyfile: responses
	// native|translate|auto. Default auto.
	Responses string `json:"responses,omitempty"`

	openaiCompat
	// chatOnly is set once an auto upstream turned out to lack the
	// Responses API; a pointer, since the module is copied by value.
	chatOnly *atomic.Bool
}

// CaddyModule returns the Caddy module information.
func (OpenAI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.providers.openai",
		New: func() caddy.Module { return new(OpenAI) },
	}
}

// Provision checks the options and sets up the codec for translated
// client APIs.
func (o *OpenAI) Provision(ctx caddy.Context) error {
	switch o.Responses {
	case "":
		o.Responses = ResponsesAuto
	case ResponsesAuto, ResponsesNative, ResponsesTranslate:
	default:
		return fmt.Errorf("openai: responses '%s' is none of native, translate, auto", o.Responses)
	}
	o.openaiCompat = newOpenAICompat(ctx)
	o.chatOnly = new(atomic.Bool)
	return nil
}

// UnmarshalCaddyfile sets the options from the upstream's block:
//
//	upstream openai <base_url> [<api_key>] {
//		responses native|translate|auto
//	}
func (o *OpenAI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // provider name
	for d.NextBlock(0) {
		switch d.Val() {
		case "responses":
			v, err := optionArg(d)
			if err != nil {
				return err
			}
			switch v {
			case ResponsesAuto, ResponsesNative, ResponsesTranslate:
				o.Responses = v
			default:
				return d.Errf("responses: '%s' is none of native, translate, auto", v)
			}
		default:
			return unknownOption(d, "openai", "responses")
		}
	}
	return nil
}

// openaiPaths are the endpoints the OpenAI API serves natively, passed
// through, and their paths under the base URL.
var openaiPaths = map[llm.Endpoint]string{
	llm.EndpointChat:        "/chat/completions",
	llm.EndpointCompletions: "/completions",
	llm.EndpointEmbeddings:  "/embeddings",
}

// openaiUpstream is the chat completions format, which the openai and
// azure providers translate the client APIs they lack to.
var openaiUpstream = upstreamFormat{
	encodeRequest:  openai.EncodeRequest,
	decodeResponse: openai.DecodeResponse,
	newDecoder:     func() streamDecoder { return &openai.StreamDecoder{} },
	decodeError:    openai.DecodeError,
}

// openaiCompat is what the openai and azure providers share: the OpenAI
// API's own endpoints passed through, the other client APIs translated to
// chat completions.
type openaiCompat struct {
	translate
}

func newOpenAICompat(ctx caddy.Context) openaiCompat {
	return openaiCompat{translate{format: openaiUpstream, logger: ctx.Logger()}}
}

// native tells whether the client called an endpoint of the OpenAI API
// that this exchange passes through.
func (openaiCompat) native(x *route.Exchange) bool {
	_, ok := openaiPaths[x.Endpoint]
	return ok || x.Endpoint == llm.EndpointResponses && !x.Translated
}

// body returns the upstream request's path and body: the client's body
// patched for OpenAI's own endpoints, a chat completion request otherwise.
func (c *openaiCompat) body(x *route.Exchange) (path string, body []byte, err error) {
	if path, ok := openaiPaths[x.Endpoint]; ok {
		return path, openaiBody(x), nil
	}
	if c.native(x) {
		return responsesPath, openaiBody(x), nil
	}
	body, err = c.request(x, nil)
	return openaiPaths[llm.EndpointChat], body, err
}

// Answer estimates a token count, which the OpenAI API has no endpoint for.
func (openaiCompat) Answer(x *route.Exchange) ([]byte, http.Header, bool, error) {
	return countTokens(x)
}

// NewRequest builds the upstream request.
func (o *OpenAI) NewRequest(ctx context.Context, x *route.Exchange) (*http.Request, error) {
	if x.Endpoint == llm.EndpointResponses && !x.Translated {
		x.Translated = o.Responses == ResponsesTranslate || o.chatOnly.Load()
	}
	path, body, err := o.body(x)
	if err != nil {
		return nil, err
	}
	req, err := newRequest(ctx, x, x.Upstream.BaseURL()+path, body)
	if err != nil {
		return nil, err
	}
	if key := x.Upstream.Key(); key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return req, nil
}

var includeUsage = []byte(`"stream_options":{"include_usage":true},`)

// openaiBody patches the client's body in place: the model name, and
// stream_options.include_usage for streams.
func openaiBody(x *route.Exchange) []byte {
	in := x.Request
	var edits []llm.Edit
	// The Responses API always ends a stream with its usage, and has no
	// include_usage.
	wantUsage := in.Stream && !in.IncludeUsage && (x.Endpoint == llm.EndpointChat || x.Endpoint == llm.EndpointCompletions)
	if wantUsage && in.StreamOptionsSpan.IsZero() {
		open := bytes.IndexByte(in.Body, '{') + 1
		edits = append(edits, llm.Edit{Span: llm.Span{Start: open, End: open}, Value: includeUsage})
	}
	if x.Model != in.Model {
		quoted, _ := json.Marshal(x.Model)
		edits = append(edits, llm.Edit{Span: in.ModelSpan, Value: quoted})
	}
	if wantUsage && !in.StreamOptionsSpan.IsZero() {
		edits = append(edits, llm.Edit{Span: in.StreamOptionsSpan, Value: withIncludeUsage(in.Body[in.StreamOptionsSpan.Start:in.StreamOptionsSpan.End])})
	}
	if len(edits) == 0 {
		return in.Body
	}
	if len(edits) == 2 && edits[0].Span.Start > edits[1].Span.Start {
		edits[0], edits[1] = edits[1], edits[0]
	}
	return llm.Patch(in.Body, edits...)
}

// withIncludeUsage returns the stream_options object with include_usage set.
func withIncludeUsage(options []byte) []byte {
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(options, &fields) // null or an object, as the request parser checked
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	fields["include_usage"] = json.RawMessage("true")
	out, _ := json.Marshal(fields)
	return out
}

// Response passes the body through and reads its usage, or translates a
// chat completion for another client API.
func (c *openaiCompat) Response(x *route.Exchange, body []byte) ([]byte, *llm.Usage, error) {
	if !c.native(x) {
		return c.response(x, body)
	}
	if x.Endpoint == llm.EndpointResponses {
		return responsesResponse(body)
	}
	usage, _, err := openaiUsage(body)
	if err != nil {
		return nil, nil, err
	}
	return body, usage, nil
}

// Relays says which answers Response passes through unchanged: those of
// OpenAI's own chat, completions and embeddings endpoints.
func (openaiCompat) Relays(x *route.Exchange) bool {
	_, ok := openaiPaths[x.Endpoint]
	return ok
}

// TailUsage reads the usage object of an answer from its last bytes: OpenAI
// writes it after the choices or the embeddings, so it is the last one.
func (openaiCompat) TailUsage(_ *route.Exchange, tail []byte) *llm.Usage {
	i := bytes.LastIndex(tail, usageKey)
	if i < 0 || !llm.HasValue(tail[i:], usageKey, '{') {
		return nil
	}
	rest := tail[i+len(usageKey):]
	rest = rest[bytes.IndexByte(rest, '{'):]
	var obj json.RawMessage
	if json.NewDecoder(bytes.NewReader(rest)).Decode(&obj) != nil {
		return nil
	}
	usage, err := readUsage(obj)
	if err != nil {
		return nil
	}
	return usage
}

// openaiUsage reads the top-level usage of a response or chunk, and tells
// whether the chunk has an empty choices list (the usage-only chunk).
func openaiUsage(body []byte) (usage *llm.Usage, noChoices bool, err error) {
	err = llm.ScanObject(body, func(key []byte, v llm.Span) error {
		val := body[v.Start:v.End]
		switch string(key) {
		case "usage":
			if val[0] != '{' {
				return nil
			}
			var err error
			if usage, err = readUsage(val); err != nil {
				return fmt.Errorf("bad usage: %w", err)
			}
		case "choices":
			noChoices = val[0] == '[' && len(bytes.TrimSpace(val[1:len(val)-1])) == 0
		}
		return nil
	})
	return usage, noChoices, err
}

// The members readUsage reads, in the order of its ScanMembers values.
var (
	usageFields  = []string{"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "completion_tokens_details"}
	promptFields = []string{"cached_tokens", "cache_creation_tokens"}
	outputFields = []string{"reasoning_tokens"}
)

// readUsage reads an OpenAI usage object, its token details included, by a
// scan: it comes once per call, on the path of every passthrough answer.
func readUsage(obj []byte) (*llm.Usage, error) {
	var prompt, completion, total, promptDetails, outputDetails, cached, created, reasoning []byte
	if !wire.ScanMembers(obj, usageFields, &prompt, &completion, &total, &promptDetails, &outputDetails) ||
		len(promptDetails) > 0 && promptDetails[0] == '{' && !wire.ScanMembers(promptDetails, promptFields, &cached, &created) ||
		len(outputDetails) > 0 && outputDetails[0] == '{' && !wire.ScanMembers(outputDetails, outputFields, &reasoning) {
		return nil, errors.New("not a usage object")
	}
	u := new(llm.Usage)
	for _, f := range [...]struct {
		name string
		v    []byte
		dst  *int64
	}{
		{"prompt_tokens", prompt, &u.PromptTokens}, {"completion_tokens", completion, &u.CompletionTokens},
		{"total_tokens", total, &u.TotalTokens}, {"cached_tokens", cached, &u.CachedTokens},
		{"cache_creation_tokens", created, &u.CacheCreationTokens}, {"reasoning_tokens", reasoning, &u.ReasoningTokens},
	} {
		if wire.IsNull(f.v) {
			continue
		}
		n, ok := wire.ScanInt(f.v)
		if !ok {
			return nil, fmt.Errorf("%s is not a whole number: %.40s", f.name, f.v)
		}
		*f.dst = n
	}
	u.TotalTokens = u.Total()
	return u, nil
}

// Stream relays the upstream's events as they are, but for what asking
// for usage added: the usage-only chunk, and the "usage":null that then
// ends every other chunk. A stream that finished
// (a finish_reason and, when the client asked, the usage chunk) but whose
// upstream closed without [DONE] is complete, and gets its [DONE]. The
// stream of a translated client API is re-encoded.
func (c *openaiCompat) Stream(x *route.Exchange, body io.Reader) route.Stream {
	if !c.native(x) {
		return c.stream(x, body)
	}
	if x.Endpoint == llm.EndpointResponses {
		return newResponsesStream(body)
	}
	return &openaiStream{events: sse.NewReader(body, 0), clientWantsUsage: x.Request.IncludeUsage}
}

type openaiStream struct {
	events           *sse.Reader
	clientWantsUsage bool
	done             bool
	content          bool // an event had content: every later one counts
	finished         bool // a choice had its finish_reason
	usage            bool // the usage chunk came
}

var (
	contentKey = []byte(`"content":"`)
	doneData   = []byte("[DONE]")
	doneEvent  = []byte("data: [DONE]\n\n")
	// nullUsageEnd ends a chunk of a stream asked for its usage: the
	// client that did not ask would not have got the field.
	nullUsageEnd = []byte(`,"usage":null}` + "\n\n")
)

func (s *openaiStream) Next() (route.StreamEvent, error) {
	if s.done {
		s.events.Release()
		return route.StreamEvent{}, io.EOF
	}
	ev, err := s.events.Next()
	if err == io.EOF {
		if s.finished && (s.usage || !s.clientWantsUsage) {
			s.done = true
			return route.StreamEvent{Data: doneEvent, Content: true, More: true}, nil
		}
		return route.StreamEvent{}, fmt.Errorf("the stream ended without [DONE]: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return route.StreamEvent{}, err
	}
	if bytes.Equal(ev.Data, doneData) {
		s.done = true
		return route.StreamEvent{Data: ev.Raw, Content: true, More: true}, nil
	}
	out := route.StreamEvent{Data: ev.Raw, More: s.events.Ready()}
	if !s.finished && llm.HasValue(ev.Data, finishKey, '"') {
		s.finished, s.content = true, true
	}
	if !s.content {
		s.content = hasContent(ev.Data)
	}
	out.Content = s.content
	// Only chunks with a usage object are parsed; the rest pass untouched
	// but for the "usage":null the gateway's asking added.
	if !llm.HasValue(ev.Data, usageKey, '{') {
		if !s.clientWantsUsage && bytes.HasSuffix(ev.Raw, nullUsageEnd) {
			// In place: the event is the Reader's until the next Next.
			end := len(ev.Raw) - len(nullUsageEnd)
			out.Data = append(ev.Raw[:end], "}\n\n"...)
		}
		return out, nil
	}
	usage, noChoices, err := openaiUsage(ev.Data)
	if err != nil {
		return route.StreamEvent{}, fmt.Errorf("bad stream chunk: %w", err)
	}
	out.Usage = usage
	if usage != nil {
		s.usage, out.Content, s.content = true, true, true
		if noChoices && !s.clientWantsUsage {
			out.Data = nil
		}
	}
	return out, nil
}

// hasContent tells whether a chunk carries part of the answer: a choice
// with text, or a delta with anything but its role (content, a tool call,
// a refusal, reasoning). Only chunks before the first such one are looked
// into, by a scan: a text delta by a search, the rest (the role chunk, tool
// calls, refusals, other servers' fields) key by key, without decoding.
func hasContent(data []byte) bool {
	if i := bytes.Index(data, contentKey); i >= 0 && i+len(contentKey) < len(data) && data[i+len(contentKey)] != '"' {
		return true
	}
	found := false
	err := llm.ScanObject(data, func(key []byte, v llm.Span) error {
		if string(key) != "choices" || data[v.Start] != '[' {
			return nil
		}
		return llm.ScanArray(data[v.Start:v.End], func(c llm.Span) error {
			choice := data[v.Start+c.Start : v.Start+c.End]
			if choice[0] != '{' {
				return nil
			}
			return llm.ScanObject(choice, func(key []byte, v llm.Span) error {
				val := choice[v.Start:v.End]
				switch string(key) {
				case "text":
					found = found || !emptyJSON(val)
				case "delta":
					if val[0] == '{' {
						return llm.ScanObject(val, func(key []byte, d llm.Span) error {
							found = found || (string(key) != "role" && !emptyJSON(val[d.Start:d.End]))
							return nil
						})
					}
				}
				return nil
			})
		})
	})
	if err != nil {
		return len(bytes.TrimSpace(data)) > 0 // not ours to judge: pass it on
	}
	return found
}

// emptyJSON tells null, "", [] and {} apart from values with something in.
func emptyJSON(v []byte) bool {
	switch string(bytes.TrimSpace(v)) {
	case "null", `""`, "[]", "{}":
		return true
	}
	return false
}

var (
	usageKey  = []byte(`"usage"`)
	finishKey = []byte(`"finish_reason"`)
)

// Error reads an OpenAI-style error body. Servers that copy the API differ
// in their errors, so FastAPI's {"detail": ...}, a bare {"message": ...}
// and plain text are understood too.
func (openaiCompat) Error(_ *route.Exchange, status int, body []byte) *llm.Error {
	var parsed struct {
		Error *struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Code    json.RawMessage `json:"code"`
			Param   *string         `json:"param"`
		} `json:"error"`
		Detail  json.RawMessage `json:"detail"`
		Message string          `json:"message"`
	}
	e := &llm.Error{Status: status, Type: llm.TypeUpstream}
	if json.Unmarshal(body, &parsed) == nil {
		switch {
		case parsed.Error != nil:
			e.Message, e.Code = parsed.Error.Message, rawString(parsed.Error.Code)
			if parsed.Error.Type != "" {
				e.Type = parsed.Error.Type
			}
			if parsed.Error.Param != nil {
				e.Param = *parsed.Error.Param
			}
		case len(parsed.Detail) > 0:
			e.Message = rawString(parsed.Detail)
		default:
			e.Message = parsed.Message
		}
	} else if utf8.Valid(body) {
		e.Message = string(bytes.TrimSpace(body))
		if len(e.Message) > 512 {
			e.Message = e.Message[:512] + "..."
		}
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("the upstream answered with status %d", status)
	}
	return e
}

// rawString renders a JSON value that should be a string but may be a
// number or an object.
func rawString(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	if string(v) == "null" {
		return ""
	}
	return string(v)
}

// Redo sends a Responses call again as a chat completion when an auto
// upstream answered 404 or 405 on /responses, and remembers that it lacks
// the Responses API. A 404 of the Responses API itself, about the model or
// a previous_response_id it does not know, names the code or the parameter
// (OpenAI's "model_not_found", "previous_response_not_found"): that is the
// client's answer, not a missing endpoint, whose 404 says no more than Not
// Found or Invalid URL.
func (o *OpenAI) Redo(x *route.Exchange, status int, body []byte) bool {
	if x.Endpoint != llm.EndpointResponses || x.Translated || o.Responses != ResponsesAuto {
		return false
	}
	if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
		return false
	}
	if e := o.Error(x, status, body); e.Param != "" || e.Code != "" && strings.Trim(e.Code, "0123456789") != "" {
		return false
	}
	if o.chatOnly.CompareAndSwap(false, true) {
		o.logger.Info("the upstream has no Responses API: its /v1/responses calls are translated to chat completions from now on",
			zap.String("upstream", x.Upstream.ID()), zap.Int("status", status))
	}
	return true
}

// Interface guards
var (
	_ route.Provider        = (*OpenAI)(nil)
	_ route.Redoer          = (*OpenAI)(nil)
	_ route.Answerer        = (*OpenAI)(nil)
	_ caddy.Provisioner     = (*OpenAI)(nil)
	_ caddyfile.Unmarshaler = (*OpenAI)(nil)
)
