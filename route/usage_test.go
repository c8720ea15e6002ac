package route

import (
	"bytes"
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
	for _, n := range []int{10, 10000} { // 10,000 chunks is past keepMax
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
		if len(s.k.diffs) > keepMax {
			t.Errorf("kept %d bytes", len(s.k.diffs))
		}
		s.release()
	}
}

// TestSentKeepsLittle: a stream keeps its events whole, in a fraction of
// the bytes it sent, for each client API's chunks: a tenth for chat and
// messages, half for responses, whose sequence numbers split the part
// that repeats.
func TestSentKeepsLittle(t *testing.T) {
	share := map[string]int{"chat": 10, "messages": 10, "responses": 2}
	for name, event := range map[string]func(int, string) string{
		"chat": func(i int, text string) string {
			return fmt.Sprintf(`data: {"id":"chatcmpl-8f2a","object":"chat.completion.chunk","created":1764547200,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`+"\n\n", text)
		},
		"messages": func(i int, text string) string {
			return fmt.Sprintf("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":%q}}\n\n", text)
		},
		"responses": func(i int, text string) string {
			return fmt.Sprintf("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":%d,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":%q}\n\n", i+3, text)
		},
	} {
		var s sent
		var all strings.Builder
		for i := range 100 {
			e := event(i, " "+words[i%len(words)])
			all.WriteString(e)
			s.add([]byte(e))
		}
		if got := string(s.events()); got != all.String() {
			t.Errorf("%s: rebuilt %q, sent %q", name, got, all.String())
		}
		if kept, sent := len(s.k.diffs), all.Len(); kept*share[name] > sent {
			t.Errorf("%s: kept %d bytes of %d sent", name, kept, sent)
		}
		s.release()
	}
}

// FuzzSentEvents: any run of events is rebuilt as it was sent, or as its
// start when it did not all fit.
func FuzzSentEvents(f *testing.F) {
	f.Add([]byte("data: {\"a\":1}\n\n|data: {\"a\":2}\n\n|data: [DONE]\n\n"))
	f.Add([]byte("abcabcabc|abc|bcab||cabcabcabcabcabc|a"))
	f.Add([]byte("0123456789abcdef0123|0123456789abcdeX0123|X"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var s sent
		defer s.release()
		for e := range bytes.SplitSeq(in, []byte("|")) {
			s.add(e)
		}
		got := s.events()
		if len(got) != s.kept || !bytes.Equal(got, bytes.ReplaceAll(in, []byte("|"), nil)[:s.kept]) {
			t.Fatalf("rebuilt %q from %q (kept %d)", got, in, s.kept)
		}
	})
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
