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

// TestStreamTextAPIs: the answer's text is read out of each client API's
// stream.
func TestStreamTextAPIs(t *testing.T) {
	for endpoint, stream := range map[llm.Endpoint]string{
		llm.EndpointChat: string(chunk("Hello")) + string(chunk(" world")) + "data: [DONE]\n\n",
		llm.EndpointMessages: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n",
		llm.EndpointResponses: "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":3,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\"}\n\n" +
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" world\"}\n\n",
		llm.EndpointCompletions: "data: {\"choices\":[{\"text\":\"Hello\"}]}\n\ndata: {\"choices\":[{\"text\":\" world\"}]}\n\n",
	} {
		if got := streamText(endpoint, []byte(stream)); got != "Hello world" {
			t.Errorf("%s: %q", endpoint, got)
		}
	}
}
