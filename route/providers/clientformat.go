package providers

import (
	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
	"github.com/llmoneapi/llmoneapi/wire/openai"
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
		decodeRequest:    anthropic.DecodeRequest,
		encodeResponse:   anthropic.EncodeResponse,
		newStreamEncoder: func(*route.Exchange) streamEncoder { return anthropic.NewStreamEncoder() },
		streamError:      anthropicStreamError,
	},
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
