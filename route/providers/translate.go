package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"go.uber.org/zap"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/sse"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/openai"
)

// upstreamFormat is the wire format of a translating provider's upstream:
// the codec of the translation core (package wire) that speaks it.
type upstreamFormat struct {
	encodeRequest  func(*wire.Request) ([]byte, []string, error)
	decodeResponse func([]byte) (*wire.Response, error)
	newDecoder     func() streamDecoder
	decodeError    func(status int, body []byte) *wire.Error
}

type streamDecoder interface {
	Decode(dst []wire.Event, data []byte) ([]wire.Event, error)
}

// translate is what the translating providers share: the client's request
// decoded from its API's format (see clientFormats) into the canonical
// form and encoded in the upstream's, the upstream's answer decoded from
// the upstream's format and encoded for the client.
type translate struct {
	format upstreamFormat
	logger *zap.Logger
}

// clientFormatOf returns the format of the client's API.
func clientFormatOf(x *route.Exchange) (*clientFormat, error) {
	cf, ok := clientFormats[x.Endpoint]
	if !ok {
		return nil, fmt.Errorf("the %s endpoint is not translated", x.Endpoint)
	}
	return cf, nil
}

// request decodes the client's request, names the model and encodes it in
// the upstream's format. What the translation cannot carry is logged at
// debug level, never sent malformed.
func (t *translate) request(x *route.Exchange, adjust func(*wire.Request)) ([]byte, error) {
	cf, err := clientFormatOf(x)
	if err != nil {
		return nil, err
	}
	req, err := cf.decodeRequest(x.Request.Body)
	if err != nil {
		return nil, clientError(err)
	}
	req.Model, req.Stream = x.Model, x.Request.Stream
	if adjust != nil {
		adjust(req)
	}
	body, dropped, err := t.format.encodeRequest(req)
	if err != nil {
		return nil, err
	}
	if (len(req.Dropped) > 0 || len(dropped) > 0) && t.logger != nil {
		t.logger.Debug("fields dropped in translation",
			zap.String("model", x.Model), zap.Strings("client", req.Dropped), zap.Strings("upstream", dropped))
	}
	return body, nil
}

// clientError is the answer to a client request that its API's decoder
// refused: a 400 (the decoder's own error when it gives one, such as the
// Responses API's for previous_response_id), which the route handler
// answers as it is, without trying another upstream.
func clientError(err error) *llm.Error {
	var we *wire.Error
	if errors.As(err, &we) {
		return openai.ToLLM(we)
	}
	return llm.Errorf(http.StatusBadRequest, llm.TypeInvalidRequest, "invalid_request", "%v", err)
}

// newRequest is an upstream POST of body with the upstream's own headers
// and the JSON and SSE headers; the caller adds the credentials.
func newRequest(ctx context.Context, x *route.Exchange, url string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for name, values := range x.Upstream.Header() {
		req.Header[name] = slices.Clone(values)
	}
	req.Header.Set("Content-Type", "application/json")
	if x.Request.Stream {
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Accept-Encoding", "identity")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	return req, nil
}

// response turns the upstream's whole response into the client's.
func (t *translate) response(x *route.Exchange, body []byte) ([]byte, *llm.Usage, error) {
	cf, err := clientFormatOf(x)
	if err != nil {
		return nil, nil, err
	}
	resp, err := t.format.decodeResponse(body)
	if err != nil {
		return nil, nil, err
	}
	out, err := cf.encodeResponse(resp)
	return out, resp.Usage, err
}

// errorOf turns the upstream's error into the gateway's, keeping the
// upstream's message and a code the route handler can classify; it reaches
// the client in the client API's format (llm.Error.Write).
func (t *translate) errorOf(status int, body []byte) *llm.Error {
	return openai.ToLLM(t.format.decodeError(status, body))
}

// stream re-encodes the upstream's stream for the client. An endpoint
// without a client format never gets here: its request was refused.
func (t *translate) stream(x *route.Exchange, body io.Reader) route.Stream {
	cf := clientFormats[x.Endpoint]
	s := &translatedStream{
		events: sse.NewReader(body, 0),
		dec:    t.format.newDecoder(),
		enc:    cf.newStreamEncoder(x),
		format: t.format,
		// Most events, re-encoded, fit: the buffer is allocated once.
		buf: make([]byte, 0, 512),
	}
	s.evs = s.evArr[:0]
	encode := cf.streamError
	if cf.encoderErrors {
		encode = func(e *wire.Error) []byte { return s.enc.Encode(nil, &wire.Event{Type: wire.EventError, Err: e}) }
	}
	return withStreamError(s, encode)
}

// translatedStream re-encodes an upstream stream in the client's API, event
// by event: nothing is held but a tool call's pieces in formats that need
// it.
type translatedStream struct {
	events   *sse.Reader
	dec      streamDecoder
	enc      streamEncoder
	format   upstreamFormat
	evs      []wire.Event
	buf      []byte
	content  bool // an event had content: every later one counts
	finished bool // the upstream gave its finish reason
	done     bool
	// evArr backs evs: an upstream event gives a few canonical ones at
	// most, and the stream is allocated anyway.
	evArr [4]wire.Event
}

func (s *translatedStream) Next() (route.StreamEvent, error) {
	if s.done {
		s.events.Release()
		return route.StreamEvent{}, io.EOF
	}
	ev, err := s.events.Next()
	if err == io.EOF {
		if !s.finished {
			return route.StreamEvent{}, fmt.Errorf("the stream ended before its finish: %w", io.ErrUnexpectedEOF)
		}
		// The proper end in the client's format: the usage chunk if it
		// asked, and [DONE].
		s.done = true
		return route.StreamEvent{Data: s.enc.End(s.buf[:0]), Content: true, More: true}, nil
	}
	if err != nil {
		return route.StreamEvent{}, err
	}
	if s.evs, err = s.dec.Decode(s.evs[:0], ev.Data); err != nil {
		return route.StreamEvent{}, fmt.Errorf("bad stream event: %w", err)
	}
	out := route.StreamEvent{More: s.events.Ready()}
	s.buf = s.buf[:0]
	for i := range s.evs {
		e := &s.evs[i]
		switch e.Type {
		case wire.EventError:
			return route.StreamEvent{}, fmt.Errorf("the upstream ended the stream with an error: %w", e.Err)
		case wire.EventStart:
			if e.Usage != nil {
				out.Usage = e.Usage
			}
		case wire.EventUsage:
			out.Usage = e.Usage
			s.content = true
		case wire.EventFinish:
			s.finished, s.content = true, true
		default:
			s.content = true
		}
		s.buf = s.enc.Encode(s.buf, e)
	}
	out.Data, out.Content = s.buf, s.content
	return out, nil
}

// withModel is the client's body with the upstream's model name, for a
// body passed through.
func withModel(x *route.Exchange) []byte {
	if x.Model == x.Request.Model || x.Request.ModelSpan.IsZero() {
		return x.Request.Body
	}
	quoted, _ := json.Marshal(x.Model)
	return llm.Patch(x.Request.Body, llm.Edit{Span: x.Request.ModelSpan, Value: quoted})
}
