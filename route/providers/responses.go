package providers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/sse"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/responses"
)

// responsesPath is the Responses API's path under an OpenAI base URL.
const responsesPath = "/responses"

// The ways an openai upstream serves the Responses API (OpenAI.Responses).
const (
	// ResponsesAuto passes calls through to <base>/responses until the
	// upstream answers 404 or 405 there, then translates them to chat
	// completions for the rest of the config's life.
	ResponsesAuto = "auto"
	// ResponsesNative always passes calls through to <base>/responses.
	ResponsesNative = "native"
	// ResponsesTranslate always translates calls to chat completions.
	ResponsesTranslate = "translate"
)

func init() {
	clientFormats[llm.EndpointResponses] = &clientFormat{
		decodeRequest:    responses.DecodeRequest,
		encodeResponse:   responses.EncodeResponse,
		newStreamEncoder: func(*route.Exchange) streamEncoder { return responses.NewStreamEncoder() },
		encoderErrors:    true,
	}
}

// responsesResponse passes a whole Responses answer through and reads its
// usage.
func responsesResponse(body []byte) ([]byte, *llm.Usage, error) {
	usage, err := responses.Usage(body)
	if err != nil {
		return nil, nil, err
	}
	return body, usage, nil
}

// responsesStream relays an upstream's Responses event stream as it came,
// reading the usage from its final event (response.completed or
// response.incomplete), which ends it. The upstream's own failure (an error
// event, response.failed) before the answer's first content is a broken
// stream, which another upstream may serve; after it, the client gets the
// upstream's failure events as they came, and the stream counts as cut.
type responsesStream struct {
	events  *sse.Reader
	seq     int // the events relayed: the next event's sequence number
	id      string
	model   string
	created int64
	content bool // an event had content: every later one counts
	// errorSent and failedSent say the upstream's error event and
	// response.failed reached the client, so ErrorEvent need not say it
	// again.
	errorSent, failedSent bool
	// done says the final event was relayed: the next Next gives the
	// reader's buffers back, which the final event's bytes were in.
	done bool
}

func newResponsesStream(body io.Reader) *responsesStream {
	return &responsesStream{events: sse.NewReader(body, 0)}
}

func (s *responsesStream) Next() (route.StreamEvent, error) {
	if s.done {
		s.events.Release()
		return route.StreamEvent{}, io.EOF
	}
	ev, err := s.events.Next()
	if err == io.EOF {
		return route.StreamEvent{}, fmt.Errorf("the stream ended before response.completed: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return route.StreamEvent{}, err
	}
	out := route.StreamEvent{Data: ev.Raw, More: s.events.Ready()}
	typ := eventType(ev)
	switch string(typ) {
	case "":
		// A keep-alive (comments alone), or data of no known shape: not
		// ours to judge, passed on.
		if len(ev.Data) > 0 {
			s.seq++
		}
		out.Content = s.content
		return out, nil
	case "response.created":
		s.created = createdOf(ev.Data, &s.id, &s.model)
	case "response.queued", "response.in_progress":
	case "error", "response.failed":
		failure := fmt.Errorf("the upstream failed the response (%s): %.300s", typ, ev.Data)
		if !s.content {
			return route.StreamEvent{}, failure
		}
		s.seq++
		out.Content = true
		if typ[0] == 'e' {
			// response.failed follows, or the stream ends.
			s.errorSent = true
			return out, nil
		}
		s.failedSent = true
		out.Usage, _ = responses.Usage(ev.Data)
		return out, failure
	case "response.completed", "response.incomplete":
		usage, err := responses.Usage(ev.Data)
		if err != nil {
			return route.StreamEvent{}, fmt.Errorf("bad %s event: %w", typ, err)
		}
		s.seq++
		s.done = true
		return route.StreamEvent{Data: ev.Raw, Usage: usage, Content: true, More: true}, nil
	default:
		s.content = true
	}
	s.seq++
	out.Content = s.content
	return out, nil
}

// ErrorEvent ends a cut stream as the Responses API ends a failed one: an
// error event, then response.failed, numbered after the upstream's events,
// or what of them the upstream did not send itself.
func (s *responsesStream) ErrorEvent(e *llm.Error) []byte {
	if s.failedSent {
		return nil
	}
	code := e.Code
	if code == "" {
		code = "server_error"
	}
	var dst []byte
	if !s.errorSent {
		dst = wire.AppendJSONEvent(dst, "error", errorEvent{Type: "error", SequenceNumber: s.seq, Code: code, Message: e.Message})
		s.seq++
	}
	failed := failedEvent{Type: "response.failed", SequenceNumber: s.seq}
	failed.Response.ID, failed.Response.Object, failed.Response.CreatedAt = s.id, "response", s.created
	failed.Response.Status, failed.Response.Model, failed.Response.Output = "failed", s.model, []struct{}{}
	failed.Response.Error.Code, failed.Response.Error.Message = code, e.Message
	return wire.AppendJSONEvent(dst, "response.failed", failed)
}

// errorEvent is a Responses stream's error event.
type errorEvent struct {
	Type           string  `json:"type"`
	SequenceNumber int     `json:"sequence_number"`
	Code           string  `json:"code"`
	Message        string  `json:"message"`
	Param          *string `json:"param"`
}

// failedEvent is response.failed with as much of the response as a relay
// knows.
type failedEvent struct {
	Type           string `json:"type"`
	SequenceNumber int    `json:"sequence_number"`
	Response       struct {
		ID        string     `json:"id"`
		Object    string     `json:"object"`
		CreatedAt int64      `json:"created_at"`
		Status    string     `json:"status"`
		Model     string     `json:"model"`
		Output    []struct{} `json:"output"`
		Error     struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"response"`
}

var errFound = errors.New("found")

// eventType is an event's type: its event name, as OpenAI sends it, or
// else the "type" member of its data (event types need no escapes). It
// allocates nothing: the relay reads it on every event.
func eventType(ev sse.Event) []byte {
	if len(ev.Name) > 0 {
		return ev.Name
	}
	var typ []byte
	_ = llm.ScanObject(ev.Data, func(key []byte, v llm.Span) error {
		if string(key) != "type" {
			return nil
		}
		if val := ev.Data[v.Start:v.End]; len(val) >= 2 && val[0] == '"' {
			typ = val[1 : len(val)-1]
		}
		return errFound
	})
	return typ
}

// createdOf reads the response's id and model, and returns its creation
// time, from response.created, for the events the relay may have to write
// itself. The response object echoes the request's instructions and tools,
// so it is scanned, not decoded.
func createdOf(data []byte, id, model *string) (created int64) {
	_ = llm.ScanObject(data, func(key []byte, v llm.Span) error {
		if string(key) != "response" || data[v.Start] != '{' {
			return nil
		}
		obj := data[v.Start:v.End]
		_ = llm.ScanObject(obj, func(key []byte, v llm.Span) error {
			val := obj[v.Start:v.End]
			switch string(key) {
			case "id":
				_ = json.Unmarshal(val, id)
			case "model":
				_ = json.Unmarshal(val, model)
			case "created_at":
				_ = json.Unmarshal(val, &created)
			}
			return nil
		})
		return errFound
	})
	return created
}

var _ route.StreamErrorer = (*responsesStream)(nil)
