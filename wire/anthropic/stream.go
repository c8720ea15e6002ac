package anthropic

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
)

// streamEvent is any event of a Messages stream; Type says which fields
// apply.
type streamEvent struct {
	Type         string          `json:"type"`
	Message      *response       `json:"message,omitempty"`
	Index        *int            `json:"index,omitempty"`
	ContentBlock *block          `json:"content_block,omitempty"`
	Delta        *delta          `json:"delta,omitempty"`
	Usage        *usage          `json:"usage,omitempty"`
	Error        json.RawMessage `json:"error,omitempty"`
}

type delta struct {
	Type         string  `json:"type,omitempty"`
	Text         *string `json:"text,omitempty"`
	PartialJSON  *string `json:"partial_json,omitempty"`
	Thinking     *string `json:"thinking,omitempty"`
	Signature    *string `json:"signature,omitempty"`
	StopReason   *string `json:"stop_reason,omitempty"`
	StopSequence *string `json:"stop_sequence,omitempty"`
}

// StreamDecoder reads an upstream's Messages stream, one SSE event's data at
// a time (the data names its own type, so the event name is not needed).
// The zero value is ready; use one per stream.
type StreamDecoder struct {
	// tools maps a tool_use block's index to its tool-call position.
	tools map[int]int
	calls int
	usage usage
	// Done is set once message_stop arrived.
	Done bool
}

// Decode appends the canonical events of one SSE event's data to dst.
func (d *StreamDecoder) Decode(dst []wire.Event, data []byte) ([]wire.Event, error) {
	if len(data) == 0 {
		return dst, nil
	}
	if ev, ok := d.fastDelta(data); ok {
		return append(dst, ev), nil
	}
	return d.decodeFull(dst, data)
}

// decodeFull decodes any event with encoding/json.
func (d *StreamDecoder) decodeFull(dst []wire.Event, data []byte) ([]wire.Event, error) {
	var ev streamEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return dst, fmt.Errorf("anthropic: decode stream event: %w", err)
	}
	index := 0
	if ev.Index != nil {
		index = *ev.Index
	}
	switch ev.Type {
	case "message_start":
		if ev.Message == nil {
			return dst, fmt.Errorf("anthropic: message_start without a message")
		}
		start := wire.Event{Type: wire.EventStart, ID: ev.Message.ID, Model: ev.Message.Model}
		if u := ev.Message.Usage; u != nil {
			d.usage = *u
			start.Usage = u.canonical()
		}
		dst = append(dst, start)
	case "content_block_start":
		b := ev.ContentBlock
		if b == nil {
			return dst, fmt.Errorf("anthropic: content_block_start without a block")
		}
		switch b.Type {
		case "text":
			if t := deref(b.Text); t != "" {
				dst = append(dst, wire.Event{Type: wire.EventTextDelta, Text: t})
			}
		case "thinking":
			if t := deref(b.Thinking); t != "" {
				dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Text: t})
			}
		case "redacted_thinking":
			dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Signature: b.Data, Redacted: true})
		case "tool_use":
			if d.tools == nil {
				d.tools = make(map[int]int)
			}
			d.tools[index] = d.calls
			dst = append(dst, wire.Event{Type: wire.EventToolCallStart, Index: d.calls, CallID: b.ID, Name: b.Name})
			d.calls++
		}
	case "content_block_delta":
		if ev.Delta == nil {
			return dst, nil
		}
		switch dl := ev.Delta; dl.Type {
		case "text_delta":
			dst = append(dst, wire.Event{Type: wire.EventTextDelta, Text: deref(dl.Text)})
		case "thinking_delta":
			dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Text: deref(dl.Thinking)})
		case "signature_delta":
			dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Signature: deref(dl.Signature)})
		case "input_json_delta":
			if call, ok := d.tools[index]; ok && deref(dl.PartialJSON) != "" {
				dst = append(dst, wire.Event{Type: wire.EventToolCallDelta, Index: call, Text: *dl.PartialJSON})
			}
		}
	case "message_delta":
		if ev.Delta != nil && ev.Delta.StopReason != nil {
			dst = append(dst, wire.Event{Type: wire.EventFinish, FinishReason: finishReason(*ev.Delta.StopReason), StopSequence: deref(ev.Delta.StopSequence)})
		}
		if u := ev.Usage; u != nil {
			// output_tokens is the running total; the input figures come
			// again only from newer API versions.
			d.usage.OutputTokens = u.OutputTokens
			if u.InputTokens > 0 {
				d.usage.InputTokens = u.InputTokens
			}
			if u.CacheReadInputTokens > 0 {
				d.usage.CacheReadInputTokens = u.CacheReadInputTokens
			}
			if u.CacheCreationInputTokens > 0 {
				d.usage.CacheCreationInputTokens = u.CacheCreationInputTokens
			}
			dst = append(dst, wire.Event{Type: wire.EventUsage, Usage: d.usage.canonical()})
		}
	case "message_stop":
		d.Done = true
	case "error":
		dst = append(dst, wire.Event{Type: wire.EventError, Err: DecodeError(http.StatusOK, data)})
	}
	// ping, content_block_stop and unknown future events carry nothing.
	return dst, nil
}

// fastDelta reads a text, thinking or tool-argument delta, most of a
// stream's events, by scanning instead of decoding. It reports false for
// anything else, which Decode then decodes in full.
func (d *StreamDecoder) fastDelta(data []byte) (wire.Event, bool) {
	var typ, index, dl []byte
	if llm.ScanObject(data, func(key []byte, v llm.Span) error {
		switch string(key) {
		case "type":
			typ = data[v.Start:v.End]
		case "index":
			index = data[v.Start:v.End]
		case "delta":
			dl = data[v.Start:v.End]
		}
		return nil
	}) != nil || string(typ) != `"content_block_delta"` || dl == nil {
		return wire.Event{}, false
	}
	n, err := strconv.Atoi(string(index))
	if err != nil {
		return wire.Event{}, false
	}
	var kind, text []byte
	if llm.ScanObject(dl, func(key []byte, v llm.Span) error {
		switch string(key) {
		case "type":
			kind = dl[v.Start:v.End]
		case "text", "thinking", "partial_json":
			text = dl[v.Start:v.End]
		}
		return nil
	}) != nil || len(text) < 2 || text[0] != '"' || !utf8.Valid(text) {
		// encoding/json would replace invalid UTF-8: leave it to it.
		return wire.Event{}, false
	}
	t, err := llm.Unquote(text)
	if err != nil {
		return wire.Event{}, false
	}
	switch string(kind) {
	case `"text_delta"`:
		return wire.Event{Type: wire.EventTextDelta, Text: t}, true
	case `"thinking_delta"`:
		return wire.Event{Type: wire.EventReasoningDelta, Text: t}, true
	case `"input_json_delta"`:
		if call, ok := d.tools[n]; ok && t != "" {
			return wire.Event{Type: wire.EventToolCallDelta, Index: call, Text: t}, true
		}
	}
	return wire.Event{}, false
}

// StreamEncoder writes a Messages stream for a client: the full event
// sequence, with block indices, from canonical events. Use one per stream.
type StreamEncoder struct {
	started bool
	next    int // the next block index
	open    int // the open block's index, -1 for none
	kind    string
	tools   map[int]int // tool-call position to block index
	stop    string
	stopSeq string
	usage   *llm.Usage
}

// NewStreamEncoder returns an encoder for one stream.
func NewStreamEncoder() *StreamEncoder { return &StreamEncoder{open: -1} }

// Encode appends the SSE events for ev to dst.
func (e *StreamEncoder) Encode(dst []byte, ev *wire.Event) []byte {
	switch ev.Type {
	case wire.EventStart:
		return e.start(dst, ev)
	case wire.EventTextDelta:
		dst = e.ensure(dst, "text", func() *block { return &block{Type: "text", Text: new("")} })
		return e.delta(dst, e.open, &delta{Type: "text_delta", Text: &ev.Text})
	case wire.EventReasoningDelta:
		if ev.Redacted {
			dst = e.close(e.start(dst, nil))
			i := e.next
			e.next++
			dst = wire.AppendJSONEvent(dst, "content_block_start", streamEvent{Type: "content_block_start", Index: &i, ContentBlock: &block{Type: "redacted_thinking", Data: ev.Signature}})
			return wire.AppendJSONEvent(dst, "content_block_stop", streamEvent{Type: "content_block_stop", Index: &i})
		}
		dst = e.ensure(dst, "thinking", func() *block { return &block{Type: "thinking", Thinking: new(""), Signature: new("")} })
		if ev.Text != "" {
			dst = e.delta(dst, e.open, &delta{Type: "thinking_delta", Thinking: &ev.Text})
		}
		if ev.Signature != "" {
			dst = e.delta(dst, e.open, &delta{Type: "signature_delta", Signature: &ev.Signature})
		}
		return dst
	case wire.EventToolCallStart:
		return e.toolStart(dst, ev.Index, ev.CallID, ev.Name)
	case wire.EventToolCallDelta:
		i, ok := e.tools[ev.Index]
		if !ok {
			// Arguments for a call that never started: start it.
			dst = e.toolStart(dst, ev.Index, "", "")
			i = e.open
		}
		return e.delta(dst, i, &delta{Type: "input_json_delta", PartialJSON: &ev.Text})
	case wire.EventFinish:
		e.stop, e.stopSeq = stopReason(ev.FinishReason, ev.StopSequence), ev.StopSequence
		return e.close(e.start(dst, nil))
	case wire.EventUsage:
		e.usage = ev.Usage
	case wire.EventError:
		var body errorBody
		body.Type = "error"
		body.Error.Type, body.Error.Message = errorType(ev.Err), ev.Err.Message
		return wire.AppendJSONEvent(dst, "error", body)
	}
	return dst
}

// start sends message_start (and a ping, as Anthropic does) once. The input
// tokens go in it when known, since clients read them there.
func (e *StreamEncoder) start(dst []byte, ev *wire.Event) []byte {
	if e.started {
		return dst
	}
	e.started = true
	msg := &response{Type: "message", Role: "assistant", Content: []block{}, Usage: &usage{}}
	if ev != nil {
		msg.ID, msg.Model = ev.ID, ev.Model
		if ev.Usage != nil {
			e.usage = ev.Usage
			msg.Usage = usageOf(ev.Usage)
		}
	}
	msg.ID = msgID(msg.ID)
	dst = wire.AppendJSONEvent(dst, "message_start", streamEvent{Type: "message_start", Message: msg})
	return append(dst, "event: ping\ndata: {\"type\":\"ping\"}\n\n"...)
}

// ensure opens a block of the kind unless one is open already.
func (e *StreamEncoder) ensure(dst []byte, kind string, b func() *block) []byte {
	dst = e.start(dst, nil)
	if e.open >= 0 && e.kind == kind {
		return dst
	}
	dst = e.close(dst)
	return e.openBlock(dst, kind, b())
}

func (e *StreamEncoder) openBlock(dst []byte, kind string, b *block) []byte {
	e.open, e.kind = e.next, kind
	e.next++
	i := e.open
	return wire.AppendJSONEvent(dst, "content_block_start", streamEvent{Type: "content_block_start", Index: &i, ContentBlock: b})
}

func (e *StreamEncoder) toolStart(dst []byte, call int, id, name string) []byte {
	dst = e.close(e.start(dst, nil))
	if id == "" {
		id = "toolu_" + rand.Text()
	}
	if e.tools == nil {
		e.tools = make(map[int]int)
	}
	e.tools[call] = e.next
	return e.openBlock(dst, "tool_use", &block{Type: "tool_use", ID: ToolID(id), Name: name, Input: json.RawMessage("{}")})
}

func (e *StreamEncoder) delta(dst []byte, index int, d *delta) []byte {
	return wire.AppendJSONEvent(dst, "content_block_delta", streamEvent{Type: "content_block_delta", Index: &index, Delta: d})
}

func (e *StreamEncoder) close(dst []byte) []byte {
	if e.open < 0 {
		return dst
	}
	i := e.open
	e.open = -1
	return wire.AppendJSONEvent(dst, "content_block_stop", streamEvent{Type: "content_block_stop", Index: &i})
}

// End appends the stream's proper end: message_delta with the stop reason
// and the usage, and message_stop.
func (e *StreamEncoder) End(dst []byte) []byte {
	dst = e.close(e.start(dst, nil))
	stop := e.stop
	if stop == "" {
		stop = "end_turn"
	}
	d := &delta{StopReason: &stop}
	if e.stopSeq != "" {
		d.StopSequence = &e.stopSeq
	}
	dst = wire.AppendJSONEvent(dst, "message_delta", streamEvent{Type: "message_delta", Delta: d, Usage: usageOf(e.usage)})
	return append(dst, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
}
