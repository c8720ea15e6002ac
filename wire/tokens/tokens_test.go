package tokens_test

import (
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/tokens"
)

func TestEncodingFor(t *testing.T) {
	for model, want := range map[string]string{
		"gpt-4o-mini": tokens.O200k, "openai/gpt-4.1": tokens.O200k, "GPT-5-codex": tokens.O200k, "o3-mini": tokens.O200k,
		"gpt-4-turbo": tokens.CL100k, "gpt-3.5-turbo": tokens.CL100k, "claude-sonnet-4-5": tokens.CL100k, "gemini-2.5-flash": tokens.CL100k, "": tokens.CL100k,
	} {
		if got := tokens.EncodingFor(model); got != want {
			t.Errorf("EncodingFor(%q) = %s, want %s", model, got, want)
		}
	}
}

func TestCount(t *testing.T) {
	// OpenAI's own example: "tiktoken is great!" is 6 cl100k_base tokens.
	if n := tokens.Count("gpt-4", "tiktoken is great!"); n != 6 {
		t.Errorf("cl100k count = %d, want 6", n)
	}
	if n := tokens.Count("gpt-4o", "hello world"); n != 2 {
		t.Errorf("o200k count of 'hello world' = %d, want 2", n)
	}
	if n := tokens.Count("gpt-4o", ""); n != 0 {
		t.Errorf("empty text = %d tokens", n)
	}
	// Special-token text in user input is ordinary text.
	if n := tokens.Count("gpt-4o", "<|endoftext|>"); n < 2 {
		t.Errorf("<|endoftext|> counted as %d token(s), want it read as text", n)
	}
}

func TestPromptAndCompletion(t *testing.T) {
	req := &wire.Request{
		System: []wire.Part{{Type: wire.PartText, Text: "Be terse."}},
		Messages: []wire.Message{
			{Role: wire.RoleUser, Content: []wire.Part{{Type: wire.PartText, Text: "What is two plus two?"}, {Type: wire.PartImage, Image: &wire.Image{URL: "https://x/y.png"}}}},
		},
		Tools: []wire.Tool{{Name: "calc", Description: "Adds numbers."}},
	}
	n := tokens.Prompt("gpt-4o", req)
	text := tokens.Count("gpt-4o", "Be terse.") + tokens.Count("gpt-4o", "What is two plus two?")
	if n <= text+85 || n > text+85+40 {
		t.Errorf("prompt estimate %d for %d text tokens and an image", n, text)
	}
	resp := &wire.Response{Content: []wire.Part{{Type: wire.PartText, Text: "Four."}, {Type: wire.PartToolCall, ToolCall: &wire.ToolCall{Name: "calc", Arguments: `{"a":2,"b":2}`}}}}
	if c := tokens.Completion("gpt-4o", resp); c < 8 || c > 20 {
		t.Errorf("completion estimate %d", c)
	}
}

var benchText = strings.Repeat("Streams go to the client as they arrive; usage is read from the stream as it passes. ", 12)

func BenchmarkCount(b *testing.B) {
	for _, model := range []string{"gpt-4o", "claude-sonnet-4-5"} {
		tokens.Count(model, "warm up") // load the encoding outside the timing
		b.Run(tokens.EncodingFor(model), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(benchText)))
			for b.Loop() {
				tokens.Count(model, benchText)
			}
		})
	}
}

func TestPreload(t *testing.T) {
	tokens.Preload("gpt-4o", "claude-opus-4-1")
	if n := tokens.Count("claude-opus-4-1", "hello world"); n != 2 {
		t.Errorf("count after Preload = %d", n)
	}
}
