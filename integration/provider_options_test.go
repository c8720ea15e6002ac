package integration

import (
	"context"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// providerOptionsSite sets each translated provider's options in its
// upstream block, beside the upstream's own subdirectives.
const providerOptionsSite = `:{PORT} {
	llm_auth {
		static {
			key sk-opts-alice {
				user alice
			}
		}
	}
	llm_route {
		model gpt-4o {
			upstream azure {UPSTREAM} ` + upstreamKey + ` {
				deployment prod-4o
				api_version 2025-01-01-preview
				header X-Team ml
			}
		}
		model claude {
			upstream anthropic {UPSTREAM} ` + upstreamKey + ` {
				model claude-sonnet-4-5
				version 2024-02-02
				beta prompt-caching-2024-07-31
				beta token-efficient-tools-2025-02-19
			}
		}
	}
}
`

// TestProviderOptions: provider options set in the Caddyfile reach the
// upstream: Azure's deployment and api-version in the URL, Anthropic's
// version and beta flags in its headers.
func TestProviderOptions(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 2}}
	g := start(t, fake, providerOptionsSite)
	c := client(g, "sk-opts-alice")
	ask := func(model string) fakellm.Request {
		t.Helper()
		resp, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
		})
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		if resp.Choices[0].Message.Content != "chunk0 chunk1" {
			t.Errorf("%s: reply %q", model, resp.Choices[0].Message.Content)
		}
		r, _ := fake.LastRequest()
		return r
	}

	r := ask("gpt-4o")
	if r.Path != "/v1/openai/deployments/prod-4o/chat/completions" || r.RawQuery != "api-version=2025-01-01-preview" {
		t.Errorf("azure upstream got %s?%s", r.Path, r.RawQuery)
	}
	if r.Header.Get("api-key") != upstreamKey || r.Header.Get("X-Team") != "ml" {
		t.Errorf("azure upstream headers %v", r.Header)
	}

	r = ask("claude")
	if r.Path != "/v1/messages" || r.Model != "claude-sonnet-4-5" {
		t.Errorf("anthropic upstream got %s for model %q", r.Path, r.Model)
	}
	if v, beta := r.Header.Get("anthropic-version"), r.Header.Get("anthropic-beta"); v != "2024-02-02" || beta != "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19" {
		t.Errorf("anthropic upstream got version %q, beta %q", v, beta)
	}
}
