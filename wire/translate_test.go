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
var translations = []struct {
	client, upstream, request, response, stream string
}{
	{"openai", "anthropic", "openai/testdata/request/tools.json", "anthropic/testdata/response/tool_use.json", "anthropic/testdata/stream/tool_use.sse"},
	{"openai", "gemini", "openai/testdata/request/chat.json", "gemini/testdata/response/function_call.json", "gemini/testdata/stream/function_call.sse"},
	{"anthropic", "openai", "anthropic/testdata/request/agent.json", "openai/testdata/response/tool_calls.json", "openai/testdata/stream/tools.sse"},
	{"anthropic", "gemini", "anthropic/testdata/request/vision.json", "gemini/testdata/response/max_tokens.json", "gemini/testdata/stream/function_call.sse"},
}

// TestTranslate runs each client format's fixtures through each upstream
// format and back, against golden files in testdata/translate.
func TestTranslate(t *testing.T) {
	for _, tr := range translations {
		t.Run(tr.client+"-to-"+tr.upstream, func(t *testing.T) {
			client, upstream := codecs.All[tr.client], codecs.All[tr.upstream]
			dir := "testdata/translate/" + tr.client + "-" + tr.upstream + "/"

			req, err := client.DecodeRequest(wiretest.Read(t, tr.request))
			if err != nil {
				t.Fatal(err)
			}
			req.Model = "upstream-model"
			body, dropped, err := upstream.EncodeRequest(req)
			if err != nil {
				t.Fatal(err)
			}
			wiretest.Golden(t, dir+"request.json", wiretest.JSON(t, map[string]any{
				"body": rawJSON(body), "dropped_by_client_codec": req.Dropped, "dropped_by_upstream_codec": dropped,
			}))

			resp, err := upstream.DecodeResponse(wiretest.Read(t, tr.response))
			if err != nil {
				t.Fatal(err)
			}
			// Formats without a creation time get the time of
			// translation; a fixed one keeps the golden files stable.
			const created = 1780009999
			if resp.Created == 0 {
				resp.Created = created
			}
			out, err := client.EncodeResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			wiretest.Golden(t, dir+"response.json", out)

			evs := upstream.DecodeStream(t, wiretest.Read(t, tr.stream))
			if evs[0].Created == 0 {
				evs[0].Created = created
			}
			stream := client.EncodeStream(evs)
			wiretest.Golden(t, dir+"stream.sse", stream)
			// What the client gets must read back as a whole stream in
			// its own format.
			client.DecodeStream(t, stream)
		})
	}
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

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
