package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
)

func exchange(t *testing.T, endpoint llm.Endpoint, body, model string) *route.Exchange {
	t.Helper()
	req, e := llm.ParseRequest([]byte(body))
	if e != nil {
		t.Fatal(e)
	}
	if model == "" {
		model = req.Model
	}
	return &route.Exchange{Endpoint: endpoint, Request: req, Model: model}
}

func TestOpenAIBody(t *testing.T) {
	tests := []struct {
		name, body, model, want string
		endpoint                llm.Endpoint
	}{
		{name: "untouched", body: `{"model":"m","messages":[]}`, want: `{"model":"m","messages":[]}`},
		{name: "renamed", body: `{"model":"m","messages":[]}`, model: "m-2024", want: `{"model":"m-2024","messages":[]}`},
		{name: "stream gets usage", body: `{"model":"m","stream":true}`,
			want: `{"stream_options":{"include_usage":true},"model":"m","stream":true}`},
		{name: "stream renamed", body: ` {"stream":true,"model":"m"}`, model: "x",
			want: ` {"stream_options":{"include_usage":true},"stream":true,"model":"x"}`},
		{name: "options kept", body: `{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}`, model: "x",
			want: `{"model":"x","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}`},
		{name: "options before model", body: `{"stream_options":null,"stream":true,"model":"m"}`, model: "x",
			want: `{"stream_options":{"include_usage":true},"stream":true,"model":"x"}`},
		{name: "client asked", body: `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
			want: `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{name: "embeddings", body: `{"model":"e","input":"x","stream":true}`, endpoint: llm.EndpointEmbeddings,
			want: `{"model":"e","input":"x","stream":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := tt.endpoint
			if ep == "" {
				ep = llm.EndpointChat
			}
			got := string(openaiBody(exchange(t, ep, tt.body, tt.model)))
			if got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatal("invalid JSON")
			}
		})
	}
}

func chunk(content string) string {
	return `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` + content + `"}}],"usage":null}` + "\n\n"
}

// withoutNull is a chunk as a client that did not ask for usage gets it.
func withoutNull(chunk string) string { return strings.Replace(chunk, `,"usage":null}`, "}", 1) }

const usageChunk = `data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n\n"

func drain(s route.Stream) (out string, usage *llm.Usage, err error) {
	for {
		ev, err := s.Next()
		out += string(ev.Data)
		if ev.Usage != nil {
			usage = ev.Usage
		}
		if err != nil {
			return out, usage, err
		}
	}
}

func TestOpenAIStream(t *testing.T) {
	upstream := chunk("a") + chunk("b") + usageChunk + "data: [DONE]\n\n"
	// The client did not ask for usage: the gateway reads it and hides the
	// chunk, and the "usage":null asking for it put in the others.
	x := exchange(t, llm.EndpointChat, `{"model":"m","stream":true}`, "")
	out, usage, err := drain((&OpenAI{}).Stream(x, strings.NewReader(upstream)))
	if err != io.EOF {
		t.Fatal(err)
	}
	if want := withoutNull(chunk("a")) + withoutNull(chunk("b")) + "data: [DONE]\n\n"; out != want {
		t.Fatalf("client got %q", out)
	}
	if usage == nil || *usage != (llm.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}) {
		t.Fatalf("usage %+v", usage)
	}
	// The client asked: it gets the stream unchanged.
	x = exchange(t, llm.EndpointChat, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, "")
	out, usage, err = drain((&OpenAI{}).Stream(x, strings.NewReader(upstream)))
	if err != io.EOF || out != upstream || usage == nil {
		t.Fatalf("out %q usage %v err %v", out, usage, err)
	}
}

func TestOpenAIStreamCut(t *testing.T) {
	x := exchange(t, llm.EndpointChat, `{"model":"m","stream":true}`, "")
	out, _, err := drain((&OpenAI{}).Stream(x, strings.NewReader(chunk("a")+chunk("b"))))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a stream without [DONE] must fail, got %v", err)
	}
	if out != withoutNull(chunk("a"))+withoutNull(chunk("b")) {
		t.Fatalf("out %q", out)
	}
}

func TestOpenAIResponse(t *testing.T) {
	body := []byte(`{"id":"x","choices":[{"message":{"content":"usage"}}],"usage":{"prompt_tokens":7,"completion_tokens":1}}`)
	x := exchange(t, llm.EndpointChat, `{"model":"m"}`, "")
	out, usage, err := (&OpenAI{}).Response(x, body)
	if err != nil || string(out) != string(body) {
		t.Fatalf("out %s err %v", out, err)
	}
	if usage == nil || usage.TotalTokens != 8 {
		t.Fatalf("usage %+v", usage)
	}
	_, usage, err = (&OpenAI{}).Response(exchange(t, llm.EndpointEmbeddings, `{"model":"m"}`, ""), []byte(`{"data":[]}`))
	if err != nil || usage != nil {
		t.Fatalf("usage %v err %v", usage, err)
	}
}

func TestOpenAIError(t *testing.T) {
	tests := []struct {
		body, message, typ, code string
	}{
		{`{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded","param":null}}`, "Rate limit reached", "requests", "rate_limit_exceeded"},
		{`{"error":{"message":"bad","type":"","code":400}}`, "bad", llm.TypeUpstream, "400"},
		{`{"detail":"Not Found"}`, "Not Found", llm.TypeUpstream, ""},
		{`{"object":"error","message":"model busy"}`, "model busy", llm.TypeUpstream, ""},
		{`upstream connect error`, "upstream connect error", llm.TypeUpstream, ""},
		{``, "the upstream answered with status 503", llm.TypeUpstream, ""},
	}
	for _, tt := range tests {
		e := (&OpenAI{}).Error(nil, 503, []byte(tt.body))
		if e.Message != tt.message || e.Type != tt.typ || e.Code != tt.code || e.Status != 503 {
			t.Errorf("%s: got %+v", tt.body, e)
		}
	}
}

func BenchmarkOpenAIBody(b *testing.B) {
	req, e := llm.ParseRequest([]byte(`{"model":"gpt-4o-mini","stream":true,"messages":[` +
		strings.Repeat(`{"role":"user","content":"Tell me about the history of the Caddy web server."},`, 30) +
		`{"role":"user","content":"thanks"}]}`))
	if e != nil {
		b.Fatal(e)
	}
	x := &route.Exchange{Endpoint: llm.EndpointChat, Request: req, Model: "gpt-4o-mini-2024-07-18"}
	b.ReportAllocs()
	for b.Loop() {
		openaiBody(x)
	}
}

// BenchmarkOpenAIStream relays a 200-chunk stream; allocations per op must
// not grow with the stream's length (memory per stream stays constant).
func BenchmarkOpenAIStream(b *testing.B) {
	var sb strings.Builder
	for range 200 {
		sb.WriteString(chunk("token"))
	}
	sb.WriteString(usageChunk + "data: [DONE]\n\n")
	upstream := sb.String()
	x := &route.Exchange{Endpoint: llm.EndpointChat, Request: &llm.Request{Stream: true}}
	b.ReportAllocs()
	b.SetBytes(int64(len(upstream)))
	for b.Loop() {
		s := (&OpenAI{}).Stream(x, strings.NewReader(upstream))
		for {
			_, err := s.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestHasUsage(t *testing.T) {
	for data, want := range map[string]bool{
		`{"usage":{"prompt_tokens":1}}`:           true,
		`{"usage" : { "prompt_tokens":1}}`:        true,
		`{"usage":null}`:                          false,
		`{"choices":[{"delta":{"content":"x"}}]}`: false,
		`{"usage":null,"x":{"usage":{}}}`:         true, // nested: the parser then finds no top-level usage
	} {
		if got := llm.HasValue([]byte(data), usageKey, '{'); got != want {
			t.Errorf("HasValue(%s, usage) = %v, want %v", data, got, want)
		}
	}
}

const finishChunk = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}` + "\n\n"

// TestOpenAIStreamFinished: a stream that finished but whose upstream closed
// without [DONE] is complete; one that did not finish, or lacks the usage
// chunk the client asked for, is cut.
func TestOpenAIStreamFinished(t *testing.T) {
	plain := `{"model":"m","stream":true}`
	withUsage := `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`
	tests := []struct {
		name, body, upstream string
		complete             bool
	}{
		{"finish, no usage asked", plain, chunk("a") + finishChunk, true},
		{"finish and usage", withUsage, chunk("a") + finishChunk + usageChunk, true},
		{"finish, usage asked, none came", withUsage, chunk("a") + finishChunk, false},
		{"no finish", plain, chunk("a") + usageChunk, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := drain((&OpenAI{}).Stream(exchange(t, llm.EndpointChat, tt.body, ""), strings.NewReader(tt.upstream)))
			if tt.complete != (err == io.EOF) || tt.complete != strings.HasSuffix(out, "data: [DONE]\n\n") {
				t.Fatalf("out %q err %v", out, err)
			}
		})
	}
}

// TestOpenAIStreamContent: the role chunk and keep-alives are not content;
// the first text, tool call, finish or usage is, and so is all that follows.
func TestOpenAIStreamContent(t *testing.T) {
	role := `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}` + "\n\n"
	tool := `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}` + "\n\n"
	legacy := `data: {"choices":[{"text":"hi","index":0}]}` + "\n\n"
	tests := []struct {
		upstream string
		content  []bool
	}{
		{role + ": keep-alive\n\n" + chunk("a") + role, []bool{false, false, true, true}},
		{role + tool, []bool{false, true}},
		{legacy, []bool{true}},
		{role + finishChunk, []bool{false, true}},
		{role + usageChunk, []bool{false, true}},
	}
	for _, tt := range tests {
		s := (&OpenAI{}).Stream(exchange(t, llm.EndpointChat, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, ""), strings.NewReader(tt.upstream))
		for i, want := range tt.content {
			ev, err := s.Next()
			if err != nil || ev.Content != want {
				t.Fatalf("%q event %d: content %v err %v, want %v", tt.upstream, i, ev.Content, err, want)
			}
		}
	}
}

// TestOpenAIHeadersCopied: a request's headers are its own, so that changing
// them cannot reach the upstream's configured headers.
func TestOpenAIHeadersCopied(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	m := &route.Model{Name: "m", Upstreams: []*route.Upstream{{
		ProviderRaw: json.RawMessage(`{"name":"openai"}`), URL: "http://127.0.0.1:1/v1",
		Headers: http.Header{"X-Team": {"ml"}},
	}}}
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Cleanup()
	x := exchange(t, llm.EndpointChat, `{"model":"m"}`, "")
	x.Upstream = m.Upstreams[0]
	req, err := (&OpenAI{}).NewRequest(t.Context(), x)
	if err != nil {
		t.Fatal(err)
	}
	req.Header["X-Team"][0] = "changed"
	if got := x.Upstream.Header().Get("X-Team"); got != "ml" {
		t.Fatalf("the upstream's header became %q", got)
	}
}

// TestHasContent: which chunks carry part of the answer, by the scan and by
// decoding.
func TestHasContent(t *testing.T) {
	for data, want := range map[string]bool{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`:                                       false,
		`{"choices":[{"index":0,"delta":{"content":"Hi"}}]}`:                                                        true,
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}`:                                     false,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"content\":\""}}]}}]}`: true,
		`{"choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}`:                                              true,
		`{"choices":[{"index":0,"text":"legacy"}]}`:                                                                 true,
		`{"choices":[]}`: false,
		`{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`: false,
		`{"choices":[{"index":0,"delta":{"role":"assistant","refusal":"no"}}]}`:                                                                         true,
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"index":0,"id":"c1","function":{"name":"f"}}]}}]}`:              true,
		`{"choices":[{"index":0,"delta":{}},{"index":1,"delta":{"content":"second"}}]}`:                                                                 true,
		`{"choices":[{"index":0,"delta":{"role":"assistant"},"text":""}]}`:                                                                              false,
		`not json`: true,
		` `:        false,
	} {
		if got := hasContent([]byte(data)); got != want {
			t.Errorf("hasContent(%s) = %v", data, got)
		}
	}
}

// hasContentDecoded is what hasContent must say, by decoding.
func hasContentDecoded(data []byte) (content, ok bool) {
	var chunk struct {
		Choices []struct {
			Text  json.RawMessage            `json:"text"`
			Delta map[string]json.RawMessage `json:"delta"`
		} `json:"choices"`
	}
	if json.Unmarshal(data, &chunk) != nil {
		return false, false
	}
	for _, c := range chunk.Choices {
		if len(c.Text) > 0 && !emptyJSON(c.Text) {
			return true, true
		}
		for k, v := range c.Delta {
			if k != "role" && !emptyJSON(v) {
				return true, true
			}
		}
	}
	return false, true
}

// FuzzHasContent: the scan says what decoding the chunk says, for every
// chunk that decodes.
func FuzzHasContent(f *testing.F) {
	for _, s := range []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
		`{"choices":[{"index":0,"delta":{"content":"Hi"}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}`,
		`{"choices":[{"index":0,"text":"legacy"}],"usage":{"prompt_tokens":1}}`,
		`{"choices":[{"delta":{"role":"assistant","reasoning":" "}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, ok := hasContentDecoded(data)
		if !ok {
			return
		}
		// A text delta is told by its "content":" search, which looks past
		// the choices (a decoded chunk with such a key elsewhere is rare
		// and harmless: the stream is committed one chunk early).
		if bytes.Contains(data, contentKey) {
			return
		}
		if got := hasContent(data); got != want {
			t.Fatalf("hasContent(%s) = %v, decoding says %v", data, got, want)
		}
	})
}

// TestReadUsage: OpenAI's usage with its token details, and what
// compatible servers send.
func TestReadUsage(t *testing.T) {
	for body, want := range map[string]llm.Usage{
		`{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":8,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":4,"accepted_prediction_tokens":0}}`: {
			PromptTokens: 19, CompletionTokens: 10, TotalTokens: 29, CachedTokens: 8, ReasoningTokens: 4},
		`{"prompt_tokens":3,"completion_tokens":2}`: {PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5},
		`{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":null,"completion_tokens_details":null}`: {
			PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5},
		`{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2,"cache_creation_tokens":5},"prompt_cache_hit_tokens":2}`: {
			PromptTokens: 7, CompletionTokens: 1, TotalTokens: 8, CachedTokens: 2, CacheCreationTokens: 5},
	} {
		got, err := readUsage([]byte(body))
		if err != nil || *got != want {
			t.Errorf("readUsage(%s) = %+v, %v; want %+v", body, got, err, want)
		}
	}
	for _, bad := range []string{`{"prompt_tokens":"7"}`, `{"prompt_tokens":1.5}`, `{"prompt_tokens":`, `[]`} {
		if _, err := readUsage([]byte(bad)); err == nil {
			t.Errorf("readUsage(%s) took it", bad)
		}
	}
}

// TestTailUsage: the usage of a large answer is the last usage object of
// its end; an end without one has none.
func TestTailUsage(t *testing.T) {
	var c openaiCompat
	tail := []byte(`..."content":"say \"usage\": {1}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":9000}}`)
	u := c.TailUsage(nil, tail)
	if u == nil || u.PromptTokens != 7 || u.CompletionTokens != 9000 || u.TotalTokens != 9007 {
		t.Fatalf("usage %+v", u)
	}
	if u := c.TailUsage(nil, []byte(`..."finish_reason":"stop"}],"usage":null}`)); u != nil {
		t.Fatalf("usage %+v from a null", u)
	}
}
