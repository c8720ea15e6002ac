package providers_test

import (
	"bytes"
	"fmt"
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
		{"translated/anthropic-text", `{"name":"anthropic"}`, "", llm.EndpointChat, chat},
		{"translated/gemini", `{"name":"gemini"}`, "../../wire/gemini/testdata/stream/function_call.sse", llm.EndpointChat, chat},
		{"responses/passthrough/openai", `{"name":"openai"}`, "../../wire/responses/testdata/stream/function_call.sse", llm.EndpointResponses, resp},
		{"responses/translated/anthropic", `{"name":"anthropic"}`, "../../wire/anthropic/testdata/stream/tool_use.sse", llm.EndpointResponses, resp},
	} {
		body := anthropicText
		if bc.fixture != "" {
			var err error
			if body, err = os.ReadFile(bc.fixture); err != nil {
				b.Fatal(err)
			}
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

// anthropicText is a Messages stream as bench/run.sh's provider (cmd/mockllm)
// sends it: 20 text deltas between the events that frame them, with its
// members in the order it writes them (sorted).
var anthropicText = func() []byte {
	var b bytes.Buffer
	event := func(name, data string) { fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", name, data) }
	event("message_start", `{"message":{"content":[],"id":"msg_bench","model":"up-model","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"input_tokens":12,"output_tokens":1}},"type":"message_start"}`)
	event("content_block_start", `{"content_block":{"text":"","type":"text"},"index":0,"type":"content_block_start"}`)
	event("ping", `{"type":"ping"}`)
	for i := range 20 {
		event("content_block_delta", fmt.Sprintf(`{"delta":{"text":"chunk%d ","type":"text_delta"},"index":0,"type":"content_block_delta"}`, i))
	}
	event("content_block_stop", `{"index":0,"type":"content_block_stop"}`)
	event("message_delta", `{"delta":{"stop_reason":"end_turn","stop_sequence":null},"type":"message_delta","usage":{"output_tokens":20}}`)
	event("message_stop", `{"type":"message_stop"}`)
	return b.Bytes()
}()

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
