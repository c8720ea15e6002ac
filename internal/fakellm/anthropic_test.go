package fakellm_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

func anthropicClient(t *testing.T, s *fakellm.Server, opts ...option.RequestOption) (anthropic.Client, *httptest.Server) {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	opts = append([]option.RequestOption{option.WithBaseURL(ts.URL), option.WithAPIKey(testKey), option.WithMaxRetries(0)}, opts...)
	return anthropic.NewClient(opts...), ts
}

var weatherTool = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
	Name:        "get_weather",
	Description: anthropic.String("Weather for a city."),
	InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}},
}}

func TestAnthropicMessage(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 3, CachedTokens: 100, CacheCreationTokens: 20}}
	c, _ := anthropicClient(t, fake)
	msg, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     "claude-test",
		MaxTokens: 64,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("three little words"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != "chunk0 chunk1 chunk2" {
		t.Errorf("content = %+v", msg.Content)
	}
	if msg.StopReason != anthropic.StopReasonEndTurn || msg.Model != "claude-test" || !strings.HasPrefix(msg.ID, "msg_") {
		t.Errorf("stop_reason %q, model %q, id %q", msg.StopReason, msg.Model, msg.ID)
	}
	u := msg.Usage
	if u.InputTokens != 5 || u.OutputTokens != 3 || u.CacheReadInputTokens != 100 || u.CacheCreationInputTokens != 20 {
		t.Errorf("usage = %+v, want 5 in (2 system + 3 user words), 3 out, 100 read, 20 written", u)
	}
	req, _ := fake.LastRequest()
	if req.Path != "/v1/messages" || req.Header.Get("anthropic-version") == "" || req.Model != "claude-test" {
		t.Errorf("recorded %s, key %q, version %q, model %q", req.Path, req.Header.Get("x-api-key"), req.Header.Get("anthropic-version"), req.Model)
	}
}

func TestAnthropicStreamWithThinkingAndToolUse(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 2, ToolCall: &fakellm.ToolCall{Arguments: `{"city":"Lyon"}`}}}
	c, _ := anthropicClient(t, fake)
	params := anthropic.MessageNewParams{
		Model:     "claude-test",
		MaxTokens: 4096,
		Thinking:  anthropic.ThinkingConfigParamOfEnabled(1024),
		Tools:     []anthropic.ToolUnionParam{weatherTool},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("weather in Lyon?"))},
	}
	stream := c.Messages.NewStreaming(context.Background(), params)
	var msg anthropic.Message
	var types []string
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	// The SDK passes pings over.
	want := "message_start content_block_start content_block_delta content_block_delta content_block_stop " +
		"content_block_start content_block_delta content_block_delta content_block_stop " +
		"content_block_start content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("events:\n%s\nwant\n%s", got, want)
	}
	if len(msg.Content) != 3 {
		t.Fatalf("content = %+v", msg.Content)
	}
	if th := msg.Content[0]; th.Type != "thinking" || th.Thinking == "" || th.Signature == "" {
		t.Errorf("thinking block = %+v", th)
	}
	if msg.Content[1].Text != "chunk0 chunk1" {
		t.Errorf("text = %q", msg.Content[1].Text)
	}
	tool := msg.Content[2]
	if tool.Type != "tool_use" || tool.Name != "get_weather" || string(tool.Input) != `{"city":"Lyon"}` || !strings.HasPrefix(tool.ID, "toolu_") {
		t.Errorf("tool_use = %+v input %s", tool, tool.Input)
	}
	if msg.StopReason != anthropic.StopReasonToolUse || msg.Usage.InputTokens != 3 || msg.Usage.OutputTokens != 4 {
		t.Errorf("stop %q usage %+v", msg.StopReason, msg.Usage)
	}

	// The tool's result ends the loop with text.
	params.Messages = append(params.Messages, msg.ToParam(),
		anthropic.NewUserMessage(anthropic.NewToolResultBlock(tool.ID, "rain, 11C", false)))
	params.Thinking = anthropic.ThinkingConfigParamUnion{}
	final, err := c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if final.StopReason != anthropic.StopReasonEndTurn || len(final.Content) != 1 || final.Content[0].Type != "text" {
		t.Errorf("after the tool result: stop %q content %+v", final.StopReason, final.Content)
	}
}

func TestAnthropicLimitsAndStopSequences(t *testing.T) {
	fake := &fakellm.Server{Behavior: fakellm.Behavior{Chunks: 5}}
	c, _ := anthropicClient(t, fake)
	msg, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "m", MaxTokens: 2,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonMaxTokens || msg.Content[0].Text != "chunk0 chunk1" {
		t.Errorf("max_tokens 2: stop %q text %q", msg.StopReason, msg.Content[0].Text)
	}
	stream := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
		Model: "m", MaxTokens: 100, StopSequences: []string{"chunk3"},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))},
	})
	var acc anthropic.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.StopReason != anthropic.StopReasonStopSequence || acc.StopSequence != "chunk3" || acc.Content[0].Text != "chunk0 chunk1 chunk2 " {
		t.Errorf("stop sequence: stop %q seq %q text %q", acc.StopReason, acc.StopSequence, acc.Content[0].Text)
	}
}

func TestAnthropicErrors(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	c, ts := anthropicClient(t, fake)
	params := anthropic.MessageNewParams{Model: "m", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))}}
	for _, tc := range []struct {
		status int
		typ    string
	}{{529, "overloaded_error"}, {429, "rate_limit_error"}, {500, "api_error"}, {404, "not_found_error"}} {
		fake.SetBehavior(fakellm.Behavior{Status: tc.status})
		_, err := c.Messages.New(context.Background(), params)
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status || !strings.Contains(apiErr.RawJSON(), `"type":"`+tc.typ+`"`) {
			t.Errorf("status %d: err = %v", tc.status, err)
		}
	}
	fake.SetBehavior(fakellm.Behavior{})

	bad := anthropic.NewClient(option.WithBaseURL(ts.URL), option.WithAPIKey("sk-wrong"), option.WithMaxRetries(0))
	_, err := bad.Messages.New(context.Background(), params)
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || !strings.Contains(apiErr.RawJSON(), "authentication_error") {
		t.Errorf("wrong key: %v", err)
	}

	// Without anthropic-version, and without max_tokens.
	resp, body := postHeaders(t, ts, "/v1/messages", map[string]string{"x-api-key": testKey}, `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 400 || !strings.Contains(body, "anthropic-version") {
		t.Errorf("no version: %d %s", resp.StatusCode, body)
	}
	resp, body = postHeaders(t, ts, "/v1/messages", map[string]string{"x-api-key": testKey, "anthropic-version": "2023-06-01"}, `{"model":"m","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 400 || !strings.Contains(body, "max_tokens") {
		t.Errorf("no max_tokens: %d %s", resp.StatusCode, body)
	}

	// x-api-key is the header Anthropic documents; the stream has pings.
	resp, body = postHeaders(t, ts, "/v1/messages", map[string]string{"x-api-key": testKey, "anthropic-version": "2023-06-01"}, `{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(body, "event: ping\ndata: {\"type\":\"ping\"}") || !strings.HasSuffix(body, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") {
		t.Errorf("stream with x-api-key: %d %s", resp.StatusCode, body)
	}
}

func TestAnthropicFaults(t *testing.T) {
	fake := &fakellm.Server{Behavior: fakellm.Behavior{Chunks: 4, DropAfter: 2}}
	c, _ := anthropicClient(t, fake)
	stream := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
		Model: "m", MaxTokens: 100, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))},
	})
	var acc anthropic.Message
	for stream.Next() {
		_ = acc.Accumulate(stream.Current())
	}
	if stream.Err() == nil || acc.StopReason != "" {
		t.Errorf("a dropped stream ended cleanly: stop %q err %v", acc.StopReason, stream.Err())
	}
	if acc.Content[0].Text != "chunk0 chunk1" {
		t.Errorf("before the drop: %q", acc.Content[0].Text)
	}

	fake.SetBehavior(fakellm.Behavior{NoUsage: true})
	_, body := postHeaders(t, httptest.NewServer(fake), "/v1/messages", map[string]string{"anthropic-version": "2023-06-01"}, `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`)
	if strings.Contains(body, "usage") {
		t.Errorf("NoUsage reply has usage: %s", body)
	}
}

func TestAnthropicCountTokens(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	c, _ := anthropicClient(t, fake)
	n, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
		Model:    "m",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("one two three four"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.InputTokens != 4 {
		t.Errorf("input_tokens = %d, want 4", n.InputTokens)
	}
}

// postHeaders sends body with the given headers and returns the response
// with its body read.
func postHeaders(t *testing.T, ts *httptest.Server, path string, headers map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	if _, err := io.Copy(&sb, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, sb.String()
}
