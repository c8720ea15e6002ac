package wire_test

import (
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/wiretest"
	"github.com/llmoneapi/llmoneapi/internal/wiretest/codecs"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
	"github.com/llmoneapi/llmoneapi/wire/openai"
)

// translations are the client → upstream pairs the gateway runs, each with
// a request fixture of the client's format and a response and a stream
// fixture of the upstream's.
var translations = []codecs.Translation{
	{Client: "openai", Upstream: "anthropic", Request: "openai/testdata/request/tools.json", Response: "anthropic/testdata/response/tool_use.json", Stream: "anthropic/testdata/stream/tool_use.sse"},
	{Client: "openai", Upstream: "gemini", Request: "openai/testdata/request/chat.json", Response: "gemini/testdata/response/function_call.json", Stream: "gemini/testdata/stream/function_call.sse"},
	{Client: "anthropic", Upstream: "openai", Request: "anthropic/testdata/request/agent.json", Response: "openai/testdata/response/tool_calls.json", Stream: "openai/testdata/stream/tools.sse"},
	{Client: "anthropic", Upstream: "gemini", Request: "anthropic/testdata/request/vision.json", Response: "gemini/testdata/response/max_tokens.json", Stream: "gemini/testdata/stream/function_call.sse"},
}

func TestTranslate(t *testing.T) { codecs.RunTranslations(t, translations) }

// BenchmarkTranslated is the cost of the translated path per call: an
// OpenAI client's request to an Anthropic upstream, and the upstream's
// stream back, per event.
func BenchmarkTranslated(b *testing.B) {
	reqBody := wiretest.Read(b, "openai/testdata/request/tools.json")
	streamBody := wiretest.Read(b, "anthropic/testdata/stream/tool_use.sse")
	_, chunks := wiretest.SSE(b, streamBody)
	b.Run("Request/openai-to-anthropic", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(reqBody)))
		for b.Loop() {
			req, err := openai.DecodeRequest(reqBody)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := anthropic.EncodeRequest(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("StreamEvent/anthropic-to-openai", func(b *testing.B) {
		b.ReportAllocs()
		var evs []wire.Event
		var out []byte
		for b.Loop() {
			d, e := &anthropic.StreamDecoder{}, openai.NewStreamEncoder(true)
			for _, c := range chunks {
				evs, _ = d.Decode(evs[:0], c)
				for i := range evs {
					out = e.Encode(out[:0], &evs[i])
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chunks)), "ns/event")
	})
}
