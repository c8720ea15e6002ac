package providers

import (
	"encoding/json"
	"net/http"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
	"github.com/llmoneapi/llmoneapi/wire/openai"
	"github.com/llmoneapi/llmoneapi/wire/tokens"
)

// clientFormat is the wire format of a client's API: the codec of the
// translation core that reads what the client sends and writes what it
// gets. A translating provider goes client format → canonical form →
// upstream format and back, so that each provider serves every client API
// it does not serve natively.
type clientFormat struct {
	// decodeRequest reads the client's request body.
	decodeRequest func(body []byte) (*wire.Request, error)
	// encodeResponse writes a whole answer for the client.
	encodeResponse func(*wire.Response) ([]byte, error)
	// newStreamEncoder returns the encoder of one stream for the client.
	newStreamEncoder func(x *route.Exchange) streamEncoder
	// streamError writes the event that ends a broken stream (whole SSE
	// events), for APIs whose streams end otherwise than OpenAI's
	// data: {"error":...}; nil for OpenAI's (the route handler's default).
	streamError func(*wire.Error) []byte
	// encoderErrors says that the stream encoder writes that event itself
	// (for wire.EventError), for APIs that number a stream's events (the
	// Responses API): the stream's encoder knows the next number.
	encoderErrors bool
}

// streamEncoder writes a stream in a client's API from canonical events;
// the wire packages' stream encoders are ones.
type streamEncoder interface {
	// Encode appends the SSE events for ev to dst.
	Encode(dst []byte, ev *wire.Event) []byte
	// End appends the stream's proper end.
	End(dst []byte) []byte
}

// clientFormats are the client APIs the translating providers serve, by
// the endpoint the client called. An endpoint missing here is served only
// by providers that serve it natively.
var clientFormats = map[llm.Endpoint]*clientFormat{
	llm.EndpointChat: {
		decodeRequest:  openai.DecodeRequest,
		encodeResponse: openai.EncodeResponse,
		newStreamEncoder: func(x *route.Exchange) streamEncoder {
			return openai.NewStreamEncoder(x.Request.IncludeUsage)
		},
	},
	llm.EndpointMessages: {
		decodeRequest:  anthropic.DecodeRequest,
		encodeResponse: anthropic.EncodeResponse,
		newStreamEncoder: func(x *route.Exchange) streamEncoder {
			return &messagesEncoder{StreamEncoder: anthropic.NewStreamEncoder(), x: x}
		},
		streamError: anthropicStreamError,
	},
}

// messagesEncoder writes a Messages stream whose message_start always has
// the input tokens, which Anthropic's clients read there (Claude Code
// sizes its context by them): an upstream that reports them only at the
// end (OpenAI's) gets them estimated for message_start, and the final
// message_delta carries the upstream's real numbers. The estimate is not
// the call's usage.
type messagesEncoder struct {
	*anthropic.StreamEncoder
	x       *route.Exchange
	started bool
}

func (e *messagesEncoder) Encode(dst []byte, ev *wire.Event) []byte {
	if !e.started {
		e.started = true
		start := wire.Event{Type: wire.EventStart}
		if ev.Type == wire.EventStart {
			start = *ev
		}
		if start.Usage == nil || start.Usage.PromptTokens == 0 {
			start.Usage = &llm.Usage{PromptTokens: int64(estimatePrompt(e.x))}
			start.Usage.TotalTokens = start.Usage.PromptTokens
		}
		dst = e.StreamEncoder.Encode(dst, &start)
		if ev.Type == wire.EventStart {
			return dst
		}
	}
	return e.StreamEncoder.Encode(dst, ev)
}

func (e *messagesEncoder) End(dst []byte) []byte {
	if !e.started {
		dst = e.Encode(dst, &wire.Event{Type: wire.EventStart})
	}
	return e.StreamEncoder.End(dst)
}

// estimatePrompt counts the prompt tokens of the client's request with the
// tokenizer of the upstream's model; 0 for a request it cannot read.
func estimatePrompt(x *route.Exchange) int {
	cf, ok := clientFormats[x.Endpoint]
	if !ok {
		return 0
	}
	req, err := cf.decodeRequest(x.Request.Body)
	if err != nil {
		return 0
	}
	return tokens.Prompt(x.Model, req)
}

// TokenCountHeader is the response header of a token count the gateway
// estimated itself, with the value "estimated": the upstream has no count
// endpoint, so the count is the tokenizer's, not the model's own.
const TokenCountHeader = "X-LLM-Token-Count"

// countTokens answers /v1/messages/count_tokens for an upstream that cannot
// count: the client's system prompt, messages and tools counted with the
// tokenizer of the upstream's model, and said to be an estimate. Other
// endpoints go to the upstream (ok false).
func countTokens(x *route.Exchange) (body []byte, header http.Header, ok bool, err error) {
	if x.Endpoint != llm.EndpointCountTokens {
		return nil, nil, false, nil
	}
	req, err := anthropic.DecodeRequest(x.Request.Body)
	if err != nil {
		return nil, nil, false, err
	}
	n := tokens.Prompt(x.Model, req)
	body, _ = json.Marshal(struct {
		InputTokens int `json:"input_tokens"`
	}{n})
	header = http.Header{}
	header.Set(TokenCountHeader, "estimated")
	return body, header, true, nil
}

// anthropicStreamError is the event: error that ends a broken Messages
// stream.
func anthropicStreamError(e *wire.Error) []byte {
	return wire.AppendEvent(nil, "error", anthropic.EncodeError(e))
}

// errorStream is a stream that ends a break the way its client's API does.
type errorStream struct {
	route.Stream
	encode func(*wire.Error) []byte
}

// ErrorEvent is the event that ends the broken stream.
func (s *errorStream) ErrorEvent(e *llm.Error) []byte { return s.encode(wire.FromLLM(e)) }

// withStreamError gives s the client format's end for broken streams, if
// the format has its own.
func withStreamError(s route.Stream, encode func(*wire.Error) []byte) route.Stream {
	if encode == nil {
		return s
	}
	return &errorStream{Stream: s, encode: encode}
}

var _ route.StreamErrorer = (*errorStream)(nil)
