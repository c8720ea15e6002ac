package gemini

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
)

// StreamDecoder reads a streamGenerateContent?alt=sse stream, one SSE
// event's data (a GenerateContentResponse) at a time. The zero value is
// ready; use one per stream.
type StreamDecoder struct {
	started bool
	id      string
	calls   int
}

// Decode appends the canonical events of one chunk to dst. Gemini sends
// each function call whole, so a call gives its start and all its
// arguments at once.
func (d *StreamDecoder) Decode(dst []wire.Event, data []byte) ([]wire.Event, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return dst, nil
	}
	var c response
	if err := json.Unmarshal(data, &c); err != nil {
		return dst, fmt.Errorf("gemini: decode stream chunk: %w", err)
	}
	if c.Error != nil {
		return append(dst, wire.Event{Type: wire.EventError, Err: c.Error.canonical(http.StatusOK)}), nil
	}
	if !d.started {
		d.started, d.id = true, c.ResponseID
		start := wire.Event{Type: wire.EventStart, ID: c.ResponseID, Model: c.ModelVersion}
		if c.UsageMetadata != nil {
			// The first chunk already counts the input, which a client
			// of a format that reports it up front wants at the start.
			start.Usage = &llm.Usage{PromptTokens: c.UsageMetadata.PromptTokenCount + c.UsageMetadata.ToolUsePromptTokenCount,
				CachedTokens: c.UsageMetadata.CachedContentTokenCount}
			start.Usage.TotalTokens = start.Usage.PromptTokens
		}
		dst = append(dst, start)
	}
	finish := ""
	if len(c.Candidates) > 0 {
		cand := c.Candidates[0]
		finish = cand.FinishReason
		if cand.Content != nil {
			for _, p := range cand.Content.Parts {
				switch {
				case p.FunctionCall != nil:
					id := p.FunctionCall.ID
					if id == "" {
						id = callID(d.id, d.calls)
					}
					dst = append(dst,
						wire.Event{Type: wire.EventToolCallStart, Index: d.calls, CallID: id, Name: p.FunctionCall.Name, Signature: p.ThoughtSignature},
						wire.Event{Type: wire.EventToolCallDelta, Index: d.calls, Text: wire.JSONText(p.FunctionCall.Args)})
					d.calls++
				case p.Thought:
					if t := deref(p.Text); t != "" || p.ThoughtSignature != "" {
						dst = append(dst, wire.Event{Type: wire.EventReasoningDelta, Text: t, Signature: p.ThoughtSignature})
					}
				case deref(p.Text) != "":
					dst = append(dst, wire.Event{Type: wire.EventTextDelta, Text: *p.Text})
				}
			}
		}
	} else if c.PromptFeedback != nil && c.PromptFeedback.BlockReason != "" {
		finish = "SAFETY"
	}
	if finish != "" {
		dst = append(dst, wire.Event{Type: wire.EventFinish, FinishReason: finishReason(finish, d.calls > 0)})
	}
	if c.UsageMetadata != nil {
		dst = append(dst, wire.Event{Type: wire.EventUsage, Usage: c.UsageMetadata.canonical()})
	}
	return dst, nil
}

// StreamEncoder writes a streamGenerateContent?alt=sse stream for a client.
// Gemini's clients expect each function call whole, so the encoder holds a
// call's arguments until the call is complete. Use one per stream.
type StreamEncoder struct {
	id, model string
	calls     []*functionCall
	args      []bytes.Buffer
	sigs      []string
	finish    string
	usage     *llm.Usage
}

// NewStreamEncoder returns an encoder for one stream.
func NewStreamEncoder() *StreamEncoder { return &StreamEncoder{} }

// Encode appends the SSE events for ev to dst.
func (e *StreamEncoder) Encode(dst []byte, ev *wire.Event) []byte {
	switch ev.Type {
	case wire.EventStart:
		e.id, e.model = ev.ID, ev.Model
		if ev.Usage != nil {
			e.usage = ev.Usage
		}
	case wire.EventTextDelta:
		return e.chunk(e.flushCalls(dst), []part{{Text: &ev.Text}}, "")
	case wire.EventReasoningDelta:
		return e.chunk(e.flushCalls(dst), []part{{Text: &ev.Text, Thought: true, ThoughtSignature: ev.Signature}}, "")
	case wire.EventToolCallStart:
		for len(e.calls) <= ev.Index {
			e.calls = append(e.calls, nil)
			e.args = append(e.args, bytes.Buffer{})
			e.sigs = append(e.sigs, "")
		}
		e.calls[ev.Index] = &functionCall{ID: ev.CallID, Name: ev.Name}
		e.sigs[ev.Index] = ev.Signature
	case wire.EventToolCallDelta:
		if ev.Index < len(e.args) {
			e.args[ev.Index].WriteString(ev.Text)
		}
	case wire.EventFinish:
		e.finish = geminiFinish(ev.FinishReason)
	case wire.EventUsage:
		e.usage = ev.Usage
	case wire.EventError:
		return wire.AppendJSONEvent(dst, "", struct {
			Error *apiError `json:"error"`
		}{errorObject(ev.Err)})
	}
	return dst
}

// flushCalls sends the calls held so far, as text follows them.
func (e *StreamEncoder) flushCalls(dst []byte) []byte {
	parts := e.callParts()
	if len(parts) == 0 {
		return dst
	}
	return e.chunk(dst, parts, "")
}

func (e *StreamEncoder) callParts() []part {
	var parts []part
	for i, c := range e.calls {
		if c == nil {
			continue
		}
		c.Args = wire.ArgumentsJSON(e.args[i].String())
		parts = append(parts, part{FunctionCall: c, ThoughtSignature: e.sigs[i]})
	}
	e.calls, e.args, e.sigs = e.calls[:0], e.args[:0], e.sigs[:0]
	return parts
}

func (e *StreamEncoder) chunk(dst []byte, parts []part, finish string) []byte {
	c := response{
		Candidates:   []candidate{{Content: &content{Role: "model", Parts: parts}, FinishReason: finish}},
		ModelVersion: e.model, ResponseID: e.id,
	}
	if finish != "" {
		c.UsageMetadata = usageOf(e.usage)
	}
	return wire.AppendJSONEvent(dst, "", c)
}

// End appends the stream's last chunk: the calls still held, the finish
// reason and the usage.
func (e *StreamEncoder) End(dst []byte) []byte {
	parts := e.callParts()
	if len(parts) == 0 {
		parts = []part{{Text: new("")}}
	}
	finish := e.finish
	if finish == "" {
		finish = "STOP"
	}
	return e.chunk(dst, parts, finish)
}
