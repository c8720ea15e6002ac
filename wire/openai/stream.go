package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

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
	if d.started {
		if out, ok := fastDelta(dst, data); ok {
			return out, nil
		}
	}
	return d.decodeFull(dst, data)
}

// decodeFull decodes any chunk with encoding/json.
func (d *StreamDecoder) decodeFull(dst []wire.Event, data []byte) ([]wire.Event, error) {
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

// The members fastDelta reads, in the order of its ScanMembers values.
var (
	chunkFields  = []string{"choices", "usage", "error"}
	choiceFields = []string{"index", "delta", "finish_reason"}
	deltaFields  = []string{"content", "reasoning_content", "reasoning", "tool_calls"}
)

// fastDelta reads, by scanning, a chunk that carries only text or
// reasoning of the first choice: after the first, nearly every chunk of a
// stream. Decoding one with encoding/json cost about 3.8 µs. It reports
// false for anything it cannot read as decodeFull does (tool calls, a
// finish reason, usage, an error, other choices), which Decode then
// decodes in full. The members decodeFull reads only from the first chunk
// (id, model, created) are not read.
func fastDelta(dst []wire.Event, data []byte) ([]wire.Event, bool) {
	var choices, usage, errv []byte
	if !wire.ScanMembers(data, chunkFields, &choices, &usage, &errv) || len(choices) == 0 || choices[0] != '[' || !wire.IsNull(usage) || !wire.IsNull(errv) {
		return dst, false
	}
	var choice []byte
	n := 0
	if llm.ScanArray(choices, func(v llm.Span) error {
		n++
		choice = choices[v.Start:v.End]
		return nil
	}) != nil || n != 1 || choice[0] != '{' {
		return dst, false
	}
	var index, delta, finish []byte
	if !wire.ScanMembers(choice, choiceFields, &index, &delta, &finish) || len(delta) == 0 || delta[0] != '{' || !wire.IsNull(finish) && string(finish) != `""` {
		return dst, false
	}
	if index != nil {
		if i, ok := wire.ScanInt(index); !ok || i != 0 {
			return dst, false
		}
	}
	var content, reasoningContent, reasoning, tools []byte
	if !wire.ScanMembers(delta, deltaFields, &content, &reasoningContent, &reasoning, &tools) || !wire.IsNull(tools) && string(tools) != "[]" {
		return dst, false
	}
	// As replyMessage.reasoning: reasoning_content if it is not null.
	if !wire.IsNull(reasoningContent) {
		reasoning = reasoningContent
	}
	r, ok := wire.ScanOptionalString(reasoning)
	if !ok {
		return dst, false
	}
	c, ok := wire.ScanOptionalString(content)
	if !ok {
		return dst, false
	}
	if r != "" {
		dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Text: r})
	}
	if c != "" {
		dst = append(dst, wire.Event{Type: wire.EventTextDelta, Text: c})
	}
	return dst, true
}

// StreamEncoder writes a chat completion stream for a client. Use one per
// stream: it numbers tool calls and holds the usage until the end.
//
// A stream's chunks differ only in their delta and finish reason, and they
// are most of a translated stream's cost, so they are written by appending
// (the JSON encoding/json would write, byte for byte) after a prefix built
// once per stream.
type StreamEncoder struct {
	// IncludeUsage sends the usage chunk at the end, for a client that
	// asked for it with stream_options.include_usage.
	IncludeUsage bool

	id      string
	model   string
	created int64
	started bool
	usage   *llm.Usage
	// prefix is every chunk's start, up to its delta, for id, model and
	// created as they are; empty until the first chunk needs it.
	prefix []byte
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
		e.prefix = e.prefix[:0]
		return e.start(dst)
	case wire.EventTextDelta:
		dst = e.open(e.start(dst))
		dst = wire.AppendString(append(dst, `{"content":`...), ev.Text)
		return endChunk(append(dst, '}'), "")
	case wire.EventReasoningDelta:
		if ev.Text == "" {
			// A signature alone has no place in this format.
			return dst
		}
		dst = e.open(e.start(dst))
		dst = wire.AppendString(append(dst, `{"reasoning_content":`...), ev.Text)
		return endChunk(append(dst, '}'), "")
	case wire.EventToolCallStart:
		dst = e.open(e.start(dst))
		dst = strconv.AppendInt(append(dst, `{"tool_calls":[{"index":`...), int64(ev.Index), 10)
		if ev.CallID != "" {
			dst = wire.AppendString(append(dst, `,"id":`...), ev.CallID)
		}
		dst = append(dst, `,"type":"function","function":{`...)
		if ev.Name != "" {
			dst = append(wire.AppendString(append(dst, `"name":`...), ev.Name), ',')
		}
		return endChunk(append(dst, `"arguments":""}}]}`...), "")
	case wire.EventToolCallDelta:
		dst = e.open(e.start(dst))
		dst = strconv.AppendInt(append(dst, `{"tool_calls":[{"index":`...), int64(ev.Index), 10)
		dst = wire.AppendString(append(dst, `,"function":{"arguments":`...), ev.Text)
		return endChunk(append(dst, `}}]}`...), "")
	case wire.EventFinish:
		reason := string(ev.FinishReason)
		if reason == "" {
			reason = string(wire.FinishStop)
		}
		dst = e.open(e.start(dst))
		return endChunk(append(dst, `{}`...), reason)
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
	return endChunk(append(e.open(dst), `{"role":"assistant","content":""}`...), "")
}

// open appends a chunk's SSE data up to its delta object.
func (e *StreamEncoder) open(dst []byte) []byte {
	if len(e.prefix) == 0 {
		p := e.prefix
		if p == nil {
			// Room for the constant parts and a number, so that it is
			// built in one allocation.
			p = make([]byte, 0, 128+len(e.id)+len(e.model))
		}
		p = wire.AppendString(append(p, `data: {"id":`...), e.id)
		p = strconv.AppendInt(append(p, `,"object":"chat.completion.chunk","created":`...), e.created, 10)
		p = wire.AppendString(append(p, `,"model":`...), e.model)
		e.prefix = append(p, `,"choices":[{"index":0,"delta":`...)
	}
	return append(dst, e.prefix...)
}

// endChunk appends what follows a chunk's delta: its finish reason (null
// when empty) and the end of its event.
func endChunk(dst []byte, finish string) []byte {
	if finish == "" {
		return append(dst, ",\"finish_reason\":null,\"logprobs\":null}]}\n\n"...)
	}
	dst = wire.AppendString(append(dst, `,"finish_reason":`...), finish)
	return append(dst, ",\"logprobs\":null}]}\n\n"...)
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
