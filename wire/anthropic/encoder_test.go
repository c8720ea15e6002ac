package anthropic

import (
	"bytes"
	"testing"

	"github.com/llmoneapi/llmoneapi/wire"
)

// FuzzStreamDelta: every content_block_delta the encoder appends is the one
// encoding/json writes for its streamEvent.
func FuzzStreamDelta(f *testing.F) {
	f.Add("Hello, \"world\"\n<&>", 3)
	f.Add("\xff\u2029", 0)
	f.Fuzz(func(t *testing.T, text string, index int) {
		e := NewStreamEncoder()
		for _, c := range []struct {
			kind, key string
			want      delta
		}{
			{"text_delta", "text", delta{Type: "text_delta", Text: &text}},
			{"thinking_delta", "thinking", delta{Type: "thinking_delta", Thinking: &text}},
			{"signature_delta", "signature", delta{Type: "signature_delta", Signature: &text}},
			{"input_json_delta", "partial_json", delta{Type: "input_json_delta", PartialJSON: &text}},
		} {
			want := wire.AppendJSONEvent(nil, "content_block_delta", streamEvent{Type: "content_block_delta", Index: &index, Delta: &c.want})
			if got := e.delta(nil, index, c.kind, c.key, text); !bytes.Equal(got, want) {
				t.Fatalf("got\n%s\n--- want\n%s", got, want)
			}
		}
	})
}
