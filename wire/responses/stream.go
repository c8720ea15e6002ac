package responses

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
)

// streamEvent is any event of a Responses stream; Type says which fields
// apply. None has a top-level "error" member: the SDKs take an event with
// one for a transport error, not an event.
type streamEvent struct {
	Type           string             `json:"type"`
	SequenceNumber int                `json:"sequence_number"`
	Response       *response          `json:"response,omitempty"`
	OutputIndex    *int               `json:"output_index,omitempty"`
	ItemID         string             `json:"item_id,omitempty"`
	ContentIndex   *int               `json:"content_index,omitempty"`
	SummaryIndex   *int               `json:"summary_index,omitempty"`
	Item           *item              `json:"item,omitempty"`
	Part           *contentPart       `json:"part,omitempty"`
	Delta          *string            `json:"delta,omitempty"`
	Text           *string            `json:"text,omitempty"`
	Arguments      *string            `json:"arguments,omitempty"`
	Logprobs       *[]json.RawMessage `json:"logprobs,omitempty"`
	// Code, Message and Param are an error event's.
	Code    *string         `json:"code,omitempty"`
	Message *string         `json:"message,omitempty"`
	Param   json.RawMessage `json:"param,omitempty"`
}

// The item kinds a stream encoder opens.
const (
	kindMessage   = "message"
	kindReasoning = "reasoning"
	kindCall      = "function_call"
)

// outItem is an output item of a stream being written: what its .done
// events and the final response need.
type outItem struct {
	kind string
	id   string
	// text is a message's text, a reasoning item's summary or a call's
	// arguments so far.
	text      strings.Builder
	callID    string
	name      string
	signature string
	// part says a message's output_text part or a reasoning item's
	// summary part was opened.
	part bool
	done bool
}

// StreamEncoder writes a Responses stream for a client: response.created,
// the items' added, delta and done events with their ids and output
// indices, and response.completed (or response.incomplete) with the whole
// response and its usage. Every event has its sequence_number. Use one per
// stream: it holds the output so far, which the .done events and the final
// response repeat.
type StreamEncoder struct {
	seq     int
	id      string
	model   string
	created int64
	started bool
	ids     *itemIDs
	items   []*outItem
	// open are the items whose done events are still to come: one message
	// or reasoning item, or the function calls streaming together.
	open   []*outItem
	calls  map[int]*outItem // canonical tool-call index to its item
	finish wire.FinishReason
	usage  *llm.Usage
}

// NewStreamEncoder returns an encoder for one stream.
func NewStreamEncoder() *StreamEncoder { return &StreamEncoder{} }

// Encode appends the SSE events for ev to dst.
func (e *StreamEncoder) Encode(dst []byte, ev *wire.Event) []byte {
	switch ev.Type {
	case wire.EventStart:
		return e.start(dst, ev)
	case wire.EventTextDelta:
		if ev.Text == "" {
			return dst
		}
		dst = e.start(dst, nil)
		var it *outItem
		dst, it = e.ensure(dst, kindMessage)
		if !it.part {
			it.part = true
			dst = e.event(dst, &streamEvent{Type: "response.content_part.added", ItemID: it.id, OutputIndex: e.index(it), ContentIndex: zero(), Part: new(outputText(""))})
		}
		it.text.WriteString(ev.Text)
		return e.delta(dst, "response.output_text.delta", it, `,"content_index":0`, ev.Text, `,"logprobs":[]`)
	case wire.EventReasoningDelta:
		dst = e.start(dst, nil)
		if ev.Redacted {
			// Encrypted reasoning is an item of its own, whole at once.
			dst = e.closeAll(dst)
			var it *outItem
			dst, it = e.add(dst, kindReasoning, "", "")
			it.signature = ev.Signature
			return e.closeAll(dst)
		}
		var it *outItem
		dst, it = e.ensure(dst, kindReasoning)
		it.signature += ev.Signature
		if ev.Text == "" {
			return dst
		}
		if !it.part {
			it.part = true
			dst = e.event(dst, &streamEvent{Type: "response.reasoning_summary_part.added", ItemID: it.id, OutputIndex: e.index(it), SummaryIndex: zero(), Part: summaryText("")})
		}
		it.text.WriteString(ev.Text)
		return e.delta(dst, "response.reasoning_summary_text.delta", it, `,"summary_index":0`, ev.Text, "")
	case wire.EventToolCallStart:
		dst = e.start(dst, nil)
		dst, _ = e.toolStart(dst, ev.Index, ev.CallID, ev.Name)
		return dst
	case wire.EventToolCallDelta:
		dst = e.start(dst, nil)
		it, ok := e.calls[ev.Index]
		if !ok || it.done {
			// Arguments for a call that never started: start it.
			dst, it = e.toolStart(dst, ev.Index, "", "")
		}
		if ev.Text == "" {
			return dst
		}
		it.text.WriteString(ev.Text)
		return e.delta(dst, "response.function_call_arguments.delta", it, "", ev.Text, "")
	case wire.EventFinish:
		e.finish = ev.FinishReason
		return e.closeAll(e.start(dst, nil))
	case wire.EventUsage:
		e.usage = ev.Usage
	case wire.EventError:
		dst = e.start(dst, nil)
		// The error event for the SDKs, and response.failed, which the
		// Codex CLI reads (its code says whether a retry may help).
		code, msg := codeOf(ev.Err), ev.Err.Message
		dst = e.event(dst, &streamEvent{Type: "error", Code: &code, Message: &msg, Param: json.RawMessage("null")})
		resp := e.response(statusFailed, nil)
		resp.Error = &responseError{Code: code, Message: msg}
		return e.event(dst, &streamEvent{Type: "response.failed", Response: resp})
	}
	return dst
}

// End appends the stream's proper end: the open items' done events and
// response.completed, or response.incomplete for a response cut by its
// length or a content filter.
func (e *StreamEncoder) End(dst []byte) []byte {
	dst = e.closeAll(e.start(dst, nil))
	status, details := statusOf(e.finish)
	typ := "response.completed"
	if status == statusIncomplete {
		typ = "response.incomplete"
	}
	return e.event(dst, &streamEvent{Type: typ, Response: e.response(status, details)})
}

// start sends response.created and response.in_progress once.
func (e *StreamEncoder) start(dst []byte, ev *wire.Event) []byte {
	if e.started {
		return dst
	}
	e.started = true
	var id string
	if ev != nil {
		id, e.model, e.created = ev.ID, ev.Model, ev.Created
	}
	e.id, e.created = respID(id), orNow(e.created)
	e.ids = newItemIDs(e.id)
	dst = e.event(dst, &streamEvent{Type: "response.created", Response: e.response(statusInProgress, nil)})
	return e.event(dst, &streamEvent{Type: "response.in_progress", Response: e.response(statusInProgress, nil)})
}

// response is the response object as it stands: every item so far, whole.
func (e *StreamEncoder) response(status string, details *incomplete) *response {
	r := newResponse(e.id, e.model, e.created)
	r.Status, r.IncompleteDetails = status, details
	for _, it := range e.items {
		r.Output = append(r.Output, it.item())
	}
	if status != statusInProgress {
		r.Usage = usageOf(e.usage)
	}
	return r
}

func (e *StreamEncoder) event(dst []byte, ev *streamEvent) []byte {
	ev.SequenceNumber = e.seq
	e.seq++
	return wire.AppendJSONEvent(dst, ev.Type, ev)
}

// delta appends a delta event of an item, most of a stream's events, by
// appending what encoding/json writes for its streamEvent: typ, the
// sequence number, the item's output_index and id, partIndex (its
// content_index or summary_index member, if any), the delta text and
// after (its logprobs member, if any). typ needs no escapes.
func (e *StreamEncoder) delta(dst []byte, typ string, it *outItem, partIndex, text, after string) []byte {
	dst = append(append(append(dst, "event: "...), typ...), "\ndata: {\"type\":\""...)
	dst = strconv.AppendInt(append(append(dst, typ...), `","sequence_number":`...), int64(e.seq), 10)
	e.seq++
	dst = strconv.AppendInt(append(dst, `,"output_index":`...), int64(e.position(it)), 10)
	if it.id != "" {
		dst = wire.AppendString(append(dst, `,"item_id":`...), it.id)
	}
	dst = wire.AppendString(append(append(dst, partIndex...), `,"delta":`...), text)
	return append(append(dst, after...), "}\n\n"...)
}

// index is an item's output_index.
func (e *StreamEncoder) index(it *outItem) *int {
	i := e.position(it)
	return &i
}

// position is an item's place among the stream's items.
func (e *StreamEncoder) position(it *outItem) int {
	for i, x := range e.items {
		if x == it {
			return i
		}
	}
	panic("responses: an item not in the stream")
}

// ensure returns the open item of the kind, closing the others, or adds
// one.
func (e *StreamEncoder) ensure(dst []byte, kind string) ([]byte, *outItem) {
	if len(e.open) == 1 && e.open[0].kind == kind {
		return dst, e.open[0]
	}
	return e.add(e.closeAll(dst), kind, "", "")
}

// toolStart adds a function call's item. Calls stream together: each stays
// open until something else comes, so that arguments interleaved between
// calls still land in their own.
func (e *StreamEncoder) toolStart(dst []byte, index int, callID, name string) ([]byte, *outItem) {
	if len(e.open) > 0 && e.open[0].kind != kindCall {
		dst = e.closeAll(dst)
	}
	if callID == "" {
		callID = "call_" + strings.TrimPrefix(e.id, "resp_") + "_" + fmt.Sprint(index)
	}
	dst, it := e.add(dst, kindCall, callID, name)
	if e.calls == nil {
		e.calls = make(map[int]*outItem)
	}
	e.calls[index] = it
	return dst, it
}

func (e *StreamEncoder) add(dst []byte, kind, callID, name string) ([]byte, *outItem) {
	prefix := "fc"
	switch kind {
	case kindMessage:
		prefix = "msg"
	case kindReasoning:
		prefix = "rs"
	}
	it := &outItem{kind: kind, id: e.ids.next(prefix), callID: callID, name: name}
	e.items = append(e.items, it)
	e.open = append(e.open, it)
	added := it.item()
	added.Status = statusInProgress
	if kind == kindReasoning {
		added.EncryptedContent, added.Status = nil, ""
	}
	return e.event(dst, &streamEvent{Type: "response.output_item.added", OutputIndex: e.index(it), Item: &added}), it
}

// closeAll sends the open items' done events.
func (e *StreamEncoder) closeAll(dst []byte) []byte {
	for _, it := range e.open {
		it.done = true
		i := e.index(it)
		text := it.text.String()
		switch it.kind {
		case kindMessage:
			if it.part {
				dst = e.event(dst, &streamEvent{Type: "response.output_text.done", ItemID: it.id, OutputIndex: i, ContentIndex: zero(), Text: &text, Logprobs: &[]json.RawMessage{}})
				dst = e.event(dst, &streamEvent{Type: "response.content_part.done", ItemID: it.id, OutputIndex: i, ContentIndex: zero(), Part: new(outputText(text))})
			}
		case kindReasoning:
			if it.part {
				dst = e.event(dst, &streamEvent{Type: "response.reasoning_summary_text.done", ItemID: it.id, OutputIndex: i, SummaryIndex: zero(), Text: &text})
				dst = e.event(dst, &streamEvent{Type: "response.reasoning_summary_part.done", ItemID: it.id, OutputIndex: i, SummaryIndex: zero(), Part: summaryText(text)})
			}
		case kindCall:
			dst = e.event(dst, &streamEvent{Type: "response.function_call_arguments.done", ItemID: it.id, OutputIndex: i, Arguments: &text})
		}
		done := it.item()
		dst = e.event(dst, &streamEvent{Type: "response.output_item.done", OutputIndex: i, Item: &done})
	}
	e.open = e.open[:0]
	return dst
}

// item is the item as it stands, as the response object carries it.
func (it *outItem) item() item {
	status := statusCompleted
	if !it.done {
		status = statusInProgress
	}
	switch it.kind {
	case kindMessage:
		content := []contentPart{}
		if it.part {
			content = append(content, outputText(it.text.String()))
		}
		b, _ := json.Marshal(content)
		return item{Type: "message", ID: it.id, Status: status, Role: "assistant", Content: b}
	case kindReasoning:
		return reasoningItem(wire.Part{Type: wire.PartReasoning, Text: it.text.String(), Signature: it.signature}, it.id)
	}
	args := it.text.String()
	return item{Type: "function_call", ID: it.id, Status: status, CallID: it.callID, Name: it.name, Arguments: &args}
}

func zero() *int { return new(0) }

func summaryText(s string) *contentPart {
	return &contentPart{Type: "summary_text", Text: &s}
}

// StreamDecoder reads an upstream's Responses stream, one SSE event's data
// at a time (the data names its own type, so the event name is not
// needed). The zero value is ready; use one per stream.
type StreamDecoder struct {
	// calls maps a function call item's id to its tool-call position.
	calls map[string]int
	// seen are the items whose deltas came, so that an item given only
	// whole (by its done event) still gives its content once.
	seen map[string]bool
	// summary is the summary index of the reasoning item last read.
	summary  int
	hadCalls bool
	failed   bool
	// Done is set once the response's final event (response.completed,
	// response.incomplete or response.failed) arrived.
	Done bool
}

// Decode appends the canonical events of one SSE event's data to dst.
func (d *StreamDecoder) Decode(dst []wire.Event, data []byte) ([]wire.Event, error) {
	if len(data) == 0 {
		return dst, nil
	}
	var ev streamEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return dst, fmt.Errorf("responses: decode stream event: %w", err)
	}
	delta := deref(ev.Delta)
	switch ev.Type {
	case "response.created":
		if ev.Response == nil {
			return dst, fmt.Errorf("responses: response.created without a response")
		}
		r := ev.Response
		dst = append(dst, wire.Event{Type: wire.EventStart, ID: r.ID, Model: r.Model, Created: unixTime(r.CreatedAt)})
	case "response.output_item.added":
		if it := ev.Item; it != nil && it.Type == kindCall {
			dst = d.callStart(dst, it)
		}
	case "response.output_text.delta", "response.refusal.delta":
		d.see(ev.ItemID)
		if delta != "" {
			dst = append(dst, wire.Event{Type: wire.EventTextDelta, Text: delta})
		}
	case "response.reasoning_summary_text.delta", "response.reasoning_text.delta":
		index := 0
		if ev.SummaryIndex != nil {
			index = *ev.SummaryIndex
		} else if ev.ContentIndex != nil {
			index = *ev.ContentIndex
		}
		if d.seen[ev.ItemID] && index != d.summary {
			// The parts of a summary are paragraphs of one text.
			dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Text: "\n\n"})
		}
		d.summary = index
		d.see(ev.ItemID)
		if delta != "" {
			dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Text: delta})
		}
	case "response.function_call_arguments.delta":
		if call, ok := d.calls[ev.ItemID]; ok && delta != "" {
			d.see(ev.ItemID)
			dst = append(dst, wire.Event{Type: wire.EventToolCallDelta, Index: call, Text: delta})
		}
	case "response.output_item.done":
		if ev.Item != nil {
			dst = d.itemDone(dst, ev.Item)
		}
	case "response.completed", "response.incomplete":
		d.Done = true
		if r := ev.Response; r != nil {
			calls := d.hadCalls
			for _, it := range r.Output {
				calls = calls || it.Type == kindCall
			}
			dst = append(dst, wire.Event{Type: wire.EventFinish, FinishReason: finishReason(r.Status, r.IncompleteDetails, calls)})
			if r.Usage != nil {
				dst = append(dst, wire.Event{Type: wire.EventUsage, Usage: r.Usage.canonical()})
			}
		} else {
			dst = append(dst, wire.Event{Type: wire.EventFinish, FinishReason: wire.FinishStop})
		}
	case "response.failed":
		d.Done = true
		if d.failed {
			// The error event before it said it already.
			return dst, nil
		}
		d.failed = true
		var e responseError
		if ev.Response != nil && ev.Response.Error != nil {
			e = *ev.Response.Error
		}
		dst = append(dst, wire.Event{Type: wire.EventError, Err: errorOf(e.Code, e.Message)})
	case "error":
		if d.failed {
			return dst, nil
		}
		d.failed = true
		dst = append(dst, wire.Event{Type: wire.EventError, Err: errorOf(deref(ev.Code), deref(ev.Message))})
	}
	// response.in_progress, content and summary parts, the .done events of
	// text and arguments (their deltas said it all), and the events of
	// built-in tools carry nothing more.
	return dst, nil
}

func (d *StreamDecoder) see(id string) {
	if d.seen == nil {
		d.seen = make(map[string]bool)
	}
	d.seen[id] = true
}

func (d *StreamDecoder) callStart(dst []wire.Event, it *item) []wire.Event {
	if d.calls == nil {
		d.calls = make(map[string]int)
	}
	if _, ok := d.calls[it.ID]; ok {
		return dst
	}
	call := len(d.calls)
	d.calls[it.ID] = call
	d.hadCalls = true
	return append(dst, wire.Event{Type: wire.EventToolCallStart, Index: call, CallID: it.CallID, Name: it.Name})
}

// itemDone gives what an item's done event has that its deltas did not:
// a reasoning item's encrypted content, and the whole content of an item
// that came without deltas.
func (d *StreamDecoder) itemDone(dst []wire.Event, it *item) []wire.Event {
	seen := d.seen[it.ID]
	switch it.Type {
	case kindMessage:
		if !seen {
			var req wire.Request
			parts, _ := decodeContent(it.Content, &req)
			for _, p := range parts {
				if p.Type == wire.PartText && p.Text != "" {
					dst = append(dst, wire.Event{Type: wire.EventTextDelta, Text: p.Text})
				}
			}
		}
	case kindReasoning:
		p, ok := decodeReasoning(it)
		if !ok {
			return dst
		}
		if p.Redacted {
			return append(dst, wire.Event{Type: wire.EventReasoningDelta, Signature: p.Signature, Redacted: true})
		}
		if !seen && p.Text != "" {
			dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Text: p.Text})
		}
		if p.Signature != "" {
			dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Signature: p.Signature})
		}
	case kindCall:
		dst = d.callStart(dst, it)
		if !seen && it.Arguments != nil && *it.Arguments != "" {
			d.see(it.ID)
			dst = append(dst, wire.Event{Type: wire.EventToolCallDelta, Index: d.calls[it.ID], Text: *it.Arguments})
		}
	}
	return dst
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
