package fakellm_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/genai"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

func geminiClient(t *testing.T, s *fakellm.Server, key string) (*genai.Client, *httptest.Server) {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	c, err := genai.NewClient(context.Background(), &genai.ClientConfig{
		APIKey:      key,
		Backend:     genai.BackendGeminiAPI,
		HTTPOptions: genai.HTTPOptions{BaseURL: ts.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, ts
}

var weatherDecl = &genai.FunctionDeclaration{
	Name:                 "get_weather",
	Description:          "Weather for a city.",
	ParametersJsonSchema: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "additionalProperties": false},
}

func TestGeminiGenerateContent(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 3, CachedTokens: 50}}
	c, _ := geminiClient(t, fake, testKey)
	resp, err := c.Models.GenerateContent(context.Background(), "gemini-test", genai.Text("four words right here"), &genai.GenerateContentConfig{
		SystemInstruction: genai.NewContentFromText("Be brief.", genai.RoleUser),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text() != "chunk0 chunk1 chunk2" || resp.Candidates[0].FinishReason != genai.FinishReasonStop {
		t.Errorf("text %q finish %q", resp.Text(), resp.Candidates[0].FinishReason)
	}
	u := resp.UsageMetadata
	if u.PromptTokenCount != 56 || u.CandidatesTokenCount != 3 || u.TotalTokenCount != 59 || u.CachedContentTokenCount != 50 {
		t.Errorf("usage = %+v, want 6 words + 50 cached in, 3 out", u)
	}
	req, _ := fake.LastRequest()
	if req.Path != "/v1beta/models/gemini-test:generateContent" || req.Header.Get("x-goog-api-key") != testKey || req.Model != "gemini-test" {
		t.Errorf("recorded %s key %q model %q", req.Path, req.Header.Get("x-goog-api-key"), req.Model)
	}
}

func TestGeminiStreamWithThoughtsAndFunctionCall(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 2, ToolCall: &fakellm.ToolCall{Arguments: `{"city":"Pune"}`}}}
	c, _ := geminiClient(t, fake, testKey)
	config := &genai.GenerateContentConfig{
		Tools:          []*genai.Tool{{FunctionDeclarations: []*genai.FunctionDeclaration{weatherDecl}}},
		ThinkingConfig: &genai.ThinkingConfig{IncludeThoughts: true},
	}
	contents := genai.Text("weather in Pune?")
	var text, thoughts strings.Builder
	var call *genai.FunctionCall
	var last *genai.GenerateContentResponse
	chunks := 0
	for resp, err := range c.Models.GenerateContentStream(context.Background(), "gemini-test", contents, config) {
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		last = resp
		for _, p := range resp.Candidates[0].Content.Parts {
			switch {
			case p.Thought:
				thoughts.WriteString(p.Text)
			case p.FunctionCall != nil:
				call = p.FunctionCall
			default:
				text.WriteString(p.Text)
			}
		}
	}
	if chunks != 4 || thoughts.String() == "" || text.String() != "chunk0 chunk1" {
		t.Errorf("%d chunks, thoughts %q, text %q", chunks, thoughts.String(), text.String())
	}
	if call == nil || call.Name != "get_weather" || call.Args["city"] != "Pune" {
		t.Fatalf("function call = %+v", call)
	}
	if last.Candidates[0].FinishReason != genai.FinishReasonStop || last.UsageMetadata.CandidatesTokenCount != 3 || last.UsageMetadata.ThoughtsTokenCount != 1 {
		t.Errorf("last chunk: finish %q usage %+v", last.Candidates[0].FinishReason, last.UsageMetadata)
	}
	req, _ := fake.LastRequest()
	if req.RawQuery != "alt=sse" || !req.Stream {
		t.Errorf("query %q stream %v", req.RawQuery, req.Stream)
	}

	// The function's response ends the loop with text.
	contents = append(contents, genai.NewContentFromFunctionCall(call.Name, call.Args, genai.RoleModel),
		genai.NewContentFromFunctionResponse(call.Name, map[string]any{"sky": "clear"}, genai.RoleUser))
	resp, err := c.Models.GenerateContent(context.Background(), "gemini-test", contents, config)
	if err != nil {
		t.Fatal(err)
	}
	if resp.FunctionCalls() != nil || resp.Text() != "chunk0 chunk1" {
		t.Errorf("after the function response: calls %v text %q", resp.FunctionCalls(), resp.Text())
	}
}

func TestGeminiErrors(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	c, ts := geminiClient(t, fake, testKey)
	for _, tc := range []struct {
		status int
		name   string
	}{{429, "RESOURCE_EXHAUSTED"}, {503, "UNAVAILABLE"}, {500, "INTERNAL"}} {
		fake.SetBehavior(fakellm.Behavior{Status: tc.status})
		_, err := c.Models.GenerateContent(context.Background(), "g", genai.Text("x"), nil)
		var apiErr genai.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != tc.status || apiErr.Status != tc.name {
			t.Errorf("status %d: %v", tc.status, err)
		}
	}
	fake.SetBehavior(fakellm.Behavior{})

	bad, _ := geminiClient(t, fake, "wrong-key")
	_, err := bad.Models.GenerateContent(context.Background(), "g", genai.Text("x"), nil)
	var apiErr genai.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != 400 || !strings.Contains(apiErr.Message, "API key not valid") {
		t.Errorf("wrong key: %v", err)
	}

	// Gemini's "parameters" take an OpenAPI subset: JSON Schema keywords
	// outside it are refused.
	resp, body := postHeaders(t, ts, "/v1beta/models/g:generateContent", map[string]string{"x-goog-api-key": testKey},
		`{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"object","additionalProperties":false}}}}]}]}`)
	if resp.StatusCode != 400 || !strings.Contains(body, `additionalProperties`) || !strings.Contains(body, "INVALID_ARGUMENT") {
		t.Errorf("schema with additionalProperties: %d %s", resp.StatusCode, body)
	}
}

func TestGeminiFaults(t *testing.T) {
	fake := &fakellm.Server{Behavior: fakellm.Behavior{Chunks: 4, DropAfter: 2, NoUsage: true}}
	c, ts := geminiClient(t, fake, "k")
	var text strings.Builder
	var streamErr error
	for resp, err := range c.Models.GenerateContentStream(context.Background(), "g", genai.Text("x"), nil) {
		if err != nil {
			streamErr = err
			break
		}
		if resp.UsageMetadata != nil {
			t.Errorf("NoUsage chunk has usage %+v", resp.UsageMetadata)
		}
		text.WriteString(resp.Text())
	}
	if streamErr == nil || text.String() != "chunk0 chunk1" {
		t.Errorf("dropped stream: err %v, text %q", streamErr, text.String())
	}

	// Without alt=sse the stream is one JSON array, written as it goes.
	fake.SetBehavior(fakellm.Behavior{Chunks: 2})
	resp, body := postHeaders(t, ts, "/v1beta/models/g:streamGenerateContent", nil, `{"contents":[{"parts":[{"text":"x"}]}]}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "[{") || !strings.HasSuffix(body, "}]") || strings.Count(body, `"text"`) != 2 {
		t.Errorf("array stream: %d %s", resp.StatusCode, body)
	}
	resp, body = postHeaders(t, ts, "/v1beta/models/g:countTokens", nil, `{"contents":[{"parts":[{"text":"a b c"}]}]}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"totalTokens":3`) {
		t.Errorf("countTokens: %d %s", resp.StatusCode, body)
	}
}
