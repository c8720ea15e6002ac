package anthropic

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

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
	// The few other events are scanned again: cheaper than one decode.
	if out, ok := d.fastFrame(dst, data); ok {
		return out, nil
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
		if ev.Usage != nil {
			dst = append(dst, d.addUsage(ev.Usage))
		}
	case "message_stop":
		d.Done = true
	case "error":
		dst = append(dst, wire.Event{Type: wire.EventError, Err: DecodeError(http.StatusOK, data)})
	}
	// ping, content_block_stop and unknown future events carry nothing.
	return dst, nil
}

// addUsage adds a message_delta's usage to the stream's and returns the
// usage event. output_tokens is the running total; the input figures come
// again only from newer API versions.
func (d *StreamDecoder) addUsage(u *usage) wire.Event {
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
	return wire.Event{Type: wire.EventUsage, Usage: d.usage.canonical()}
}

// fastDelta reads a text, thinking or tool-argument delta, most of a
// stream's events, by scanning instead of decoding. It reports false for
// anything else, which Decode then decodes in full.
func (d *StreamDecoder) fastDelta(data []byte) (wire.Event, bool) {
	top, ok := scanEvent(data)
	if !ok || string(top.typ) != `"content_block_delta"` || top.delta == nil {
		return wire.Event{}, false
	}
	n, ok := wire.ScanInt(top.index)
	if !ok {
		return wire.Event{}, false
	}
	var kind, text, thinking, partial, stop, stopSeq []byte
	if !wire.ScanMembers(top.delta, deltaFields, &kind, &text, &thinking, &partial, &stop, &stopSeq) {
		return wire.Event{}, false
	}
	switch string(kind) {
	case `"text_delta"`:
		t, ok := wire.ScanString(text)
		return wire.Event{Type: wire.EventTextDelta, Text: t}, ok
	case `"thinking_delta"`:
		t, ok := wire.ScanString(thinking)
		return wire.Event{Type: wire.EventReasoningDelta, Text: t}, ok
	case `"input_json_delta"`:
		t, ok := wire.ScanString(partial)
		if call, known := d.tools[int(n)]; ok && known && t != "" {
			return wire.Event{Type: wire.EventToolCallDelta, Index: call, Text: t}, true
		}
	}
	return wire.Event{}, false
}

// fastFrame reads, by scanning, the events that frame the deltas: pings,
// the start and stop of a text or thinking block, message_start,
// message_delta and message_stop. Each comes once or a few times a stream,
// yet a short answer has not many more deltas: decoding them cost about as
// much as all its deltas. It reports false for anything it cannot read as
// decodeFull does, which Decode then decodes in full.
func (d *StreamDecoder) fastFrame(dst []wire.Event, data []byte) ([]wire.Event, bool) {
	top, ok := scanEvent(data)
	if !ok {
		return dst, false
	}
	if top.index != nil {
		if _, ok := wire.ScanInt(top.index); !ok {
			return dst, false
		}
	}
	switch string(top.typ) {
	case `"ping"`, `"content_block_stop"`:
		return dst, true
	case `"message_stop"`:
		d.Done = true
		return dst, true
	case `"content_block_start"`:
		// A text or thinking block starts empty, and its deltas follow.
		var kind, text, thinking []byte
		if top.block == nil || !wire.ScanMembers(top.block, blockFields, &kind, &text, &thinking) {
			return dst, false
		}
		switch string(kind) {
		case `"text"`:
			return dst, text == nil || string(text) == `""`
		case `"thinking"`:
			return dst, thinking == nil || string(thinking) == `""`
		}
	case `"message_start"`:
		var id, model, u []byte
		if top.message == nil || !wire.ScanMembers(top.message, messageFields, &id, &model, &u) {
			return dst, false
		}
		start := wire.Event{Type: wire.EventStart}
		if start.ID, ok = wire.ScanString(id); !ok {
			return dst, false
		}
		if start.Model, ok = wire.ScanString(model); !ok {
			return dst, false
		}
		if u != nil && string(u) != "null" {
			if d.usage, ok = scanUsage(u); !ok {
				return dst, false
			}
			start.Usage = d.usage.canonical()
		}
		return append(dst, start), true
	case `"message_delta"`:
		var kind, text, thinking, partial, stop, stopSeq []byte
		if !wire.IsNull(top.delta) && !wire.ScanMembers(top.delta, deltaFields, &kind, &text, &thinking, &partial, &stop, &stopSeq) {
			return dst, false
		}
		var u usage
		if top.usage != nil && string(top.usage) != "null" {
			if u, ok = scanUsage(top.usage); !ok {
				return dst, false
			}
		}
		if stop != nil && string(stop) != "null" {
			reason, ok := wire.ScanString(stop)
			if !ok {
				return dst, false
			}
			var seq string
			if stopSeq != nil && string(stopSeq) != "null" {
				if seq, ok = wire.ScanString(stopSeq); !ok {
					return dst, false
				}
			}
			dst = append(dst, wire.Event{Type: wire.EventFinish, FinishReason: finishReason(reason), StopSequence: seq})
		}
		if top.usage != nil && string(top.usage) != "null" {
			dst = append(dst, d.addUsage(&u))
		}
		return dst, true
	}
	return dst, false
}

// The members of the objects the scans read, as the structs decodeFull
// decodes into name them, for field.
var (
	eventFields   = []string{"type", "index", "delta", "content_block", "message", "usage"}
	deltaFields   = []string{"type", "text", "thinking", "partial_json", "stop_reason", "stop_sequence"}
	blockFields   = []string{"type", "text", "thinking"}
	messageFields = []string{"id", "model", "usage"}
	usageFields   = []string{"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
)

// scanned are the members of a stream event that the fast paths read,
// each its value's bytes, nil when absent.
type scanned struct {
	typ, index, delta, block, message, usage []byte
}

// scanEvent scans a stream event's members; false for one that is not a
// well-formed object.
func scanEvent(data []byte) (scanned, bool) {
	var s scanned
	ok := wire.ScanMembers(data, eventFields, &s.typ, &s.index, &s.delta, &s.block, &s.message, &s.usage)
	return s, ok
}

// scanUsage reads a usage object's token counts.
func scanUsage(v []byte) (usage, bool) {
	var u usage
	ok := true
	err := llm.ScanObject(v, func(key []byte, s llm.Span) error {
		var n *int64
		switch wire.Field(key, usageFields) {
		case "input_tokens":
			n = &u.InputTokens
		case "output_tokens":
			n = &u.OutputTokens
		case "cache_creation_input_tokens":
			n = &u.CacheCreationInputTokens
		case "cache_read_input_tokens":
			n = &u.CacheReadInputTokens
		default:
			return nil
		}
		if string(v[s.Start:s.End]) == "null" {
			// encoding/json leaves a null number as it was.
			return nil
		}
		var good bool
		*n, good = wire.ScanInt(v[s.Start:s.End])
		ok = ok && good
		return nil
	})
	return u, err == nil && ok
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
		return e.delta(dst, e.open, "text_delta", "text", ev.Text)
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
			dst = e.delta(dst, e.open, "thinking_delta", "thinking", ev.Text)
		}
		if ev.Signature != "" {
			dst = e.delta(dst, e.open, "signature_delta", "signature", ev.Signature)
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
		return e.delta(dst, i, "input_json_delta", "partial_json", ev.Text)
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

// delta appends a content_block_delta, most of a stream's events, by
// appending what encoding/json writes for its streamEvent: a delta of the
// kind whose one member, key, is text. kind and key need no escapes.
func (e *StreamEncoder) delta(dst []byte, index int, kind, key, text string) []byte {
	dst = strconv.AppendInt(append(dst, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":"...), int64(index), 10)
	dst = append(append(append(append(dst, `,"delta":{"type":"`...), kind...), `","`...), key...)
	return append(wire.AppendString(append(dst, `":`...), text), "}}\n\n"...)
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
