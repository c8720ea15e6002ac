package providers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
)

const upstreamKey = "sk-upstream-secret-0042"

// gateway serves an llm_route handler with one model, "m", on one upstream
// of the provider, in front of the fake provider, and returns an OpenAI SDK
// client for it and the calls' records.
type gateway struct {
	client openai.Client
	url    string // the handler's base URL
	fake   *fakellm.Server
	mu     sync.Mutex
	calls  []*llm.Call
}

// call returns the record of the n-th call (from 1), waiting for it: a
// stream's client may have its last event before the handler returns.
func (g *gateway) call(t *testing.T, n int) *llm.Call {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		if len(g.calls) >= n {
			c := g.calls[n-1]
			g.mu.Unlock()
			return c
		}
		g.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no record of call %d", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newGateway(t *testing.T, provider, path, model string) *gateway {
	t.Helper()
	g := &gateway{fake: &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 3}}}
	up := httptest.NewServer(g.fake)
	t.Cleanup(up.Close)
	config := `{"catalogs":[{"source":"config","models":[{"name":"m","lb_retries":0,"upstreams":[{"provider":` + provider +
		`,"url":"` + up.URL + path + `","api_key":"` + upstreamKey + `","model":"` + model + `"}]}]}]}`
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("http.handlers.llm_route", json.RawMessage(config))
	if err != nil {
		t.Fatal(err)
	}
	h := mod.(*route.Handler)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
		if err := h.ServeHTTP(w, r, nil); err != nil {
			t.Error(err)
		}
		g.mu.Lock()
		g.calls = append(g.calls, llm.CallFrom(r))
		g.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	g.client = openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("sk-client-key-not-for-upstream"), option.WithMaxRetries(0))
	return g
}

var providers = []struct {
	name, config, path, model string
	// check asserts what reached the upstream.
	check func(t *testing.T, r fakellm.Request, stream bool)
}{
	{"anthropic", `{"name":"anthropic","beta":["tools-2024-05-16"]}`, "", "claude-test", func(t *testing.T, r fakellm.Request, _ bool) {
		if r.Path != "/v1/messages" || r.Header.Get("x-api-key") != upstreamKey || r.Header.Get("anthropic-version") != "2023-06-01" ||
			r.Header.Get("anthropic-beta") != "tools-2024-05-16" || r.Header.Get("Authorization") != "" {
			t.Errorf("upstream got %s with headers %v", r.Path, r.Header)
		}
	}},
	{"gemini", `{"name":"gemini"}`, "", "gemini-2.5-flash", func(t *testing.T, r fakellm.Request, stream bool) {
		want := "/v1beta/models/gemini-2.5-flash:generateContent"
		if stream {
			want = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
		}
		if r.Path != want || (stream && r.RawQuery != "alt=sse") || r.Header.Get("x-goog-api-key") != upstreamKey || r.Header.Get("Authorization") != "" {
			t.Errorf("upstream got %s?%s with headers %v", r.Path, r.RawQuery, r.Header)
		}
	}},
	{"azure", `{"name":"azure","api_version":"2024-10-21"}`, "", "gpt-4o-deploy", func(t *testing.T, r fakellm.Request, _ bool) {
		if r.Path != "/openai/deployments/gpt-4o-deploy/chat/completions" || r.RawQuery != "api-version=2024-10-21" ||
			r.Header.Get("api-key") != upstreamKey || r.Header.Get("Authorization") != "" {
			t.Errorf("upstream got %s?%s with headers %v", r.Path, r.RawQuery, r.Header)
		}
	}},
}

func TestProvidersChat(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			g := newGateway(t, p.config, p.path, p.model)
			resp, err := g.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "m",
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("one two"),
					openai.UserMessage("three four"),
					openai.AssistantMessage("ok"),
					openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
						openai.TextContentPart("five"),
						openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgo="}),
					}),
				},
				Stop: openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"chunk2"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			// The stop sequence cuts the third chunk; the fake counts words.
			if got := resp.Choices[0].Message.Content; got != "chunk0 chunk1 " && got != "chunk0 chunk1 chunk2" {
				t.Errorf("reply %q", got)
			}
			if resp.Usage.PromptTokens < 5 || resp.Usage.CompletionTokens < 2 {
				t.Errorf("usage %+v", resp.Usage)
			}
			r, _ := g.fake.LastRequest()
			p.check(t, r, false)
			if strings.Contains(string(r.Body), "sk-client") {
				t.Errorf("the client key reached the upstream: %s", r.Body)
			}
			if !strings.Contains(string(r.Body), "iVBORw0KGgo=") {
				t.Errorf("no image upstream: %s", r.Body)
			}
			if p.name != "azure" && !strings.Contains(string(r.Body), "chunk2") {
				t.Errorf("no stop sequence upstream: %s", r.Body)
			}
			call := g.call(t, 1)
			if call.UsageSource != llm.UsageUpstream || call.Usage.PromptTokens != resp.Usage.PromptTokens {
				t.Errorf("record: %s %+v", call.UsageSource, call.Usage)
			}
		})
	}
}

func TestProvidersStreamedToolCall(t *testing.T) {
	weather := openai.ChatCompletionToolUnionParam{OfFunction: &openai.ChatCompletionFunctionToolParam{Function: openai.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "additionalProperties": false},
	}}}
	for _, p := range providers[:2] {
		t.Run(p.name, func(t *testing.T) {
			g := newGateway(t, p.config, p.path, p.model)
			g.fake.SetBehavior(fakellm.Behavior{Chunks: 2, ToolCall: &fakellm.ToolCall{Arguments: `{"city":"Lyon"}`}})
			params := openai.ChatCompletionNewParams{
				Model:         "m",
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather in Lyon")},
				Tools:         []openai.ChatCompletionToolUnionParam{weather},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			}
			stream := g.client.Chat.Completions.NewStreaming(context.Background(), params)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			r, _ := g.fake.LastRequest()
			p.check(t, r, true)
			msg := acc.Choices[0].Message
			if len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" || msg.ToolCalls[0].Function.Arguments != `{"city":"Lyon"}` {
				t.Fatalf("tool calls %+v", msg.ToolCalls)
			}
			if acc.Choices[0].FinishReason != "tool_calls" || msg.Content != "chunk0 chunk1" || acc.Usage.TotalTokens == 0 {
				t.Errorf("finish %q content %q usage %+v", acc.Choices[0].FinishReason, msg.Content, acc.Usage)
			}
			if call := g.call(t, 1); call.UsageSource != llm.UsageUpstream || call.Usage.TotalTokens != acc.Usage.TotalTokens {
				t.Errorf("record: %s %+v, client saw %+v", call.UsageSource, call.Usage, acc.Usage)
			}

			// The tool's result goes back; the answer is text.
			params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage("rain, 11C", msg.ToolCalls[0].ID))
			resp, err := g.client.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Choices[0].FinishReason != "stop" || len(resp.Choices[0].Message.ToolCalls) != 0 {
				t.Errorf("after the result: %+v", resp.Choices[0])
			}
			r, _ = g.fake.LastRequest()
			if !strings.Contains(string(r.Body), "rain, 11C") {
				t.Errorf("the tool result did not reach the upstream: %s", r.Body)
			}
		})
	}
}

func TestProvidersErrors(t *testing.T) {
	for _, tc := range []struct {
		provider int
		status   int
	}{{0, 529}, {0, 429}, {1, 429}, {1, 503}, {2, 429}} {
		p := providers[tc.provider]
		t.Run(p.name, func(t *testing.T) {
			g := newGateway(t, p.config, p.path, p.model)
			g.fake.SetBehavior(fakellm.Behavior{Status: tc.status})
			_, err := g.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
			})
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode < 429 {
				t.Fatalf("upstream %d: %v", tc.status, err)
			}
			if strings.Contains(apiErr.RawJSON(), upstreamKey) {
				t.Errorf("the upstream key reached the client: %s", apiErr.RawJSON())
			}
			if a := g.call(t, 1).Attempts; len(a) != 1 || a[0].Status != tc.status {
				t.Errorf("attempts %+v", a)
			}
		})
	}
}
