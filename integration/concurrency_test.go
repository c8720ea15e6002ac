package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
)

// TestConcurrentClients runs many clients at once, streamed and not, two
// keys and two upstream names, and checks every answer and every record:
// nothing shared between requests may leak from one into another.
func TestConcurrentClients(t *testing.T) {
	g := start(t, nil, teamSite)
	const clients, each = 16, 6
	keys := map[string]string{"alice": "sk-team-alice", "bob": "sk-team-bob"}
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for i := range clients {
		user := []string{"alice", "bob"}[i%2]
		c := client(g, keys[user])
		wg.Go(func() {
			for j := range each {
				// i+j+1 words: each request has its own prompt_tokens.
				prompt := ""
				for k := range i + j + 1 {
					prompt += fmt.Sprint(" w", k)
				}
				p := chat("gpt-4o-mini", prompt)
				if j%2 == 0 {
					resp, err := c.Chat.Completions.New(context.Background(), p)
					if err != nil {
						errs <- err
						continue
					}
					if resp.Usage.PromptTokens != int64(i+j+1) {
						errs <- fmt.Errorf("client %d request %d got prompt_tokens %d", i, j, resp.Usage.PromptTokens)
					}
					continue
				}
				p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				stream := c.Chat.Completions.NewStreaming(context.Background(), p)
				var acc openai.ChatCompletionAccumulator
				for stream.Next() {
					acc.AddChunk(stream.Current())
				}
				if err := stream.Err(); err != nil {
					errs <- err
					continue
				}
				if acc.Usage.PromptTokens != int64(i+j+1) || acc.Choices[0].Message.Content != "chunk0 chunk1 chunk2 chunk3 chunk4" {
					errs <- fmt.Errorf("client %d request %d got usage %+v, content %q", i, j, acc.Usage, acc.Choices[0].Message.Content)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// One record per request, each with its own user and tokens.
	lines := g.StatsLines(t, clients*each)
	if len(lines) != clients*each {
		t.Fatalf("%d records for %d requests", len(lines), clients*each)
	}
	want := map[string]float64{}
	for i := range clients {
		for j := range each {
			want[[]string{"alice", "bob"}[i%2]] += float64(i + j + 1)
		}
	}
	got := map[string]float64{}
	for _, l := range lines {
		if l["status"] != float64(200) || l["usage_source"] != "upstream" {
			t.Errorf("record %v", l)
		}
		got[l["user"].(string)] += l["prompt_tokens"].(float64)
	}
	if got["alice"] != want["alice"] || got["bob"] != want["bob"] {
		t.Fatalf("prompt tokens per user %v, want %v", got, want)
	}
}
