package route

import (
	"context"
	"io"
	"net/http"

	"github.com/llmoneapi/llmoneapi/llm"
)

// Provider speaks one upstream API family: it turns a client's request into
// the upstream's request, and the upstream's answer into what the client
// asked for. Providers are guest modules in the llm.route.providers
// namespace; each upstream gets its own instance, so a provider may hold
// options that apply to one upstream only.
//
// The client's API is given by Exchange.Endpoint (each endpoint belongs to
// one API: chat.completions to OpenAI's, a messages endpoint to Anthropic's),
// and a provider answers in that API: one whose upstream speaks another
// translates inside these methods, streams included, while the route handler
// only moves bytes, reads usage and applies policy. A provider holds its own
// options (an API version, a region) as module fields.
type Provider interface {
	// NewRequest returns the upstream HTTP request for one attempt, made
	// with ctx. It must set the upstream's credentials (x.Upstream.Key())
	// and must not copy anything of the client's request but what the
	// exchange carries. An error (an endpoint it does not serve) sends
	// nothing: the attempt counts as request_failed, the next upstream is
	// tried, and if none is left the client gets 502
	// upstream_request_failed; the error is logged, never shown to the
	// client. An *llm.Error (wrapped or not) instead says the client's
	// request cannot be served this way (a request its translation
	// refuses): the client gets it as it is, and no other upstream is
	// tried.
	NewRequest(ctx context.Context, x *Exchange) (*http.Request, error)

	// Response turns a complete successful upstream response body into the
	// body the client gets, and reads the call's usage (nil when the
	// upstream reported none). An error means the answer could not be read:
	// the attempt counts as bad_response, against the upstream's health, and
	// is retried elsewhere like a server error (502 bad_upstream_response
	// when none is left).
	Response(x *Exchange, body []byte) (out []byte, usage *llm.Usage, err error)

	// Stream wraps a successful streamed upstream response body. A stream
	// that ended properly (OpenAI's: a finish reason and, when the client
	// asked, the usage chunk) but lacks its end marker is complete: the
	// provider then ends it as the client's API wants ([DONE]) and returns
	// io.EOF.
	Stream(x *Exchange, body io.Reader) Stream

	// Error turns an upstream error response (status >= 400) into the
	// error the client gets. The route handler scrubs credentials from it
	// and decides the status.
	Error(x *Exchange, status int, body []byte) *llm.Error
}

// Redoer is implemented by providers that may send a refused request to the
// same upstream again in another shape: an openai upstream without the
// Responses API (404 or 405 on /responses) gets the call as chat
// completions. The second request belongs to the same try, and its answer,
// whatever it is, is the try's.
type Redoer interface {
	// Redo reports whether to build the exchange's request again with
	// NewRequest and send it, after the upstream answered status with body.
	Redo(x *Exchange, status int, body []byte) bool
}

// Relayer is implemented by providers that pass some unstreamed answers to
// the client unchanged (Response returns the body it is given). An answer
// too large to hold (over 1 MiB) is then relayed as it arrives, in constant
// memory, as bare reverse proxying does, and its usage read from its last
// bytes; Response is not called for it.
type Relayer interface {
	// Relays reports whether Response passes x's answer through unchanged.
	Relays(x *Exchange) bool
	// TailUsage reads the usage out of the last bytes of such an answer
	// (up to 64 KiB of it), nil when they hold none.
	TailUsage(x *Exchange, tail []byte) *llm.Usage
}

// Answerer is implemented by providers that answer some calls themselves,
// without their upstream: a token count (/v1/messages/count_tokens)
// estimated with a tokenizer for an upstream that has no such endpoint.
// The route handler asks it before NewRequest.
type Answerer interface {
	// Answer returns the whole answer to x (the body, and headers for the
	// client) when the provider gives it itself; ok is false when the
	// upstream must be asked.
	Answer(x *Exchange) (body []byte, header http.Header, ok bool, err error)
}

// Prober is implemented by providers whose upstreams are health-checked
// other than OpenAI's way (GET <base_url><health_uri> with the key as a
// bearer token and the upstream's headers), e.g. with another auth header.
type Prober interface {
	// ProbeRequest returns the active health check request for u.
	ProbeRequest(ctx context.Context, u *Upstream, uri string) (*http.Request, error)
}

// Stream yields a streamed response to the client event by event.
type Stream interface {
	// Next returns the next piece of the response. It returns io.EOF after
	// the stream's proper end, and an error when the upstream stream broke
	// off or went wrong (the client's stream is then cut).
	Next() (StreamEvent, error)
}

// StreamErrorer is implemented by streams whose client API ends a broken
// stream otherwise than OpenAI's does (data: {"error":{...}}), e.g. an
// Anthropic-format client's event: error. The handler sends ErrorEvent's
// bytes as the stream's last event, and no end marker.
type StreamErrorer interface {
	ErrorEvent(e *llm.Error) []byte
}

// StreamEvent is one piece of a streamed response.
type StreamEvent struct {
	// Data is the bytes to send the client, whole SSE events in the
	// client's API; empty when an upstream event has nothing for the client.
	// It is valid only until the next call to Next.
	Data []byte
	// Usage is the usage the event reported, if any. A later event's usage
	// replaces an earlier one's.
	Usage *llm.Usage
	// Content says the event carries part of the answer (text, a tool call,
	// a finish reason, usage): keep-alives, role-only chunks and empty
	// events do not. With stream_commit first_content the handler commits
	// a stream to the client at its first content event; until then a
	// stream that breaks is retried on another upstream, and the events
	// before it are held back. Once one event had content a provider may
	// mark every later one.
	Content bool
	// More says that the next event is already at hand, so the handler may
	// hold this one back from the network until it flushes the next: a
	// burst of events then costs one flush, and no event waits. A stream's
	// last event says More when Next's io.EOF follows at once: the handler
	// sends the end with the end of the response body.
	More bool
}

// Exchange is one client request on its way to one upstream.
type Exchange struct {
	// Endpoint is the API the client called.
	Endpoint llm.Endpoint
	// Request is the client's request.
	Request *llm.Request
	// Upstream is where the request goes.
	Upstream *Upstream
	// Model is the model name to send upstream.
	Model string
	// Translated is for providers that serve one client API both natively
	// and by translation (an openai upstream whose Responses API may be
	// missing): set in NewRequest, it tells the provider's other methods
	// which way this exchange went.
	Translated bool
	// Header is the client's request header, its key taken out by
	// llm_auth. A provider forwards only the headers of the client's API
	// that its upstream reads (anthropic-version and anthropic-beta to an
	// Anthropic upstream), never the client's credentials.
	Header http.Header
}
