package providers_test

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
)

// BenchmarkStream compares, per upstream event, the passthrough path (an
// OpenAI client on an OpenAI upstream: events relayed as they are) with the
// translated one (an OpenAI client on an Anthropic or Gemini upstream: each
// event decoded and re-encoded), for chat and Responses clients.
func BenchmarkStream(b *testing.B) {
	chat, _ := llm.ParseRequest([]byte(`{"model":"m","stream":true,"messages":[]}`))
	resp, _ := llm.ParseRequest([]byte(`{"model":"m","stream":true,"input":"x"}`))
	for _, bc := range []struct {
		name, provider, fixture string
		endpoint                llm.Endpoint
		req                     *llm.Request
	}{
		{"passthrough/openai", `{"name":"openai"}`, "../../wire/openai/testdata/stream/tools.sse", llm.EndpointChat, chat},
		{"translated/anthropic", `{"name":"anthropic"}`, "../../wire/anthropic/testdata/stream/tool_use.sse", llm.EndpointChat, chat},
		{"translated/gemini", `{"name":"gemini"}`, "../../wire/gemini/testdata/stream/function_call.sse", llm.EndpointChat, chat},
		{"responses/passthrough/openai", `{"name":"openai"}`, "../../wire/responses/testdata/stream/function_call.sse", llm.EndpointResponses, resp},
		{"responses/translated/anthropic", `{"name":"anthropic"}`, "../../wire/anthropic/testdata/stream/tool_use.sse", llm.EndpointResponses, resp},
	} {
		body, err := os.ReadFile(bc.fixture)
		if err != nil {
			b.Fatal(err)
		}
		events := bytes.Count(body, []byte("data:"))
		u := upstream(b, bc.provider, "http://127.0.0.1:1")
		p, _ := u.Provider()
		x := &route.Exchange{Endpoint: bc.endpoint, Request: bc.req, Upstream: u, Model: "m"}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				s := p.Stream(x, bytes.NewReader(body))
				for {
					if _, err := s.Next(); err != nil {
						if err != io.EOF {
							b.Fatal(err)
						}
						break
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
		})
	}
}

// BenchmarkResponse is an unstreamed answer's cost: usage read from an
// OpenAI answer passed through, and each translated answer decoded and
// re-encoded for an OpenAI client.
func BenchmarkResponse(b *testing.B) {
	chat, _ := llm.ParseRequest([]byte(`{"model":"m","messages":[]}`))
	for _, bc := range []struct{ name, provider, fixture string }{
		{"passthrough/openai", `{"name":"openai"}`, "../../wire/openai/testdata/response/tool_calls.json"},
		{"translated/anthropic", `{"name":"anthropic"}`, "../../wire/anthropic/testdata/response/tool_use.json"},
		{"translated/gemini", `{"name":"gemini"}`, "../../wire/gemini/testdata/response/function_call.json"},
	} {
		body, err := os.ReadFile(bc.fixture)
		if err != nil {
			b.Fatal(err)
		}
		u := upstream(b, bc.provider, "http://127.0.0.1:1")
		p, _ := u.Provider()
		x := &route.Exchange{Endpoint: llm.EndpointChat, Request: chat, Upstream: u, Model: "m"}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, usage, err := p.Response(x, body); err != nil || usage == nil {
					b.Fatal(err, usage)
				}
			}
		})
	}
}
