package integration

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// messagesSite serves one model per kind of upstream, all on the fake
// provider, for Anthropic Messages clients.
const messagesSite = `:{PORT} {
	llm_stats {
		log
	}
	llm_auth {
		static {
			key sk-msg-alice {
				user alice
			}
			key sk-msg-bob {
				user bob
				models gpt
			}
			key sk-msg-carol {
				user carol
				rpm 1
			}
			key sk-msg-dave {
				user dave
				tpm 1000
			}
		}
	}
	llm_route {
		model claude {
			upstream anthropic {UPSTREAM} ` + upstreamKey + ` {
				model claude-sonnet-4-5
				beta gateway-beta-1
			}
		}
		model gpt {
			upstream openai {UPSTREAM} ` + upstreamKey + ` {
				model gpt-4o-mini
			}
		}
		model gemini {
			upstream gemini {UPSTREAM} ` + upstreamKey + ` {
				model gemini-2.5-flash
			}
		}
	}
}
`

// messagesUpstream is where each model's Messages calls land on the fake.
var messagesUpstream = map[string]string{
	"claude": "/v1/messages",
	"gpt":    "/v1/chat/completions",
	"gemini": "/v1/models/gemini-2.5-flash:",
}

func anthropicClient(g *gateway, opts ...option.RequestOption) anthropic.Client {
	opts = append([]option.RequestOption{option.WithBaseURL(g.URL), option.WithAPIKey("sk-msg-alice"), option.WithMaxRetries(0)}, opts...)
	return anthropic.NewClient(opts...)
}

var cityTool = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
	Name:         "get_weather",
	Description:  anthropic.String("Weather for a city."),
	InputSchema:  anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}},
	CacheControl: anthropic.NewCacheControlEphemeralParam(),
}}

// TestMessages calls each kind of upstream with the Anthropic SDK: a
// system prompt (with a cache_control marker), whole and streamed, then a
// tool call over two turns. Each call is recorded once, as an Anthropic
// Messages call with the upstream's usage.
func TestMessages(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey}
	g := start(t, fake, messagesSite)
	c := anthropicClient(g, option.WithHeader("anthropic-beta", "client-beta-2"), option.WithHeader("anthropic-version", "2099-01-01"))
	records := 0
	for _, model := range []string{"claude", "gpt", "gemini"} {
		t.Run(model, func(t *testing.T) {
			fake.SetBehavior(fakellm.Behavior{Chunks: 3, CachedTokens: 4, CacheCreationTokens: 2})
			params := anthropic.MessageNewParams{
				Model:     anthropic.Model(model),
				MaxTokens: 64,
				System:    []anthropic.TextBlockParam{{Text: "be brief", CacheControl: anthropic.NewCacheControlEphemeralParam()}},
				Messages: []anthropic.MessageParam{
					anthropic.NewUserMessage(anthropic.NewTextBlock("hello there")),
					anthropic.NewAssistantMessage(anthropic.NewTextBlock("hi")),
					anthropic.NewUserMessage(anthropic.NewTextBlock("three little words")),
				},
			}
			msg, err := c.Messages.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) != 1 || msg.Content[0].Text != "chunk0 chunk1 chunk2" || msg.StopReason != anthropic.StopReasonEndTurn {
				t.Errorf("answer %+v, stop %q", msg.Content, msg.StopReason)
			}
			if msg.Usage.InputTokens <= 0 || msg.Usage.OutputTokens != 3 {
				t.Errorf("usage %+v", msg.Usage)
			}
			r, _ := fake.LastRequest()
			checkMessagesUpstream(t, model, r, "2099-01-01", "gateway-beta-1,client-beta-2")
			records++
			line := g.LastStats(t, records)
			if line["api"] != "anthropic.messages" || line["endpoint"] != "messages" || line["usage_source"] != "upstream" ||
				line["status"] != float64(200) || line["completion_tokens"] != float64(3) || line["model"] != model {
				t.Errorf("record %v", line)
			}
			if model == "claude" && (line["cached_tokens"] != float64(4) || line["cache_creation_tokens"] != float64(2)) {
				t.Errorf("cache tokens not recorded: %v", line)
			}

			// Streamed: Anthropic's event sequence, the input tokens in
			// message_start.
			stream := c.Messages.NewStreaming(context.Background(), params)
			var acc anthropic.Message
			var types []string
			var startInput int64
			for stream.Next() {
				ev := stream.Current()
				if len(types) == 0 || types[len(types)-1] != ev.Type {
					types = append(types, ev.Type)
				}
				if ev.Type == "message_start" {
					startInput = ev.Message.Usage.InputTokens
				}
				if err := acc.Accumulate(ev); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			want := "message_start content_block_start content_block_delta content_block_stop message_delta message_stop"
			if got := strings.Join(types, " "); got != want {
				t.Errorf("events %s", got)
			}
			if len(acc.Content) != 1 || acc.Content[0].Text != "chunk0 chunk1 chunk2" || acc.StopReason != anthropic.StopReasonEndTurn {
				t.Errorf("streamed answer %+v, stop %q", acc.Content, acc.StopReason)
			}
			if startInput <= 0 || acc.Usage.OutputTokens != 3 {
				t.Errorf("message_start input %d, final usage %+v", startInput, acc.Usage)
			}
			r, _ = fake.LastRequest()
			checkMessagesUpstream(t, model, r, "2099-01-01", "gateway-beta-1,client-beta-2")
			records++
			line = g.LastStats(t, records)
			if line["api"] != "anthropic.messages" || line["usage_source"] != "upstream" || line["stream"] != true ||
				line["completion_tokens"] != float64(3) || line["prompt_tokens"].(float64) <= 0 {
				t.Errorf("stream record %v", line)
			}

			// A tool call, streamed, and its result's turn.
			fake.SetBehavior(fakellm.Behavior{Chunks: 2, ToolCall: &fakellm.ToolCall{Arguments: `{"city":"Lyon"}`}})
			tools := anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 64, Tools: []anthropic.ToolUnionParam{cityTool},
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("weather in Lyon?"))},
			}
			stream = c.Messages.NewStreaming(context.Background(), tools)
			acc = anthropic.Message{}
			for stream.Next() {
				if err := acc.Accumulate(stream.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if acc.StopReason != anthropic.StopReasonToolUse || len(acc.Content) != 2 {
				t.Fatalf("tool turn: stop %q content %+v", acc.StopReason, acc.Content)
			}
			call := acc.Content[1]
			if call.Type != "tool_use" || call.Name != "get_weather" || string(call.Input) != `{"city":"Lyon"}` || call.ID == "" {
				t.Errorf("tool_use %+v input %s", call, call.Input)
			}
			tools.Messages = append(tools.Messages, acc.ToParam(),
				anthropic.NewUserMessage(anthropic.NewToolResultBlock(call.ID, "rain, 11C", false)))
			final, err := c.Messages.New(context.Background(), tools)
			if err != nil {
				t.Fatal(err)
			}
			if final.StopReason != anthropic.StopReasonEndTurn || len(final.Content) != 1 || final.Content[0].Text != "chunk0 chunk1" {
				t.Errorf("after the tool result: stop %q content %+v", final.StopReason, final.Content)
			}
			r, _ = fake.LastRequest()
			if !strings.Contains(string(r.Body), "rain, 11C") || !strings.Contains(string(r.Body), "Lyon") {
				t.Errorf("the tool turn did not reach the upstream: %s", r.Body)
			}
			checkMessagesUpstream(t, model, r, "2099-01-01", "gateway-beta-1,client-beta-2")
			records += 2
			if lines := g.StatsLines(t, records); len(lines) != records {
				t.Errorf("%d records for %d calls", len(lines), records)
			}
		})
	}
}

// checkMessagesUpstream asserts what reached the upstream of a Messages
// call: its path and key, never the client's key; for Anthropic the
// client's version and the merged beta flags, for the others no
// cache_control and no Anthropic header.
func checkMessagesUpstream(t *testing.T, model string, r fakellm.Request, version, beta string) {
	t.Helper()
	if !strings.HasPrefix(r.Path, messagesUpstream[model]) {
		t.Errorf("upstream got %s", r.Path)
	}
	all := string(r.Body) + r.Header.Get("Authorization") + r.Header.Get("x-api-key")
	if strings.Contains(all, "sk-msg-alice") {
		t.Errorf("the client key reached the upstream: %v %s", r.Header, r.Body)
	}
	switch model {
	case "claude":
		if r.Header.Get("x-api-key") != upstreamKey || r.Header.Get("anthropic-version") != version || r.Header.Get("anthropic-beta") != beta {
			t.Errorf("anthropic headers %v", r.Header)
		}
		if !strings.Contains(string(r.Body), `"model":"claude-sonnet-4-5"`) {
			t.Errorf("model not renamed: %s", r.Body)
		}
	default:
		if strings.Contains(string(r.Body), "cache_control") {
			t.Errorf("cache_control reached a non-Anthropic upstream: %s", r.Body)
		}
		if r.Header.Get("anthropic-beta") != "" || r.Header.Get("anthropic-version") != "" {
			t.Errorf("anthropic headers reached a non-Anthropic upstream: %v", r.Header)
		}
	}
}

// TestCountTokens: an Anthropic upstream counts; the others are estimated
// with the tokenizer and say so. Neither records tokens, both record the
// call.
func TestCountTokens(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey}
	g := start(t, fake, messagesSite)
	c := anthropicClient(g)
	for i, model := range []string{"claude", "gpt", "gemini"} {
		before := fake.Count()
		var resp *http.Response
		n, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
			Model:    anthropic.Model(model),
			System:   anthropic.MessageCountTokensParamsSystemUnion{OfString: anthropic.String("be brief")},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("three little words, and a few more for the count"))},
			Tools:    []anthropic.MessageCountTokensToolUnionParam{{OfTool: cityTool.OfTool}},
		}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		estimated := resp.Header.Get("X-LLM-Token-Count")
		if model == "claude" {
			r, _ := fake.LastRequest()
			if fake.Count() != before+1 || r.Path != "/v1/messages/count_tokens" || !strings.Contains(string(r.Body), `"model":"claude-sonnet-4-5"`) || estimated != "" {
				t.Errorf("claude: upstream got %s %s, header %q", r.Path, r.Body, estimated)
			}
		} else if fake.Count() != before || estimated != "estimated" {
			t.Errorf("%s: %d upstream calls, header %q", model, fake.Count()-before, estimated)
		}
		// The words and the tool's schema: well above a made-up count.
		if n.InputTokens < 10 {
			t.Errorf("%s: %d input tokens", model, n.InputTokens)
		}
		line := g.LastStats(t, i+1)
		if line["endpoint"] != "messages.count_tokens" || line["api"] != "anthropic.messages" || line["status"] != float64(200) ||
			line["total_tokens"] != float64(0) || line["usage_source"] != "none" {
			t.Errorf("%s: record %v", model, line)
		}
	}
}

// rawMessages posts a Messages request with the key in x-api-key and
// returns the status and body.
func rawMessages(t *testing.T, g *gateway, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.URL+"/v1/messages?beta=true", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", key)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out)
}

// TestMessagesErrors: every handler answers a Messages client in
// Anthropic's error shape, and a cut stream ends with event: error.
func TestMessagesErrors(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 5}}
	g := start(t, fake, messagesSite)
	hello := `{"model":"%s","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}`
	body := func(model string) string { return strings.Replace(hello, "%s", model, 1) }
	for _, tc := range []struct {
		name, key, model string
		status           int
		typ              string
	}{
		{"bad key", "sk-msg-nobody", "claude", 401, "authentication_error"},
		{"model not allowed", "sk-msg-bob", "claude", 403, "permission_error"},
		{"unknown model", "sk-msg-alice", "nope", 404, "not_found_error"},
		{"rate limited", "sk-msg-carol", "claude", 429, "rate_limit_error"},
		// The tpm reservation counts the Messages max_tokens.
		{"over tpm", "sk-msg-dave", "claude", 429, "rate_limit_error"},
	} {
		if tc.status == 429 {
			if status, out := rawMessages(t, g, tc.key, body(tc.model)); status != 200 {
				t.Fatalf("carol's first call: %d %s", status, out)
			}
		}
		b := body(tc.model)
		if tc.key == "sk-msg-dave" {
			b = strings.Replace(b, `"max_tokens":16`, `"max_tokens":4000`, 1)
		}
		status, out := rawMessages(t, g, tc.key, b)
		var e struct {
			Type  string `json:"type"`
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &e); err != nil || status != tc.status || e.Type != "error" || e.Error.Type != tc.typ || e.Error.Message == "" {
			t.Errorf("%s: status %d, body %s", tc.name, status, out)
		}
	}
	// The SDK reads them as API errors, with the key in a bearer token
	// too.
	bearer := anthropic.NewClient(option.WithBaseURL(g.URL), option.WithAuthToken("sk-msg-bob"), option.WithMaxRetries(0))
	_, err := bearer.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "claude", MaxTokens: 16, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))},
	})
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || !strings.Contains(apiErr.RawJSON(), `"permission_error"`) {
		t.Errorf("SDK error %v", err)
	}

	// A stream cut by the upstream after two chunks, passed through and
	// translated.
	for _, model := range []string{"claude", "gpt"} {
		fake.SetBehavior(fakellm.Behavior{Chunks: 5, DropAfter: 2})
		status, out := rawMessages(t, g, "sk-msg-alice", strings.Replace(body(model), `"max_tokens"`, `"stream":true,"max_tokens"`, 1))
		if status != 200 || !strings.Contains(out, "chunk1") || strings.Contains(out, "message_stop") ||
			!strings.HasSuffix(out, "\n\n") || !strings.Contains(out[strings.LastIndex(out, "event: "):], `event: error`+"\n"+`data: {"type":"error","error":{"type":"api_error"`) {
			t.Errorf("%s: cut stream %d:\n%s", model, status, out)
		}
	}
}

// TestMessagesClaudeCode sends what Claude Code sends (role "system"
// messages, adaptive thinking, context_management, output_config, metadata,
// deferred tools, cache_control on system and tool-result blocks, a
// signed thinking block from an earlier turn) to each kind of upstream:
// Anthropic gets it as it came, with only the model renamed; the others
// get a clean translation, with no cache_control, signature or Anthropic-only
// field.
func TestMessagesClaudeCode(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 2}}
	g := start(t, fake, messagesSite)
	fixture, err := os.ReadFile("../wire/anthropic/testdata/request/claude_code.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, model := range []string{"claude", "gpt", "gemini"} {
		var req map[string]any
		if err := json.Unmarshal(fixture, &req); err != nil {
			t.Fatal(err)
		}
		req["model"] = model
		body, _ := json.Marshal(req)
		status, out := rawMessages(t, g, "sk-msg-alice", string(body))
		if status != 200 || !strings.Contains(out, "event: message_stop") || !strings.Contains(out, "chunk0") {
			t.Errorf("%s: status %d:\n%s", model, status, out)
		}
		r, _ := fake.LastRequest()
		checkMessagesUpstream(t, model, r, "2023-06-01", "gateway-beta-1")
		up := string(r.Body)
		if model == "claude" {
			if want := strings.Replace(string(body), `"model":"claude"`, `"model":"claude-sonnet-4-5"`, 1); up != want {
				t.Errorf("claude: the body was changed:\n%s\nwant\n%s", up, want)
			}
			continue
		}
		for _, gone := range []string{"c2lnbmF0dXJl", "defer_loading", "context_management", "output_config", "adaptive"} {
			if strings.Contains(up, gone) {
				t.Errorf("%s: %q reached the upstream: %s", model, gone, up)
			}
		}
		for _, kept := range []string{"Answer in English.", "Work in /repo.", "go.mod", "Bash", "/done"} {
			if !strings.Contains(up, kept) {
				t.Errorf("%s: %q did not reach the upstream: %s", model, kept, up)
			}
		}
	}
}
