package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

// teamSite is the Caddyfile of the project's first issue, pointed at the
// fake provider.
const teamSite = `:{PORT} {
	llm_stats {
		log
	}
	llm_auth {
		static {
			key sk-team-alice {
				user alice
			}
			key sk-team-bob {
				user bob
				models gpt-4o-mini text-embedding-*
			}
		}
	}
	llm_route {
		model gpt-4o-mini {
			upstream openai {UPSTREAM} ` + upstreamKey + ` {
				model gpt-4o-mini-2024-07-18
			}
		}
		model gpt-4o {
			upstream openai {UPSTREAM} ` + upstreamKey + `
		}
		model text-embedding-3-small {
			upstream openai {UPSTREAM} ` + upstreamKey + `
		}
	}
}
`

func client(g *gateway, key string) *openai.Client {
	c := llmtest.OpenAI(g.URL, key)
	return &c
}

func chat(model, prompt string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
	}
}

// apiError returns the SDK's error, failing unless the status is want.
func apiError(t *testing.T, err error, want int) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v, want an API error with status %d", err, want)
	}
	if e.StatusCode != want {
		t.Fatalf("status %d, want %d: %s", e.StatusCode, want, e.RawJSON())
	}
	return e
}

func TestChat(t *testing.T) {
	g := start(t, nil, teamSite)
	ctx := context.Background()
	resp, err := client(g, "sk-team-alice").Chat.Completions.New(ctx, chat("gpt-4o-mini", "one two three"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Content; got != "chunk0 chunk1 chunk2 chunk3 chunk4" {
		t.Fatalf("content %q", got)
	}
	if resp.Usage.PromptTokens != 3 || resp.Usage.CompletionTokens != 5 || resp.Usage.TotalTokens != 8 {
		t.Fatalf("usage %+v", resp.Usage)
	}

	// What reached the upstream: its own key, the renamed model, nothing of the client's key.
	up, _ := g.Fake.LastRequest()
	if got := up.Header.Get("Authorization"); got != "Bearer "+upstreamKey {
		t.Fatalf("upstream got Authorization %q", got)
	}
	if up.Model != "gpt-4o-mini-2024-07-18" || up.Path != "/v1/chat/completions" {
		t.Fatalf("upstream got model %q at %s", up.Model, up.Path)
	}
	for name, values := range up.Header {
		for _, v := range values {
			if strings.Contains(v, "sk-team-alice") {
				t.Fatalf("the client key reached the upstream in %s", name)
			}
		}
	}
	if strings.Contains(string(up.Body), "sk-team") {
		t.Fatal("the client key reached the upstream in the body")
	}

	line := g.LastStats(t, 1)
	want := map[string]any{
		"msg": "llm request", "user": "alice", "model": "gpt-4o-mini", "upstream_model": "gpt-4o-mini-2024-07-18",
		"provider": "openai", "endpoint": "chat.completions", "stream": false, "status": float64(200),
		"prompt_tokens": float64(3), "completion_tokens": float64(5), "total_tokens": float64(8), "usage_source": "upstream",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("stats log %s = %v, want %v", k, line[k], v)
		}
	}
	if id, _ := line["key_id"].(string); id == "" || strings.Contains(id, "alice") {
		t.Errorf("key_id %q must name the key without being it", id)
	}
	for k, v := range line {
		if s, ok := v.(string); ok && (strings.Contains(s, "sk-team") || strings.Contains(s, upstreamKey)) {
			t.Errorf("stats log field %s carries a key: %q", k, s)
		}
	}
}

func TestStream(t *testing.T) {
	// 3 of the prompt's 5 tokens come from the upstream's prompt cache.
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 4, ChunkDelay: 150 * time.Millisecond, CachedTokens: 3}}
	g := start(t, fake, teamSite)
	ctx := context.Background()

	for _, includeUsage := range []bool{false, true} {
		t.Run("include_usage="+map[bool]string{false: "off", true: "on"}[includeUsage], func(t *testing.T) {
			p := chat("gpt-4o-mini", "hello there")
			if includeUsage {
				p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			stream := client(g, "sk-team-alice").Chat.Completions.NewStreaming(ctx, p)
			var content strings.Builder
			var arrivals []time.Time
			var usageChunks int
			for stream.Next() {
				c := stream.Current()
				arrivals = append(arrivals, time.Now())
				// A client that did not ask gets chunks as the upstream
				// would have sent it: no "usage" at all. One that asked
				// gets "usage":null on the others, as OpenAI sends them.
				if strings.Contains(c.RawJSON(), `"usage"`) != includeUsage {
					t.Errorf("include_usage %v, chunk %s", includeUsage, c.RawJSON())
				}
				if len(c.Choices) > 0 {
					content.WriteString(c.Choices[0].Delta.Content)
				}
				if c.Usage.TotalTokens > 0 {
					usageChunks++
					if len(c.Choices) != 0 || c.Usage.PromptTokens != 5 || c.Usage.CompletionTokens != 4 || c.Usage.PromptTokensDetails.CachedTokens != 3 {
						t.Errorf("usage chunk %s", c.RawJSON())
					}
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if content.String() != "chunk0 chunk1 chunk2 chunk3" {
				t.Fatalf("content %q", content.String())
			}
			want := 0
			if includeUsage {
				want = 1
			}
			if usageChunks != want {
				t.Fatalf("client saw %d usage chunks, want %d", usageChunks, want)
			}
			// Each chunk is flushed as it comes: the first arrives while the
			// upstream is still writing the rest, 3 chunk delays before the last.
			if spread := arrivals[len(arrivals)-1].Sub(arrivals[0]); spread < 300*time.Millisecond {
				t.Fatalf("chunks arrived within %v: the stream was buffered", spread)
			}
			// The gateway asked the upstream for usage either way.
			up, _ := g.Fake.LastRequest()
			if !up.Stream || !up.IncludeUsage {
				t.Fatalf("upstream got stream=%v include_usage=%v", up.Stream, up.IncludeUsage)
			}
			line := g.LastStats(t, map[bool]int{false: 1, true: 2}[includeUsage])
			if line["total_tokens"] != float64(9) || line["cached_tokens"] != float64(3) || line["usage_source"] != "upstream" || line["stream"] != true {
				t.Fatalf("stats log %v", line)
			}
			if ttft, _ := line["ttft"].(float64); ttft <= 0 || ttft > line["duration"].(float64) {
				t.Fatalf("ttft %v, duration %v", line["ttft"], line["duration"])
			}
		})
	}
}

func TestLegacyCompletions(t *testing.T) {
	g := start(t, nil, teamSite)
	c := client(g, "sk-team-alice")
	resp, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:  "gpt-4o",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("say something")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text == "" || resp.Usage.TotalTokens != 7 {
		t.Fatalf("response %s", resp.RawJSON())
	}
	stream := c.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{
		Model:  "gpt-4o",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("say something")},
	})
	var text string
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			text += ch.Text
		}
	}
	if err := stream.Err(); err != nil || text == "" {
		t.Fatalf("text %q err %v", text, err)
	}
	if up, _ := g.Fake.LastRequest(); up.Path != "/v1/completions" || !up.IncludeUsage {
		t.Fatalf("upstream got %s include_usage=%v", up.Path, up.IncludeUsage)
	}
	if line := g.LastStats(t, 2); line["endpoint"] != "completions" || line["total_tokens"] != float64(7) {
		t.Fatalf("stats log %v", line)
	}
}

func TestEmbeddings(t *testing.T) {
	g := start(t, nil, teamSite)
	// Bob's scope allows text-embedding-*.
	resp, err := client(g, "sk-team-bob").Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a b", "c"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || len(resp.Data[0].Embedding) != fakellm.DefaultDimensions || resp.Usage.PromptTokens != 3 {
		t.Fatalf("response %s", resp.RawJSON())
	}
	if line := g.LastStats(t, 1); line["endpoint"] != "embeddings" || line["prompt_tokens"] != float64(3) || line["user"] != "bob" {
		t.Fatalf("stats log %v", line)
	}
}

func TestModelsPerKey(t *testing.T) {
	g := start(t, nil, teamSite)
	list := func(key string) []string {
		page, err := client(g, key).Models.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := strings.Join(list("sk-team-alice"), ","); got != "gpt-4o-mini,gpt-4o,text-embedding-3-small" {
		t.Fatalf("alice sees %s", got)
	}
	if got := strings.Join(list("sk-team-bob"), ","); got != "gpt-4o-mini,text-embedding-3-small" {
		t.Fatalf("bob sees %s", got)
	}
	m, err := client(g, "sk-team-bob").Models.Get(context.Background(), "gpt-4o-mini")
	if err != nil || m.ID != "gpt-4o-mini" || m.OwnedBy != "openai" {
		t.Fatalf("model %+v err %v", m, err)
	}
	_, err = client(g, "sk-team-bob").Models.Get(context.Background(), "gpt-4o")
	apiError(t, err, http.StatusNotFound)
}

func TestClientErrors(t *testing.T) {
	g := start(t, nil, teamSite)
	ctx := context.Background()

	_, err := client(g, "sk-wrong").Chat.Completions.New(ctx, chat("gpt-4o-mini", "hi"))
	if e := apiError(t, err, http.StatusUnauthorized); e.Code != "invalid_api_key" || strings.Contains(e.Message, "sk-wrong") {
		t.Fatalf("error %s", e.RawJSON())
	}
	_, err = client(g, "sk-team-bob").Chat.Completions.New(ctx, chat("gpt-4o", "hi"))
	if e := apiError(t, err, http.StatusForbidden); e.Code != "model_not_allowed" {
		t.Fatalf("error %s", e.RawJSON())
	}
	_, err = client(g, "sk-team-alice").Chat.Completions.New(ctx, chat("no-such-model", "hi"))
	if e := apiError(t, err, http.StatusNotFound); e.Code != "model_not_found" || !strings.Contains(e.Message, "no-such-model") {
		t.Fatalf("error %s", e.RawJSON())
	}
	if n := g.Fake.Count(); n != 0 {
		t.Fatalf("%d refused requests reached the upstream", n)
	}

	// Plain HTTP for what the SDK will not send.
	for _, tt := range []struct {
		name, key, body string
		status          int
		code            string
	}{
		{"no key", "", `{"model":"gpt-4o-mini"}`, 401, "missing_api_key"},
		{"bad json", "sk-team-alice", `{"model":"gpt-4o-mini",`, 400, "invalid_json"},
		{"no model", "sk-team-alice", `{"messages":[]}`, 400, "missing_model"},
		{"scoped bad json", "sk-team-bob", `not json`, 400, "invalid_json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, g.URL+"/v1/chat/completions", tt.key, tt.body)
			if status != tt.status || body.Error.Code != tt.code || body.Error.Message == "" || body.Error.Type == "" {
				t.Fatalf("got %d %+v", status, body)
			}
		})
	}
	status, body := get(t, g.URL+"/v1/nothing", "sk-team-alice")
	if status != 404 || body.Error.Code != "unknown_endpoint" {
		t.Fatalf("got %d %+v", status, body)
	}
}

func TestBodyLimit(t *testing.T) {
	g := start(t, nil, `:{PORT} {
	llm_auth {
		static {
			key sk-a
		}
	}
	llm_route {
		max_body_size 1KB
		model m {
			upstream openai {UPSTREAM} `+upstreamKey+`
		}
	}
}`)
	_, err := client(g, "sk-a").Chat.Completions.New(context.Background(), chat("m", strings.Repeat("long ", 400)))
	if e := apiError(t, err, http.StatusRequestEntityTooLarge); e.Code != "request_too_large" {
		t.Fatalf("error %s", e.RawJSON())
	}
	if _, err := client(g, "sk-a").Chat.Completions.New(context.Background(), chat("m", "short")); err != nil {
		t.Fatal(err)
	}
}

func TestUpstreamErrors(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey}
	g := start(t, fake, teamSite)
	c := client(g, "sk-team-alice")
	ctx := context.Background()
	// The client's own mistake keeps its status and message; an upstream
	// failure is the gateway's own 502 (the upstream's text goes to the log);
	// a rate limit makes the only upstream rest, and the client is told when
	// to come back.
	for _, tt := range []struct {
		status, want int
		code         string
	}{
		{400, 400, ""}, {500, 502, "upstream_error"}, {503, 502, "upstream_error"}, {429, 503, "upstream_unavailable"},
	} {
		fake.SetBehavior(fakellm.Behavior{Status: tt.status})
		_, err := c.Chat.Completions.New(ctx, chat("gpt-4o-mini", "hi"))
		e := apiError(t, err, tt.want)
		if e.Message == "" || (tt.code != "" && e.Code != tt.code) || strings.Contains(e.Message, "Sorry about that") {
			t.Fatalf("%d: %s", tt.status, e.RawJSON())
		}
		if tt.status == 429 && e.Response.Header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After")
		}
	}
	fake.SetBehavior(fakellm.Behavior{})

	// A gateway with the wrong upstream key: the client is not to blame,
	// and must not see any part of the key.
	wrongKey := strings.ReplaceAll(teamSite, upstreamKey, "sk-gateway-wrong-key-987654321")
	g = start(t, fake, wrongKey)
	_, err := client(g, "sk-team-alice").Chat.Completions.New(ctx, chat("gpt-4o-mini", "hi"))
	e := apiError(t, err, http.StatusBadGateway)
	if e.Code != "upstream_auth_failed" || strings.Contains(string(e.RawJSON()), "sk-gat") || strings.Contains(string(e.RawJSON()), "4321") {
		t.Fatalf("error %s", e.RawJSON())
	}

	// An upstream that is down.
	down := strings.ReplaceAll(teamSite, "{UPSTREAM}", "http://127.0.0.1:1/v1")
	g = start(t, fake, down)
	_, err = client(g, "sk-team-alice").Chat.Completions.New(ctx, chat("gpt-4o-mini", "hi"))
	if e := apiError(t, err, http.StatusBadGateway); e.Code != "upstream_unreachable" {
		t.Fatalf("error %s", e.RawJSON())
	}
}

func TestStreamCut(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 5, DropAfter: 2}}
	g := start(t, fake, teamSite)
	// Raw SSE: the client must get the chunks sent, then an error event, and no [DONE].
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-team-alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), "chunk1") || strings.Contains(string(raw), "[DONE]") ||
		!strings.Contains(string(raw), `"code":"upstream_stream_broken"`) {
		t.Fatalf("status %d, stream:\n%s", resp.StatusCode, raw)
	}
	// The SDK reports the cut as an error.
	stream := client(g, "sk-team-alice").Chat.Completions.NewStreaming(context.Background(), chat("gpt-4o-mini", "hi"))
	for stream.Next() {
	}
	if stream.Err() == nil {
		t.Fatal("the SDK saw a cut stream as complete")
	}
	if line := g.LastStats(t, 2); line["truncated"] != true || line["error"] == nil {
		t.Fatalf("stats log %v", line)
	}
}

func TestClientDisconnect(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 50, ChunkDelay: 100 * time.Millisecond}}
	g := start(t, fake, teamSite)
	ctx, cancel := context.WithCancel(context.Background())
	stream := client(g, "sk-team-alice").Chat.Completions.NewStreaming(ctx, chat("gpt-4o-mini", "hi"))
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	cancel()
	_ = stream.Close()
	deadline := time.Now().Add(3 * time.Second)
	for fake.Cancelled() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the upstream request went on after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if line := g.LastStats(t, 1); line["client_aborted"] != true {
		t.Fatalf("stats log %v", line)
	}
}

func TestPlaceholders(t *testing.T) {
	accessLog := filepath.Join(t.TempDir(), "access.log")
	g := start(t, nil, `:{PORT} {
	log {
		output file `+accessLog+`
		format filter {
			wrap json
			request>headers>X-Api-Key replace REDACTED
			request>headers>Api-Key replace REDACTED
		}
	}
	log_append llm_tokens {llm.usage.total_tokens}
	log_append llm_key {llm.key_id}
	header {
		defer
		X-LLM-User {llm.user}
		X-LLM-Model {llm.model}
		X-LLM-Provider {llm.provider}
		X-LLM-Tokens {llm.usage.total_tokens}
	}
	llm_stats
	llm_auth {
		static {
			key sk-a {
				user alice
			}
		}
	}
	llm_route {
		model m {
			upstream openai {UPSTREAM} `+upstreamKey+`
		}
	}
}`)
	var resp *http.Response
	_, err := client(g, "sk-a").Chat.Completions.New(context.Background(), chat("m", "one two"), option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"X-LLM-User": "alice", "X-LLM-Model": "m", "X-LLM-Provider": "openai", "X-LLM-Tokens": "7"} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	// log_append runs after the response, so a stream's usage reaches the access log too.
	stream := client(g, "sk-a").Chat.Completions.NewStreaming(context.Background(), chat("m", "one two"))
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	// A key sent as x-api-key: Caddy's access log copies the headers before
	// any handler runs and redacts only Authorization, so the filter the
	// README recommends must keep the key out of it.
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/v1/models", nil)
	req.Header.Set("x-api-key", "sk-a")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("models with x-api-key: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	var lines []map[string]any
	for deadline := time.Now().Add(2 * time.Second); len(lines) < 3 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		raw, _ := os.ReadFile(accessLog)
		lines = lines[:0]
		for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil {
				lines = append(lines, m)
			}
		}
	}
	if len(lines) < 3 {
		t.Fatalf("access log has %d lines", len(lines))
	}
	// Lines are written as handlers finish, not as clients see their
	// answers end, so they are told apart by their URI.
	for _, line := range lines {
		req, _ := line["request"].(map[string]any)
		if req["uri"] == "/v1/chat/completions" && fmt.Sprint(line["llm_tokens"]) != "7" {
			t.Errorf("access log line %v", line)
		}
	}
	for _, line := range lines {
		if line["llm_key"] == "" || line["user"] != "alice" {
			t.Errorf("access log line %v", line)
		}
		if strings.Contains(fmt.Sprint(line), "sk-a") {
			t.Errorf("access log carries the client key: %v", line)
		}
	}
}

type errorBody struct {
	Error struct {
		Message, Type, Code string
	}
}

func post(t *testing.T, url, key, body string) (int, errorBody) {
	return do(t, http.MethodPost, url, key, body)
}

func get(t *testing.T, url, key string) (int, errorBody) {
	return do(t, http.MethodGet, url, key, "")
}

func do(t *testing.T, method, url, key, body string) (int, errorBody) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out errorBody
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: body is not JSON: %v", method, url, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return resp.StatusCode, out
}
