package fakellm_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

func azureClient(t *testing.T, s *fakellm.Server, key string) (openai.Client, *httptest.Server) {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return openai.NewClient(azure.WithEndpoint(ts.URL, "2024-10-21"), azure.WithAPIKey(key), azure.WithUnsafeAllowHTTP(), option.WithMaxRetries(0)), ts
}

func TestAzureChat(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 3}}
	c, _ := azureClient(t, fake, testKey)
	resp, err := c.Chat.Completions.New(context.Background(), chatParams("my-gpt4o-deployment", "hello there"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "chunk0 chunk1 chunk2" || resp.Usage.PromptTokens != 2 {
		t.Errorf("reply %q usage %+v", resp.Choices[0].Message.Content, resp.Usage)
	}
	req, _ := fake.LastRequest()
	if req.Path != "/openai/deployments/my-gpt4o-deployment/chat/completions" || req.RawQuery != "api-version=2024-10-21" ||
		req.Header.Get("Api-Key") != testKey || req.Header.Get("Authorization") != "" || req.Model != "my-gpt4o-deployment" {
		t.Errorf("recorded %s?%s api-key %q authorization %q model %q", req.Path, req.RawQuery, req.Header.Get("Api-Key"), req.Header.Get("Authorization"), req.Model)
	}

	stream := c.Chat.Completions.NewStreaming(context.Background(), chatParams("my-gpt4o-deployment", "hi"))
	var text strings.Builder
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil || text.String() != "chunk0 chunk1 chunk2" {
		t.Errorf("stream %q err %v", text.String(), err)
	}
}

func TestAzureErrors(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	c, ts := azureClient(t, fake, "wrong")
	_, err := c.Chat.Completions.New(context.Background(), chatParams("d", "x"))
	if e := apiError(t, err); e.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: %v", err)
	}
	resp, body := postHeaders(t, ts, "/openai/deployments/d/chat/completions", map[string]string{"api-key": testKey}, `{"messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "Resource not found") {
		t.Errorf("no api-version: %d %s", resp.StatusCode, body)
	}
	fake.SetModelBehavior("busy", fakellm.Behavior{Status: 429})
	good, _ := azureClient(t, fake, testKey)
	_, err = good.Chat.Completions.New(context.Background(), chatParams("busy", "x"))
	if e := apiError(t, err); e.StatusCode != http.StatusTooManyRequests {
		t.Errorf("busy deployment: %v", err)
	}
}
