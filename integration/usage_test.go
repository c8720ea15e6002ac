package integration

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/wire/tokens"
)

// The model the teamSite's gpt-4o-mini is sent upstream as: its encoding
// is the one the gateway counts with.
const countModel = "gpt-4o-mini-2024-07-18"

// within fails unless the recorded count is within 10% of want.
func within(t *testing.T, what string, got any, want int) {
	t.Helper()
	n, _ := got.(float64)
	if want == 0 || math.Abs(n-float64(want)) > 0.1*float64(want) {
		t.Errorf("%s = %v, want %d ±10%%", what, got, want)
	}
}

// TestEstimatedUsage: an upstream that reports no usage gets its usage
// counted, unstreamed and streamed, close to the tokenizer's count of the
// same text.
func TestEstimatedUsage(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{NoUsage: true, Chunks: 40}}
	g := start(t, fake, teamSite)
	ctx := context.Background()
	prompt := strings.Repeat("the quick brown fox jumps over the lazy dog, ", 20)
	promptTokens := tokens.Count(countModel, prompt)
	c := client(g, "sk-team-alice")

	resp, err := c.Chat.Completions.New(ctx, chat("gpt-4o-mini", prompt))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.TotalTokens != 0 {
		t.Fatalf("the fake reported usage %+v", resp.Usage)
	}
	line := g.LastStats(t, 1)
	if line["usage_source"] != "estimated" {
		t.Fatalf("stats log %v", line)
	}
	within(t, "prompt_tokens", line["prompt_tokens"], promptTokens)
	within(t, "completion_tokens", line["completion_tokens"], tokens.Count(countModel, resp.Choices[0].Message.Content))

	params := chat("gpt-4o-mini", prompt)
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	line = g.LastStats(t, 2)
	if line["usage_source"] != "estimated" || line["stream"] != true {
		t.Fatalf("stats log %v", line)
	}
	within(t, "stream prompt_tokens", line["prompt_tokens"], promptTokens)
	within(t, "stream completion_tokens", line["completion_tokens"], tokens.Count(countModel, text.String()))
}

// TestPartialUsage: a stream cut by the upstream and one cut by the client
// each end in one record, marked partial, with what was generated so far.
func TestPartialUsage(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 20, DropAfter: 8}}
	g := start(t, fake, teamSite)
	c := client(g, "sk-team-alice")

	stream := c.Chat.Completions.NewStreaming(context.Background(), chat("gpt-4o-mini", "hi"))
	var text strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	if stream.Err() == nil {
		t.Fatal("the SDK saw a cut stream as complete")
	}
	lines := g.StatsLines(t, 1)
	line := lines[0]
	if line["usage_source"] != "partial" || line["truncated"] != true {
		t.Fatalf("stats log %v", line)
	}
	within(t, "cut completion_tokens", line["completion_tokens"], tokens.Count(countModel, text.String()))

	fake.SetBehavior(fakellm.Behavior{Chunks: 50, ChunkDelay: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	stream = c.Chat.Completions.NewStreaming(ctx, chat("gpt-4o-mini", "hi"))
	for i := 0; i < 3; i++ {
		if !stream.Next() {
			t.Fatalf("no chunk %d: %v", i, stream.Err())
		}
	}
	cancel()
	_ = stream.Close()
	lines = g.StatsLines(t, 2)
	line = lines[1]
	if line["usage_source"] != "partial" || line["client_aborted"] != true {
		t.Fatalf("stats log %v", line)
	}
	if n, _ := line["completion_tokens"].(float64); n <= 0 || n >= 50 {
		t.Fatalf("completion_tokens %v after a few of 50 chunks", line["completion_tokens"])
	}
	// Exactly one record per call, even after the client left.
	time.Sleep(200 * time.Millisecond)
	if n := len(g.StatsLines(t, 2)); n != 2 {
		t.Fatalf("%d stats lines for 2 calls", n)
	}
}

// TestLargeAnswerRelayed: an unstreamed answer over the gateway's 1 MiB hold
// passes through whole, as it comes, and its usage is read from its end.
func TestLargeAnswerRelayed(t *testing.T) {
	const chunks = 300_000 // about 2.4 MB of content
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: chunks}}
	g := start(t, fake, teamSite)
	resp, err := client(g, "sk-team-alice").Chat.Completions.New(context.Background(), chat("gpt-4o-mini", "a long answer"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Choices[0].Message.Content); n < 2<<20 || !strings.HasSuffix(resp.Choices[0].Message.Content, "chunk299999") {
		t.Fatalf("answer of %d bytes ending %q", n, resp.Choices[0].Message.Content[max(0, n-20):])
	}
	line := g.LastStats(t, 1)
	if line["usage_source"] != "upstream" || line["completion_tokens"] != float64(chunks) || line["status"] != float64(200) {
		t.Fatalf("stats log %v", line)
	}
}
