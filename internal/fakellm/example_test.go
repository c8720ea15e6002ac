package fakellm_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// A test serves the fake with httptest, points a client (or the gateway) at
// it, and then asks the fake what reached it.
func Example() {
	fake := &fakellm.Server{APIKey: "sk-upstream", Behavior: fakellm.Behavior{Chunks: 3}}
	ts := httptest.NewServer(fake)
	defer ts.Close()

	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1"), option.WithAPIKey("sk-upstream"))
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello there")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Choices[0].Message.Content)
	fmt.Println(resp.Usage.PromptTokens, resp.Usage.CompletionTokens, resp.Usage.TotalTokens)

	req, _ := fake.LastRequest()
	fmt.Println(req.Method, req.Path, req.Model, req.Header.Get("Authorization"))
	// Output:
	// chunk0 chunk1 chunk2
	// 2 3 5
	// POST /v1/chat/completions gpt-4o-mini Bearer sk-upstream
}

// Behaviors change while the server serves, for every model or for one.
func ExampleServer_SetModelBehavior() {
	fake := &fakellm.Server{}
	ts := httptest.NewServer(fake)
	defer ts.Close()
	fake.SetModelBehavior("busy-model", fakellm.Behavior{Status: 429})

	client := openai.NewClient(option.WithBaseURL(ts.URL), option.WithAPIKey("any"), option.WithMaxRetries(0))
	for _, model := range []string{"busy-model", "other-model"} {
		_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		fmt.Println(model, err)
	}
	// Output:
	// busy-model OpenAI API error: 429 Too Many Requests
	// other-model <nil>
}
