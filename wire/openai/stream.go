package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
)

// StreamDecoder reads an upstream's chat completion stream, one SSE event's
// data at a time. The zero value is ready to use; use one per stream.
type StreamDecoder struct {
	started bool
	// Done is set once the stream's "[DONE]" arrived.
	Done bool
}

// Decode appends the canonical events of one SSE event's data to dst.
func (d *StreamDecoder) Decode(dst []wire.Event, data []byte) ([]wire.Event, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return dst, nil
	}
	if string(data) == "[DONE]" {
		d.Done = true
		return dst, nil
	}
	var c completion
	if err := json.Unmarshal(data, &c); err != nil {
		return dst, fmt.Errorf("openai: decode stream chunk: %w", err)
	}
	if c.Error != nil {
		return append(dst, wire.Event{Type: wire.EventError, Err: c.Error.canonical(http.StatusOK)}), nil
	}
	if !d.started {
		d.started = true
		dst = append(dst, wire.Event{Type: wire.EventStart, ID: c.ID, Model: c.Model, Created: c.Created})
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			// Only the first choice is carried: requests for several (n)
			// are not translated.
			continue
		}
		if delta := ch.Delta; delta != nil {
			if r := delta.reasoning(); r != "" {
				dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Text: r})
			}
			if delta.Content != nil && *delta.Content != "" {
				dst = append(dst, wire.Event{Type: wire.EventTextDelta, Text: *delta.Content})
			}
			for i, tc := range delta.ToolCalls {
				index := i
				if tc.Index != nil {
					index = *tc.Index
				}
				if tc.ID != "" || tc.Function.Name != "" {
					dst = append(dst, wire.Event{Type: wire.EventToolCallStart, Index: index, CallID: tc.ID, Name: tc.Function.Name})
				}
				if tc.Function.Arguments != "" {
					dst = append(dst, wire.Event{Type: wire.EventToolCallDelta, Index: index, Text: tc.Function.Arguments})
				}
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			dst = append(dst, wire.Event{Type: wire.EventFinish, FinishReason: wire.FinishReason(*ch.FinishReason)})
		}
	}
	if c.Usage != nil {
		dst = append(dst, wire.Event{Type: wire.EventUsage, Usage: c.Usage.canonical()})
	}
	return dst, nil
}

// StreamEncoder writes a chat completion stream for a client. Use one per
// stream: it numbers tool calls and holds the usage until the end.
type StreamEncoder struct {
	// IncludeUsage sends the usage chunk at the end, for a client that
	// asked for it with stream_options.include_usage.
	IncludeUsage bool

	id      string
	model   string
	created int64
	started bool
	usage   *llm.Usage
}

// NewStreamEncoder returns an encoder for a client that did (or did not)
// ask for the usage chunk.
func NewStreamEncoder(includeUsage bool) *StreamEncoder {
	return &StreamEncoder{IncludeUsage: includeUsage}
}

// Encode appends the SSE events for ev to dst.
func (e *StreamEncoder) Encode(dst []byte, ev *wire.Event) []byte {
	switch ev.Type {
	case wire.EventStart:
		e.id, e.model, e.created = orID(ev.ID), ev.Model, orNow(ev.Created)
		return e.start(dst)
	case wire.EventTextDelta:
		dst = e.start(dst)
		return e.chunk(dst, &replyMessage{Content: &ev.Text}, nil)
	case wire.EventReasoningDelta:
		if ev.Text == "" {
			// A signature alone has no place in this format.
			return dst
		}
		dst = e.start(dst)
		return e.chunk(dst, &replyMessage{ReasoningContent: &ev.Text}, nil)
	case wire.EventToolCallStart:
		dst = e.start(dst)
		i := ev.Index
		return e.chunk(dst, &replyMessage{ToolCalls: []toolCall{{Index: &i, ID: ev.CallID, Type: "function", Function: functionCall{Name: ev.Name}}}}, nil)
	case wire.EventToolCallDelta:
		dst = e.start(dst)
		i := ev.Index
		return e.chunk(dst, &replyMessage{ToolCalls: []toolCall{{Index: &i, Function: functionCall{Arguments: ev.Text}}}}, nil)
	case wire.EventFinish:
		dst = e.start(dst)
		reason := string(ev.FinishReason)
		if reason == "" {
			reason = string(wire.FinishStop)
		}
		return e.chunk(dst, &replyMessage{}, &reason)
	case wire.EventUsage:
		e.usage = ev.Usage
		return dst
	case wire.EventError:
		// OpenAI-compatible servers end a broken stream with an error
		// object and no [DONE]; the SDKs raise it.
		return wire.AppendJSONEvent(dst, "", struct {
			Error *llm.Error `json:"error"`
		}{ToLLM(ev.Err)})
	}
	return dst
}

// start sends the first chunk, the assistant role, once.
func (e *StreamEncoder) start(dst []byte) []byte {
	if e.started {
		return dst
	}
	e.started = true
	if e.id == "" {
		e.id, e.created = orID(""), orNow(0)
	}
	empty := ""
	return e.chunk(dst, &replyMessage{Role: "assistant", Content: &empty}, nil)
}

func (e *StreamEncoder) chunk(dst []byte, delta *replyMessage, finish *string) []byte {
	return wire.AppendJSONEvent(dst, "", completion{
		ID: e.id, Object: "chat.completion.chunk", Created: e.created, Model: e.model,
		Choices: []choice{{Delta: delta, FinishReason: finish}},
	})
}

// End appends the stream's proper end: the usage chunk, when the client
// asked for it and the upstream gave one, and [DONE].
func (e *StreamEncoder) End(dst []byte) []byte {
	dst = e.start(dst)
	if e.IncludeUsage && e.usage != nil {
		dst = wire.AppendJSONEvent(dst, "", completion{
			ID: e.id, Object: "chat.completion.chunk", Created: e.created, Model: e.model,
			Choices: []choice{}, Usage: usageOf(e.usage),
		})
	}
	return append(dst, "data: [DONE]\n\n"...)
}
