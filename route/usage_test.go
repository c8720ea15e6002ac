package route

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire/tokens"
)

var words = strings.Fields("Streams go to the client as they arrive, and what they carried is counted only when the upstream said nothing of its usage.")

func chunk(text string) []byte {
	return fmt.Appendf(nil, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", text)
}

// TestSentCounts: a stream's answer is counted from what was sent, within
// 10% of the tokenizer's count of its text, also past what is kept.
func TestSentCounts(t *testing.T) {
	x := &Exchange{Endpoint: llm.EndpointChat, Request: &llm.Request{}, Model: "gpt-4o"}
	for _, n := range []int{10, 3000} { // 3000 chunks is past keepMax
		var s sent
		var text strings.Builder
		for i := range n {
			d := " " + words[i%len(words)]
			text.WriteString(d)
			s.add(chunk(d))
		}
		s.add([]byte("data: [DONE]\n\n"))
		got, want := s.completionTokens(x), tokens.Count("gpt-4o", text.String())
		if math.Abs(float64(got-want)) > 0.1*float64(want) {
			t.Errorf("%d chunks: counted %d, tokenizer %d", n, got, want)
		}
		if len(*s.buf) > keepMax {
			t.Errorf("kept %d bytes", len(*s.buf))
		}
		s.release()
	}
}

// BenchmarkSentAdd is what keeping a streamed event costs the relay.
func BenchmarkSentAdd(b *testing.B) {
	data := chunk(" a few words of text")
	b.ReportAllocs()
	for b.Loop() {
		var s sent
		for range 20 {
			s.add(data)
		}
		s.release()
	}
}
