package fakellm_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

const testKey = "sk-test-upstream-key-0123"

// start serves s and returns an official SDK client for it, which does not
// retry so that every call is one request.
func start(t *testing.T, s *fakellm.Server, opts ...option.RequestOption) (openai.Client, *httptest.Server) {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	opts = append([]option.RequestOption{
		option.WithBaseURL(ts.URL + "/v1"),
		option.WithAPIKey(testKey),
		option.WithMaxRetries(0),
	}, opts...)
	return openai.NewClient(opts...), ts
}

// eventually waits for cond, which the server makes true asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func chatParams(model string, messages ...string) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{Model: model}
	for _, m := range messages {
		p.Messages = append(p.Messages, openai.UserMessage(m))
	}
	return p
}

func apiError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v (%T), want an *openai.Error", err, err)
	}
	return e
}

func TestChat(t *testing.T) {
	client, _ := start(t, &fakellm.Server{APIKey: testKey})
	p := chatParams("my-model", "Say hello to me")
	p.Messages = append([]openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You are terse.")}, p.Messages...)
	resp, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" || resp.Model != "my-model" || resp.Created == 0 {
		t.Errorf("id %q, object %q, model %q, created %d", resp.ID, resp.Object, resp.Model, resp.Created)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("%d choices", len(resp.Choices))
	}
	c := resp.Choices[0]
	if c.Index != 0 || c.Message.Role != "assistant" || c.Message.Content != "chunk0 chunk1 chunk2 chunk3 chunk4" || c.FinishReason != "stop" {
		t.Errorf("choice %+v", c)
	}
	u := resp.Usage
	if u.PromptTokens != 7 || u.CompletionTokens != 5 || u.TotalTokens != 12 {
		t.Errorf("usage %d+%d=%d, want 7+5=12", u.PromptTokens, u.CompletionTokens, u.TotalTokens)
	}
}

func TestChatContentParts(t *testing.T) {
	client, _ := start(t, &fakellm.Server{})
	p := openai.ChatCompletionNewParams{
		Model: "m",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("one two"),
				openai.TextContentPart("three"),
			}),
		},
	}
	resp, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.PromptTokens != 3 {
		t.Errorf("prompt_tokens %d, want 3", resp.Usage.PromptTokens)
	}
}

func TestChatStream(t *testing.T) {
	for _, includeUsage := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "include_usage"}[includeUsage], func(t *testing.T) {
			fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 3}}
			client, _ := start(t, fake)
			p := chatParams("gpt-stream", "hello there")
			if includeUsage {
				p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			stream := client.Chat.Completions.NewStreaming(context.Background(), p)
			var chunks []openai.ChatCompletionChunk
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				chunks = append(chunks, stream.Current())
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}

			// role, 3 pieces, finish, and the usage chunk if asked for.
			want := 5
			if includeUsage {
				want = 6
			}
			if len(chunks) != want {
				t.Fatalf("%d chunks, want %d", len(chunks), want)
			}
			for i, c := range chunks {
				if c.ID != chunks[0].ID || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion.chunk" || c.Model != "gpt-stream" {
					t.Errorf("chunk %d: id %q object %q model %q", i, c.ID, c.Object, c.Model)
				}
				hasUsage := strings.Contains(c.RawJSON(), `"usage"`)
				if hasUsage != includeUsage {
					t.Errorf("chunk %d has usage %v: %s", i, hasUsage, c.RawJSON())
				}
				last := i == len(chunks)-1
				if includeUsage && !last && !strings.Contains(c.RawJSON(), `"usage":null`) {
					t.Errorf("chunk %d: usage is not null: %s", i, c.RawJSON())
				}
			}
			if d := chunks[0].Choices[0].Delta; d.Role != "assistant" || d.Content != "" {
				t.Errorf("first delta %+v", d)
			}
			for i, c := range chunks[1:4] {
				if c.Choices[0].FinishReason != "" || c.Choices[0].Delta.Content == "" {
					t.Errorf("content chunk %d: %s", i, c.RawJSON())
				}
			}
			if f := chunks[4].Choices[0]; f.FinishReason != "stop" || f.Delta.Content != "" {
				t.Errorf("finish chunk %s", chunks[4].RawJSON())
			}
			if got := acc.Choices[0].Message.Content; got != "chunk0 chunk1 chunk2" {
				t.Errorf("content %q", got)
			}
			if includeUsage {
				u := chunks[5]
				if len(u.Choices) != 0 || !strings.Contains(u.RawJSON(), `"choices":[]`) {
					t.Errorf("usage chunk has choices: %s", u.RawJSON())
				}
				if u.Usage.PromptTokens != 2 || u.Usage.CompletionTokens != 3 || u.Usage.TotalTokens != 5 {
					t.Errorf("usage %s", u.RawJSON())
				}
				if acc.Usage.TotalTokens != 5 {
					t.Errorf("accumulated usage %d", acc.Usage.TotalTokens)
				}
			}
			req, _ := fake.LastRequest()
			if !req.Stream || req.IncludeUsage != includeUsage {
				t.Errorf("recorded stream %v include_usage %v", req.Stream, req.IncludeUsage)
			}
		})
	}
}

func TestMaxTokens(t *testing.T) {
	client, _ := start(t, &fakellm.Server{})
	p := chatParams("m", "hi")
	p.MaxCompletionTokens = openai.Int(2)
	resp, err := client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Choices[0]; c.Message.Content != "chunk0 chunk1" || c.FinishReason != "length" || resp.Usage.CompletionTokens != 2 {
		t.Errorf("content %q, finish %q, completion_tokens %d", c.Message.Content, c.FinishReason, resp.Usage.CompletionTokens)
	}

	lp := openai.CompletionNewParams{Model: "m", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}, MaxTokens: openai.Int(1)}
	stream := client.Completions.NewStreaming(context.Background(), lp)
	var text strings.Builder
	var finish string
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			text.WriteString(c.Text)
			if c.FinishReason != "" {
				finish = string(c.FinishReason)
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "chunk0" || finish != "length" {
		t.Errorf("legacy stream %q, finish %q", text.String(), finish)
	}
}

func TestCompletion(t *testing.T) {
	client, _ := start(t, &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 4}})
	p := openai.CompletionNewParams{
		Model:  "gpt-3.5-turbo-instruct",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("one two three")},
	}
	resp, err := client.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.ID, "cmpl-") || resp.Object != "text_completion" || resp.Model != "gpt-3.5-turbo-instruct" {
		t.Errorf("id %q object %q model %q", resp.ID, resp.Object, resp.Model)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Text != "chunk0 chunk1 chunk2 chunk3" || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("choices %s", resp.RawJSON())
	}
	if u := resp.Usage; u.PromptTokens != 3 || u.CompletionTokens != 4 || u.TotalTokens != 7 {
		t.Errorf("usage %s", resp.RawJSON())
	}

	p.Prompt = openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{1, 2, 3, 4, 5}}
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Completions.NewStreaming(context.Background(), p)
	var chunks []openai.Completion
	for stream.Next() {
		chunks = append(chunks, stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	// 4 pieces, finish, usage.
	if len(chunks) != 6 {
		t.Fatalf("%d chunks", len(chunks))
	}
	var text strings.Builder
	for _, c := range chunks[:5] {
		if c.Object != "text_completion" || c.ID != chunks[0].ID || len(c.Choices) != 1 {
			t.Errorf("chunk %s", c.RawJSON())
		}
		text.WriteString(c.Choices[0].Text)
	}
	if text.String() != "chunk0 chunk1 chunk2 chunk3" || chunks[4].Choices[0].FinishReason != "stop" {
		t.Errorf("text %q, finish %q", text.String(), chunks[4].Choices[0].FinishReason)
	}
	if u := chunks[5]; len(u.Choices) != 0 || u.Usage.PromptTokens != 5 || u.Usage.CompletionTokens != 4 {
		t.Errorf("usage chunk %s", u.RawJSON())
	}
}

func TestNoUsage(t *testing.T) {
	client, _ := start(t, &fakellm.Server{Behavior: fakellm.Behavior{NoUsage: true}})
	resp, err := client.Chat.Completions.New(context.Background(), chatParams("m", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(resp.RawJSON(), "usage") {
		t.Errorf("reply has usage: %s", resp.RawJSON())
	}

	p := chatParams("m", "hi")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(context.Background(), p)
	n := 0
	for stream.Next() {
		n++
		if raw := stream.Current().RawJSON(); strings.Contains(raw, "usage") {
			t.Errorf("chunk has usage: %s", raw)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 7 {
		t.Errorf("%d chunks, want role + 5 + finish", n)
	}

	e, err := client.Embeddings.New(context.Background(), openai.EmbeddingNewParams{Model: "e", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.RawJSON(), "usage") {
		t.Errorf("embeddings have usage: %s", e.RawJSON())
	}
}

func norm(v []float64) float64 {
	var n float64
	for _, f := range v {
		n += f * f
	}
	return math.Sqrt(n)
}

func TestEmbeddings(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	client, _ := start(t, fake)
	ctx := context.Background()
	embed := func(p openai.EmbeddingNewParams) *openai.CreateEmbeddingResponse {
		t.Helper()
		resp, err := client.Embeddings.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	text := openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello embedding world")}

	def := embed(openai.EmbeddingNewParams{Model: "text-embedding-3-small", Input: text})
	req, _ := fake.LastRequest()
	t.Logf("the SDK sends by default: %s", req.Body)
	if def.Object != "list" || def.Model != "text-embedding-3-small" || len(def.Data) != 1 {
		t.Fatalf("reply %s", def.RawJSON())
	}
	if d := def.Data[0]; d.Object != "embedding" || d.Index != 0 || len(d.Embedding) != fakellm.DefaultDimensions {
		t.Errorf("embedding %s", d.RawJSON())
	}
	if n := norm(def.Data[0].Embedding); math.Abs(n-1) > 1e-6 {
		t.Errorf("norm %v, want 1", n)
	}
	if def.Usage.PromptTokens != 3 || def.Usage.TotalTokens != 3 {
		t.Errorf("usage %s", def.RawJSON())
	}

	float := embed(openai.EmbeddingNewParams{Model: "text-embedding-3-small", Input: text, EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat})
	b64 := embed(openai.EmbeddingNewParams{Model: "text-embedding-3-small", Input: text, EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64})
	if raw := b64.Data[0].JSON.Embedding.Raw(); !strings.HasPrefix(raw, `"`) {
		t.Errorf("base64 embedding is not a string: %s", raw)
	}
	if raw := float.Data[0].JSON.Embedding.Raw(); !strings.HasPrefix(raw, `[`) {
		t.Errorf("float embedding is not an array: %s", raw)
	}
	if !slices.Equal(float.Data[0].Embedding, b64.Data[0].Embedding) || !slices.Equal(float.Data[0].Embedding, def.Data[0].Embedding) {
		t.Errorf("encodings differ:\nfloat  %v\nbase64 %v\ndefault %v", float.Data[0].Embedding, b64.Data[0].Embedding, def.Data[0].Embedding)
	}

	short := embed(openai.EmbeddingNewParams{Model: "text-embedding-3-small", Input: text, Dimensions: openai.Int(3), EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64})
	if got := short.Data[0].Embedding; len(got) != 3 || math.Abs(norm(got)-1) > 1e-6 {
		t.Errorf("3 dimensions: %v", got)
	}

	many := embed(openai.EmbeddingNewParams{Model: "text-embedding-3-small", Input: openai.EmbeddingNewParamsInputUnion{
		OfArrayOfStrings: []string{"a b", "hello embedding world", "c"},
	}})
	if len(many.Data) != 3 || many.Usage.PromptTokens != 6 {
		t.Fatalf("reply %s", many.RawJSON())
	}
	for i, d := range many.Data {
		if d.Index != int64(i) {
			t.Errorf("index %d at %d", d.Index, i)
		}
	}
	if !slices.Equal(many.Data[1].Embedding, def.Data[0].Embedding) {
		t.Error("the same input gave another vector")
	}
	if slices.Equal(many.Data[0].Embedding, many.Data[2].Embedding) {
		t.Error("different inputs gave the same vector")
	}
	other := embed(openai.EmbeddingNewParams{Model: "other-model", Input: text})
	if slices.Equal(other.Data[0].Embedding, def.Data[0].Embedding) {
		t.Error("different models gave the same vector")
	}

	tokens := embed(openai.EmbeddingNewParams{Model: "e", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokenArrays: [][]int64{{1, 2, 3}, {4}}}})
	if len(tokens.Data) != 2 || tokens.Usage.PromptTokens != 4 {
		t.Errorf("token arrays: %s", tokens.RawJSON())
	}
	one := embed(openai.EmbeddingNewParams{Model: "e", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokens: []int64{1, 2, 3}}})
	if len(one.Data) != 1 || !slices.Equal(one.Data[0].Embedding, tokens.Data[0].Embedding) {
		t.Errorf("token array: %s", one.RawJSON())
	}

	_, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "e", Input: text, Dimensions: openai.Int(0)})
	if e := apiError(t, err); e.StatusCode != 400 || e.Param != "dimensions" {
		t.Errorf("dimensions 0: %d %s", e.StatusCode, e.RawJSON())
	}
}

func TestModels(t *testing.T) {
	client, _ := start(t, &fakellm.Server{APIKey: testKey})
	page, err := client.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		if m.Object != "model" || m.OwnedBy != "fakellm" || m.Created == 0 {
			t.Errorf("model %s", m.RawJSON())
		}
		ids = append(ids, m.ID)
	}
	if want := []string{"gpt-4o-mini", "gpt-4o", "text-embedding-3-small"}; !slices.Equal(ids, want) {
		t.Errorf("models %v, want %v", ids, want)
	}

	client, _ = start(t, &fakellm.Server{Models: []string{"a", "org/b"}})
	page, err = client.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[1].ID != "org/b" {
		t.Errorf("models %s", page.RawJSON())
	}
	m, err := client.Models.Get(context.Background(), "a")
	if err != nil || m.ID != "a" {
		t.Fatalf("get a: %v %v", m, err)
	}
	_, err = client.Models.Get(context.Background(), "missing")
	if e := apiError(t, err); e.StatusCode != 404 || e.Code != "model_not_found" {
		t.Errorf("get missing: %d %s", e.StatusCode, e.RawJSON())
	}
}

func TestAPIKey(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	_, ts := start(t, fake)
	wrong := "sk-wrong-key-98765"
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1"), option.WithAPIKey(wrong), option.WithMaxRetries(0))
	_, err := client.Chat.Completions.New(context.Background(), chatParams("m", "hi"))
	e := apiError(t, err)
	if e.StatusCode != 401 || e.Code != "invalid_api_key" || e.Type != "invalid_request_error" {
		t.Errorf("error %d %s", e.StatusCode, e.RawJSON())
	}
	if !strings.Contains(e.Message, "Incorrect API key provided: sk-***********8765.") || strings.Contains(e.Message, wrong) {
		t.Errorf("message %q", e.Message)
	}
	if req, _ := fake.LastRequest(); req.Header.Get("Authorization") != "Bearer "+wrong {
		t.Errorf("recorded Authorization %q", req.Header.Get("Authorization"))
	}

	for _, c := range []struct {
		auth string
		code int
	}{
		{"", 401},
		{"Bearer", 401},
		{"Basic " + testKey, 401},
		{"Bearer " + testKey, 200},
		{"bearer " + testKey, 200},
	} {
		req, _ := http.NewRequest("GET", ts.URL+"/v1/models", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Message string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("Authorization %q: status %d, want %d", c.auth, resp.StatusCode, c.code)
		}
		if c.code == 401 && !strings.HasPrefix(body.Error.Message, "You didn't provide an API key") && !strings.HasPrefix(body.Error.Message, "Incorrect API key") {
			t.Errorf("Authorization %q: message %q", c.auth, body.Error.Message)
		}
	}

	// Without APIKey any key, or none, is let in.
	open, _ := start(t, &fakellm.Server{}, option.WithAPIKey("anything"))
	if _, err := open.Chat.Completions.New(context.Background(), chatParams("m", "hi")); err != nil {
		t.Error(err)
	}
}

func TestStatus(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	client, _ := start(t, fake)
	ctx := context.Background()

	fake.SetBehavior(fakellm.Behavior{Status: 503})
	_, err := client.Chat.Completions.New(ctx, chatParams("m", "hi"))
	if e := apiError(t, err); e.StatusCode != 503 || e.Type != "server_error" || e.Message == "" {
		t.Errorf("503: %d %s", e.StatusCode, e.RawJSON())
	}
	stream := client.Chat.Completions.NewStreaming(ctx, chatParams("m", "hi"))
	if stream.Next() {
		t.Error("stream went on after 503")
	}
	if e := apiError(t, stream.Err()); e.StatusCode != 503 {
		t.Errorf("stream: %d", e.StatusCode)
	}
	_, err = client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "m", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	if e := apiError(t, err); e.StatusCode != 503 {
		t.Errorf("embeddings: %d", e.StatusCode)
	}

	fake.SetBehavior(fakellm.Behavior{})
	fake.SetModelBehavior("limited", fakellm.Behavior{Status: 429})
	_, err = client.Chat.Completions.New(ctx, chatParams("limited", "hi"))
	if e := apiError(t, err); e.StatusCode != 429 || e.Code != "rate_limit_exceeded" {
		t.Errorf("429: %d %s", e.StatusCode, e.RawJSON())
	}
	if _, err := client.Chat.Completions.New(ctx, chatParams("unlimited", "hi")); err != nil {
		t.Errorf("another model: %v", err)
	}
	fake.ClearModelBehavior("limited")
	if _, err := client.Chat.Completions.New(ctx, chatParams("limited", "hi")); err != nil {
		t.Errorf("after ClearModelBehavior: %v", err)
	}

	fake.SetModelBehavior("gone", fakellm.Behavior{Status: 404})
	_, err = client.Chat.Completions.New(ctx, chatParams("gone", "hi"))
	if e := apiError(t, err); e.StatusCode != 404 || e.Code != "model_not_found" || !strings.Contains(e.Message, "`gone`") {
		t.Errorf("404: %d %s", e.StatusCode, e.RawJSON())
	}

	fake.SetModelBehavior("raw", fakellm.Behavior{ErrorBody: `{"error":{"message":"custom","type":"x","param":null,"code":"y"}}`})
	_, err = client.Chat.Completions.New(ctx, chatParams("raw", "hi"))
	if e := apiError(t, err); e.StatusCode != 500 || e.Message != "custom" || e.Code != "y" {
		t.Errorf("raw body: %d %s", e.StatusCode, e.RawJSON())
	}
}

func TestDropAfter(t *testing.T) {
	fake := &fakellm.Server{Behavior: fakellm.Behavior{DropAfter: 2}}
	client, _ := start(t, fake)
	p := chatParams("m", "hi")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(context.Background(), p)
	var content strings.Builder
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			content.WriteString(c.Delta.Content)
			if c.FinishReason != "" {
				t.Errorf("finish reason %q in a dropped stream", c.FinishReason)
			}
		}
	}
	if stream.Err() == nil {
		t.Error("a dropped stream ended without error")
	}
	if content.String() != "chunk0 chunk1" {
		t.Errorf("content %q, want the 2 chunks before the drop", content.String())
	}

	if _, err := client.Chat.Completions.New(context.Background(), chatParams("m", "hi")); err == nil {
		t.Error("a dropped reply succeeded")
	} else if e := (*openai.Error)(nil); errors.As(err, &e) {
		t.Errorf("a dropped reply gave an HTTP status: %d", e.StatusCode)
	}

	// Dropping is the server's doing, not the client's.
	eventually(t, "handlers to end", func() bool { return fake.Active() == 0 })
	if n := fake.Cancelled(); n != 0 {
		t.Errorf("%d cancelled", n)
	}

	// A stream shorter than DropAfter ends normally.
	fake.SetBehavior(fakellm.Behavior{Chunks: 2, DropAfter: 3})
	stream = client.Chat.Completions.NewStreaming(context.Background(), chatParams("m", "hi"))
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Error(err)
	}
}

func TestChunkTiming(t *testing.T) {
	const delay = 80 * time.Millisecond
	client, _ := start(t, &fakellm.Server{Behavior: fakellm.Behavior{Chunks: 5, ChunkDelay: delay}})
	begin := time.Now()
	stream := client.Chat.Completions.NewStreaming(context.Background(), chatParams("m", "hi"))
	var first time.Duration
	for stream.Next() {
		if first == 0 && len(stream.Current().Choices) > 0 && stream.Current().Choices[0].Delta.Content != "" {
			first = time.Since(begin)
		}
	}
	total := time.Since(begin)
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if total < 5*delay {
		t.Errorf("stream took %v, want at least %v", total, 5*delay)
	}
	// The four later chunks each wait a delay after the first is sent, so
	// a first chunk sent as soon as written arrives well before the end,
	// however slow the machine (three delays leave room for the transit).
	if first < delay || total-first < 3*delay {
		t.Errorf("first content chunk after %v of %v: not sent as soon as written", first, total)
	}
}

func TestLatency(t *testing.T) {
	client, _ := start(t, &fakellm.Server{Behavior: fakellm.Behavior{Latency: 100 * time.Millisecond}})
	begin := time.Now()
	if _, err := client.Models.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 100*time.Millisecond {
		t.Errorf("answered after %v", d)
	}
}

func TestCancelled(t *testing.T) {
	fake := &fakellm.Server{Behavior: fakellm.Behavior{Latency: time.Minute}}
	client, _ := start(t, fake)

	// During Latency.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := client.Chat.Completions.New(ctx, chatParams("m", "hi")); err == nil {
		t.Fatal("no error")
	}
	eventually(t, "the first cancellation", func() bool { return fake.Cancelled() == 1 })

	// In the middle of a stream.
	fake.SetBehavior(fakellm.Behavior{Chunks: 1000, ChunkDelay: 10 * time.Millisecond})
	stream := client.Chat.Completions.NewStreaming(context.Background(), chatParams("m", "hi"))
	for i := 0; i < 3 && stream.Next(); i++ {
	}
	if fake.Active() != 1 {
		t.Errorf("%d active requests, want 1", fake.Active())
	}
	stream.Close()
	eventually(t, "the second cancellation", func() bool { return fake.Cancelled() == 2 })
	eventually(t, "handlers to end", func() bool { return fake.Active() == 0 })

	// A finished reply is not cancelled, however fast the client leaves.
	fake.SetBehavior(fakellm.Behavior{})
	stream = client.Chat.Completions.NewStreaming(context.Background(), chatParams("m", "hi"))
	for stream.Next() {
	}
	stream.Close()
	eventually(t, "handlers to end", func() bool { return fake.Active() == 0 })
	if n := fake.Cancelled(); n != 2 || fake.Count() != 3 {
		t.Errorf("cancelled %d of %d, want 2 of 3", n, fake.Count())
	}
}

func TestRecording(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	client, _ := start(t, fake, option.WithHeader("X-Test", "yes"))
	ctx := context.Background()
	before := time.Now()
	if _, err := client.Chat.Completions.New(ctx, chatParams("first", "hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "second", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}}); err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	if len(reqs) != 2 || fake.Count() != 2 {
		t.Fatalf("%d requests recorded, count %d", len(reqs), fake.Count())
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1/chat/completions" || r.Model != "first" || r.Stream || r.IncludeUsage {
		t.Errorf("request %+v", r)
	}
	if r.Header.Get("Authorization") != "Bearer "+testKey || r.Header.Get("X-Test") != "yes" || r.Host == "" {
		t.Errorf("headers %v, host %q", r.Header, r.Host)
	}
	var body struct {
		Model    string
		Messages []struct{ Role, Content string }
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Model != "first" || body.Messages[0].Content != "hi" {
		t.Errorf("body %s: %v", r.Body, err)
	}
	if r.Time.Before(before) || reqs[1].Time.Before(r.Time) {
		t.Errorf("times %v %v after %v", r.Time, reqs[1].Time, before)
	}
	if last, ok := fake.LastRequest(); !ok || last.Path != "/v1/embeddings" || last.Model != "second" {
		t.Errorf("last request %+v", last)
	}

	fake.Reset()
	if _, ok := fake.LastRequest(); ok || fake.Count() != 0 || len(fake.Requests()) != 0 {
		t.Error("Reset kept requests")
	}

}

func TestKeepRequests(t *testing.T) {
	fake := &fakellm.Server{KeepRequests: 2}
	client, _ := start(t, fake)
	for _, m := range []string{"a", "b", "c"} {
		if _, err := client.Chat.Completions.New(context.Background(), chatParams(m, "hi")); err != nil {
			t.Fatal(err)
		}
	}
	reqs := fake.Requests()
	if len(reqs) != 2 || reqs[0].Model != "b" || reqs[1].Model != "c" || fake.Count() != 3 {
		t.Errorf("kept %d requests, count %d", len(reqs), fake.Count())
	}

	fake = &fakellm.Server{KeepRequests: -1}
	client, _ = start(t, fake)
	if _, err := client.Chat.Completions.New(context.Background(), chatParams("m", "hi")); err != nil {
		t.Fatal(err)
	}
	if _, ok := fake.LastRequest(); ok || len(fake.Requests()) != 0 || fake.Count() != 1 {
		t.Errorf("kept requests, or did not count them")
	}
}

func TestWithoutV1(t *testing.T) {
	fake := &fakellm.Server{}
	_, ts := start(t, fake)
	client := openai.NewClient(option.WithBaseURL(ts.URL), option.WithAPIKey("k"), option.WithMaxRetries(0))
	resp, err := client.Chat.Completions.New(context.Background(), chatParams("m", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content == "" {
		t.Error("no content")
	}
	if req, _ := fake.LastRequest(); req.Path != "/chat/completions" {
		t.Errorf("path %q", req.Path)
	}
	if _, err := client.Models.List(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestConcurrent(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, KeepRequests: 10}
	client, _ := start(t, fake)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				model := []string{"a", "b"}[(i+j)%2]
				if i%2 == 0 {
					p := chatParams(model, "hi")
					p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
					stream := client.Chat.Completions.NewStreaming(context.Background(), p)
					for stream.Next() {
					}
					if err := stream.Err(); err != nil {
						t.Error(err)
					}
				} else if _, err := client.Chat.Completions.New(context.Background(), chatParams(model, "hi")); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for j := range 50 {
			fake.SetBehavior(fakellm.Behavior{Chunks: 1 + j%4})
			fake.SetModelBehavior("b", fakellm.Behavior{Chunks: 2 + j%3})
			_ = fake.Requests()
			_, _ = fake.LastRequest()
			_ = fake.Cancelled()
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	if n := fake.Count(); n != 80 {
		t.Errorf("count %d, want 80", n)
	}
}

func TestChatToolCall(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 1, ToolCall: &fakellm.ToolCall{Arguments: `{"city":"Paris"}`}}}
	client, _ := start(t, fake)
	ctx := context.Background()
	p := chatParams("m", "weather?")
	p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "get_weather"})}

	resp, err := client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.Choices[0]
	if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 || c.Message.Content != "chunk0" {
		t.Fatalf("choice %+v", c)
	}
	call := c.Message.ToolCalls[0]
	if call.Function.Name != "get_weather" || call.Function.Arguments != `{"city":"Paris"}` || call.Type != "function" || !strings.HasPrefix(call.ID, "call_") {
		t.Errorf("call %+v", call)
	}
	if resp.Usage.CompletionTokens != 2 {
		t.Errorf("completion tokens %d, want 1 chunk + 1 call", resp.Usage.CompletionTokens)
	}

	// Streamed, the SDK's accumulator puts the call's deltas together.
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	stream := client.Chat.Completions.NewStreaming(ctx, p)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	sc := acc.Choices[0]
	if sc.FinishReason != "tool_calls" || len(sc.Message.ToolCalls) != 1 || sc.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` ||
		sc.Message.ToolCalls[0].Function.Name != "get_weather" || acc.Usage.CompletionTokens != 2 {
		t.Errorf("streamed choice %+v, usage %+v", sc, acc.Usage)
	}

	// The tool's result ends the loop with text alone.
	p.Messages = append(p.Messages, c.Message.ToParam(), openai.ToolMessage("sunny", call.ID))
	resp, err = client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Choices[0]; c.FinishReason != "stop" || len(c.Message.ToolCalls) != 0 {
		t.Errorf("after the result: %+v", c)
	}
}
