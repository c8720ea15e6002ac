package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// providersSite serves one model per translated provider, all on the fake
// provider, which speaks each API.
const providersSite = `:{PORT} {
	llm_stats {
		log
	}
	llm_auth {
		static {
			key sk-prov-alice {
				user alice
			}
		}
	}
	llm_route {
		model claude {
			upstream anthropic {UPSTREAM} ` + upstreamKey + ` {
				model claude-sonnet-4-5
			}
		}
		model gemini {
			upstream gemini {UPSTREAM} ` + upstreamKey + ` {
				model gemini-2.5-flash
			}
		}
		model azure {
			upstream azure {UPSTREAM} ` + upstreamKey + ` {
				model my-deployment
			}
		}
	}
}
`

var weatherTool = openai.ChatCompletionToolUnionParam{OfFunction: &openai.ChatCompletionFunctionToolParam{Function: openai.FunctionDefinitionParam{
	Name:       "get_weather",
	Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
}}}

// upstreamPath is where each model's calls must land on the fake.
var upstreamPath = map[string]string{
	"claude": "/v1/messages",
	"gemini": "/v1/models/gemini-2.5-flash:",
	"azure":  "/v1/openai/deployments/my-deployment/chat/completions",
}

// TestTranslatedProviders calls an Anthropic, a Gemini and an Azure upstream
// through real Caddy with the OpenAI SDK: a system prompt, a multi-turn
// chat with an image, a streamed tool call and the result's turn. Each call
// is recorded once, with the upstream's usage.
func TestTranslatedProviders(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 3, CachedTokens: 4}}
	g := start(t, fake, providersSite)
	c := client(g, "sk-prov-alice")
	records := 0
	for _, model := range []string{"claude", "gemini", "azure"} {
		t.Run(model, func(t *testing.T) {
			fake.SetBehavior(fakellm.Behavior{Chunks: 3, CachedTokens: 4})
			resp, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: model,
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("be brief"),
					openai.UserMessage("hello"),
					openai.AssistantMessage("hi"),
					openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
						openai.TextContentPart("what is this"),
						openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgo="}),
					}),
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Choices[0].Message.Content != "chunk0 chunk1 chunk2" || resp.Model == "" {
				t.Errorf("reply %q from %q", resp.Choices[0].Message.Content, resp.Model)
			}
			r, _ := fake.LastRequest()
			if !strings.HasPrefix(r.Path, upstreamPath[model]) || strings.Contains(r.Header.Get("Authorization")+string(r.Body), "sk-prov-alice") {
				t.Errorf("upstream got %s, authorization %q", r.Path, r.Header.Get("Authorization"))
			}
			if !strings.Contains(string(r.Body), "iVBORw0KGgo=") || !strings.Contains(string(r.Body), "be brief") {
				t.Errorf("the image or the system prompt did not reach the upstream: %s", r.Body)
			}
			records++
			line := g.LastStats(t, records)
			if line["usage_source"] != "upstream" || line["model"] != model || line["status"] != float64(200) {
				t.Errorf("record %v", line)
			}
			if line["cached_tokens"] != float64(4) {
				t.Errorf("cached tokens not recorded: %v", line)
			}

			if model == "azure" {
				// Azure passes OpenAI's bodies through; its tools are
				// OpenAI's own.
				return
			}
			fake.SetBehavior(fakellm.Behavior{Chunks: 2, ToolCall: &fakellm.ToolCall{Arguments: `{"city":"Lyon"}`}})
			params := openai.ChatCompletionNewParams{
				Model:         model,
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather in Lyon?")},
				Tools:         []openai.ChatCompletionToolUnionParam{weatherTool},
				Stop:          openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"never-said"}},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			}
			stream := c.Chat.Completions.NewStreaming(context.Background(), params)
			var acc openai.ChatCompletionAccumulator
			chunks := 0
			for stream.Next() {
				acc.AddChunk(stream.Current())
				chunks++
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			msg := acc.Choices[0].Message
			if len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Arguments != `{"city":"Lyon"}` || acc.Choices[0].FinishReason != "tool_calls" {
				t.Fatalf("streamed tool call: %+v, finish %q", msg.ToolCalls, acc.Choices[0].FinishReason)
			}
			r, _ = fake.LastRequest()
			if !strings.Contains(string(r.Body), "never-said") {
				t.Errorf("no stop sequence upstream: %s", r.Body)
			}
			records++
			line = g.LastStats(t, records)
			if line["usage_source"] != "upstream" || line["stream"] != true || line["total_tokens"] != float64(acc.Usage.TotalTokens) {
				t.Errorf("stream record %v, client usage %+v", line, acc.Usage)
			}

			params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage("rain", msg.ToolCalls[0].ID))
			params.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
			final, err := c.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			if final.Choices[0].FinishReason != "stop" || final.Choices[0].Message.Content != "chunk0 chunk1" {
				t.Errorf("after the tool result: %+v", final.Choices[0])
			}
			records++
			g.LastStats(t, records)
		})
	}
}

// TestTranslatedStreamCut: an Anthropic stream the upstream cuts after its
// first content ends the client's stream with an error, and the call is
// recorded once, as truncated.
func TestTranslatedStreamCut(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 5, DropAfter: 2}}
	g := start(t, fake, providersSite)
	c := client(g, "sk-prov-alice")
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "claude", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
	})
	var text strings.Builder
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if stream.Err() == nil || text.String() != "chunk0 chunk1" {
		t.Errorf("cut stream: text %q, err %v", text.String(), stream.Err())
	}
	line := g.LastStats(t, 1)
	if line["truncated"] != true {
		t.Errorf("record %v", line)
	}
	if lines := g.StatsLines(t, 1); len(lines) != 1 {
		t.Errorf("%d records for one call", len(lines))
	}
}
