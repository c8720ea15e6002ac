package responses

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/llmoneapi/llmoneapi/wire"
)

// FuzzStreamDelta: every delta event the encoder appends is the one
// encoding/json writes for its streamEvent.
func FuzzStreamDelta(f *testing.F) {
	f.Add("msg_1", "Hello, \"world\"\n<&>", 7, 2)
	f.Add("", "\xff\u2028", 0, 0)
	f.Fuzz(func(t *testing.T, id, text string, seq, position int) {
		if seq < 0 || position < 0 || position > 100 {
			return
		}
		e := &StreamEncoder{seq: seq}
		for range position + 1 {
			e.items = append(e.items, &outItem{id: id})
		}
		it := e.items[position]
		for _, c := range []struct {
			got  func() []byte
			want streamEvent
		}{
			{func() []byte {
				return e.delta(nil, "response.output_text.delta", it, `,"content_index":0`, text, `,"logprobs":[]`)
			},
				streamEvent{Type: "response.output_text.delta", ItemID: id, OutputIndex: &position, ContentIndex: zero(), Delta: &text, Logprobs: &[]json.RawMessage{}}},
			{func() []byte {
				return e.delta(nil, "response.reasoning_summary_text.delta", it, `,"summary_index":0`, text, "")
			},
				streamEvent{Type: "response.reasoning_summary_text.delta", ItemID: id, OutputIndex: &position, SummaryIndex: zero(), Delta: &text}},
			{func() []byte { return e.delta(nil, "response.function_call_arguments.delta", it, "", text, "") },
				streamEvent{Type: "response.function_call_arguments.delta", ItemID: id, OutputIndex: &position, Delta: &text}},
		} {
			c.want.SequenceNumber = e.seq
			want := wire.AppendJSONEvent(nil, c.want.Type, &c.want)
			if got := c.got(); !bytes.Equal(got, want) {
				t.Fatalf("got\n%s\n--- want\n%s", got, want)
			}
		}
	})
}
