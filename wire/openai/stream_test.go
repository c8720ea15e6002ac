package openai

import (
	"bytes"
	"testing"

	"github.com/llmoneapi/llmoneapi/wire"
)

// marshalChunk is a stream chunk as encoding/json writes it: what the
// encoder's appends must match.
func marshalChunk(id, model string, created int64, delta *replyMessage, finish *string) []byte {
	return wire.AppendJSONEvent(nil, "", completion{
		ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
		Choices: []choice{{Delta: delta, FinishReason: finish}},
	})
}

// FuzzStreamEncoder: every chunk the encoder appends is the one
// encoding/json writes for the same delta.
func FuzzStreamEncoder(f *testing.F) {
	f.Add("msg_1", "claude-\u2028<x>", int64(1780000000), "Hello, \"world\"\n", "call_1", "get_weather", 0)
	f.Add("", "", int64(0), "\xff bad", "", "", 3)
	f.Fuzz(func(t *testing.T, id, model string, created int64, text, callID, name string, index int) {
		if id == "" || created == 0 {
			// The encoder makes up what is missing.
			return
		}
		e := NewStreamEncoder(false)
		got := e.Encode(nil, &wire.Event{Type: wire.EventStart, ID: id, Model: model, Created: created})
		empty := ""
		want := marshalChunk(id, model, created, &replyMessage{Role: "assistant", Content: &empty}, nil)
		check := func(what string) {
			t.Helper()
			if !bytes.Equal(got, want) {
				t.Fatalf("%s:\n%s\n--- want\n%s", what, got, want)
			}
		}
		check("start")
		got = e.Encode(got[:0], &wire.Event{Type: wire.EventTextDelta, Text: text})
		want = marshalChunk(id, model, created, &replyMessage{Content: &text}, nil)
		check("text")
		if text != "" {
			got = e.Encode(got[:0], &wire.Event{Type: wire.EventReasoningDelta, Text: text})
			want = marshalChunk(id, model, created, &replyMessage{ReasoningContent: &text}, nil)
			check("reasoning")
		}
		got = e.Encode(got[:0], &wire.Event{Type: wire.EventToolCallStart, Index: index, CallID: callID, Name: name})
		want = marshalChunk(id, model, created, &replyMessage{ToolCalls: []toolCall{{Index: &index, ID: callID, Type: "function", Function: functionCall{Name: name}}}}, nil)
		check("tool call start")
		got = e.Encode(got[:0], &wire.Event{Type: wire.EventToolCallDelta, Index: index, Text: text})
		want = marshalChunk(id, model, created, &replyMessage{ToolCalls: []toolCall{{Index: &index, Function: functionCall{Arguments: text}}}}, nil)
		check("tool call delta")
		reason := name
		if reason == "" {
			reason = string(wire.FinishStop)
		}
		got = e.Encode(got[:0], &wire.Event{Type: wire.EventFinish, FinishReason: wire.FinishReason(name)})
		want = marshalChunk(id, model, created, &replyMessage{}, &reason)
		check("finish")
	})
}
