package fakellm_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

var (
	idPattern      = regexp.MustCompile(`"id":"(chatcmpl|cmpl)-[A-Z2-7]{26}"`)
	createdPattern = regexp.MustCompile(`"created":[0-9]{10}`)
)

// post sends body to the fake as a client would, and returns the response
// with its body read.
func post(t *testing.T, ts *httptest.Server, path, auth, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// normalize replaces what changes from one reply to the next, after
// checking that every event of a stream has the same id and time.
func normalize(t *testing.T, body string) string {
	t.Helper()
	for _, p := range []*regexp.Regexp{idPattern, createdPattern} {
		seen := map[string]bool{}
		for _, m := range p.FindAllString(body, -1) {
			seen[m] = true
		}
		if len(seen) != 1 {
			t.Errorf("%d different %s in %s", len(seen), p, body)
		}
	}
	body = idPattern.ReplaceAllString(body, `"id":"ID"`)
	return createdPattern.ReplaceAllString(body, `"created":T`)
}

func TestStreamBytes(t *testing.T) {
	ts := httptest.NewServer(&fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 2}})
	defer ts.Close()

	for _, c := range []struct {
		name, path, body, want string
	}{{
		name: "chat",
		path: "/v1/chat/completions",
		body: `{"model":"m","stream":true,"messages":[{"role":"user","content":"hello world"}]}`,
		want: `data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m","choices":[{"index":0,"delta":{"content":"chunk0"},"logprobs":null,"finish_reason":null}]}

data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m","choices":[{"index":0,"delta":{"content":" chunk1"},"logprobs":null,"finish_reason":null}]}

data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: [DONE]

`,
	}, {
		name: "chat with usage",
		path: "/v1/chat/completions",
		body: `{"model":"m\"x","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello world"}]}`,
		want: `data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m\"x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m\"x","choices":[{"index":0,"delta":{"content":"chunk0"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m\"x","choices":[{"index":0,"delta":{"content":" chunk1"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m\"x","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"ID","object":"chat.completion.chunk","created":T,"model":"m\"x","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}

data: [DONE]

`,
	}, {
		name: "legacy",
		path: "/completions",
		body: `{"model":"m","stream":true,"prompt":"a b c"}`,
		want: `data: {"id":"ID","object":"text_completion","created":T,"model":"m","choices":[{"text":"chunk0","index":0,"logprobs":null,"finish_reason":null}]}

data: {"id":"ID","object":"text_completion","created":T,"model":"m","choices":[{"text":" chunk1","index":0,"logprobs":null,"finish_reason":null}]}

data: {"id":"ID","object":"text_completion","created":T,"model":"m","choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]}

data: [DONE]

`,
	}, {
		name: "legacy with usage",
		path: "/v1/completions",
		body: `{"model":"m","stream":true,"stream_options":{"include_usage":true},"prompt":["a b","c"]}`,
		want: `data: {"id":"ID","object":"text_completion","created":T,"model":"m","choices":[{"text":"chunk0","index":0,"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"ID","object":"text_completion","created":T,"model":"m","choices":[{"text":" chunk1","index":0,"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"ID","object":"text_completion","created":T,"model":"m","choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"ID","object":"text_completion","created":T,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}

data: [DONE]

`,
	}} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := post(t, ts, c.path, testKey, c.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			if resp.ContentLength != -1 {
				t.Errorf("Content-Length %d on a stream", resp.ContentLength)
			}
			for _, ev := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
				data, ok := strings.CutPrefix(ev, "data: ")
				if !ok || (data != "[DONE]" && !json.Valid([]byte(data))) {
					t.Errorf("bad event %q", ev)
				}
			}
			if got := normalize(t, body); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

func TestReplyBytes(t *testing.T) {
	ts := httptest.NewServer(&fakellm.Server{Behavior: fakellm.Behavior{Chunks: 2}})
	defer ts.Close()
	for _, c := range []struct {
		name, path, body, want string
	}{{
		name: "chat",
		path: "/v1/chat/completions",
		body: `{"model":"m","messages":[{"role":"system","content":null},{"role":"user","content":" a  b "}]}`,
		want: `{"id":"ID","object":"chat.completion","created":T,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"chunk0 chunk1","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}`,
	}, {
		name: "empty prompt counts one token",
		path: "/v1/chat/completions",
		body: `{"model":"m","messages":[{"role":"user","content":""}],"stream":false}`,
		want: `{"id":"ID","object":"chat.completion","created":T,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"chunk0 chunk1","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
	}, {
		name: "legacy",
		path: "/v1/completions",
		body: `{"model":"m","prompt":[[1,2],[3]],"max_tokens":1}`,
		want: `{"id":"ID","object":"text_completion","created":T,"model":"m","choices":[{"text":"chunk0","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`,
	}} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := post(t, ts, c.path, "", c.body)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if got := normalize(t, body); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}

	_, body := post(t, ts, "/v1/embeddings", "", `{"model":"e","input":"x","dimensions":2,"encoding_format":"base64"}`)
	if !regexp.MustCompile(`^\{"object":"list","data":\[\{"object":"embedding","index":0,"embedding":"[A-Za-z0-9+/]{11}="\}\],"model":"e","usage":\{"prompt_tokens":1,"total_tokens":1\}\}$`).MatchString(body) {
		t.Errorf("embeddings: %s", body)
	}
}

func TestErrorBytes(t *testing.T) {
	ts := httptest.NewServer(&fakellm.Server{APIKey: testKey})
	defer ts.Close()
	for _, c := range []struct {
		name, method, path, auth, body string
		status                         int
		want                           string
	}{
		{"wrong key", "POST", "/v1/chat/completions", "sk-wrong-key-98765", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, 401,
			`{"error":{"message":"Incorrect API key provided: sk-***********8765. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
		{"short wrong key", "POST", "/v1/chat/completions", "abc", `{}`, 401,
			`{"error":{"message":"Incorrect API key provided: abc. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
		{"no key", "GET", "/v1/models", "", ``, 401,
			`{"error":{"message":"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).","type":"invalid_request_error","param":null,"code":null}}`},
		{"unknown path", "POST", "/v1/v1/chat/completions", testKey, `{}`, 404,
			`{"error":{"message":"Invalid URL (POST /v1/v1/chat/completions)","type":"invalid_request_error","param":null,"code":null}}`},
		{"not a segment", "POST", "/v1chat/completions", testKey, `{}`, 404,
			`{"error":{"message":"Invalid URL (POST /v1chat/completions)","type":"invalid_request_error","param":null,"code":null}}`},
		{"wrong method", "GET", "/v1/chat/completions", testKey, ``, 405,
			`{"error":{"message":"Invalid method for URL (GET /v1/chat/completions)","type":"invalid_request_error","param":null,"code":null}}`},
		{"bad JSON", "POST", "/v1/chat/completions", testKey, `{"model":`, 400,
			`{"error":{"message":"We could not parse the JSON body of your request: unexpected end of JSON input","type":"invalid_request_error","param":null,"code":null}}`},
		{"no model", "POST", "/v1/embeddings", testKey, `{"input":"x"}`, 400,
			`{"error":{"message":"you must provide a model parameter","type":"invalid_request_error","param":null,"code":null}}`},
		{"no messages", "POST", "/v1/chat/completions", testKey, `{"model":"m","messages":[]}`, 400,
			`{"error":{"message":"[] is too short - 'messages'","type":"invalid_request_error","param":"messages","code":null}}`},
		{"bad content", "POST", "/v1/chat/completions", testKey, `{"model":"m","messages":[{"role":"user","content":3}]}`, 400,
			`{"error":{"message":"Invalid message content: expected a string or an array of content parts","type":"invalid_request_error","param":"messages","code":null}}`},
		{"bad prompt", "POST", "/v1/completions", testKey, `{"model":"m","prompt":{}}`, 400,
			`{"error":{"message":"Invalid prompt: expected a string, an array of strings, an array of tokens or an array of token arrays","type":"invalid_request_error","param":"prompt","code":null}}`},
		{"empty input", "POST", "/v1/embeddings", testKey, `{"model":"m","input":[]}`, 400,
			`{"error":{"message":"'$.input' is invalid: expected a string, an array of strings, an array of tokens or an array of token arrays.","type":"invalid_request_error","param":"input","code":null}}`},
		{"bad encoding", "POST", "/embeddings", testKey, `{"model":"m","input":"x","encoding_format":"hex"}`, 400,
			`{"error":{"message":"Invalid 'encoding_format': expected 'float' or 'base64'.","type":"invalid_request_error","param":"encoding_format","code":null}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(c.body))
			if c.auth != "" {
				req.Header.Set("Authorization", "Bearer "+c.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || string(b) != c.want || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("got %d %s\nwant %d %s", resp.StatusCode, b, c.status, c.want)
			}
		})
	}
}

func TestDropBeforeReply(t *testing.T) {
	fake := &fakellm.Server{Behavior: fakellm.Behavior{DropAfter: 1}}
	ts := httptest.NewServer(fake)
	defer ts.Close()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/completions", `{"model":"m","prompt":"x"}`},
		{"POST", "/v1/embeddings", `{"model":"m","input":"x"}`},
		{"GET", "/v1/models", ``},
		{"GET", "/v1/models/gpt-4o", ``},
	} {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s %s: got status %d, want the connection dropped", c.method, c.path, resp.StatusCode)
		}
	}
	if n := fake.Count(); n != 4 {
		t.Errorf("count %d", n)
	}
}

func TestMissingPrompt(t *testing.T) {
	ts := httptest.NewServer(&fakellm.Server{})
	defer ts.Close()
	_, body := post(t, ts, "/v1/completions", "", `{"model":"m","prompt":null}`)
	if !strings.Contains(body, `"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}`) {
		t.Errorf("reply %s", body)
	}
}

// TestStreamFaults checks the faults a gateway's failover is tested with:
// a drop before the first token, silence after the headers or mid-stream,
// and headers on an error.
func TestStreamFaults(t *testing.T) {
	fake := &fakellm.Server{}
	ts := httptest.NewServer(fake)
	defer ts.Close()
	stream := func() (*http.Response, *bufio.Reader) {
		t.Helper()
		resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp, bufio.NewReader(resp.Body)
	}

	fake.SetBehavior(fakellm.Behavior{DropBeforeContent: true})
	_, br := stream()
	raw, err := io.ReadAll(br)
	if err == nil || !strings.Contains(string(raw), `"role":"assistant"`) || strings.Contains(string(raw), "chunk0") {
		t.Fatalf("DropBeforeContent: %q %v", raw, err)
	}

	for _, after := range []int{0, 2} {
		fake.SetBehavior(fakellm.Behavior{Stall: 300 * time.Millisecond, StallAfter: after})
		begin := time.Now()
		resp, br := stream()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		headers := time.Since(begin)
		var gap time.Duration
		last := time.Now()
		for {
			line, err := br.ReadString('\n')
			if d := time.Since(last); d > gap {
				gap = d
			}
			last = time.Now()
			if err != nil {
				if !strings.Contains(line, "[DONE]") && err != io.EOF {
					t.Fatal(err)
				}
				break
			}
		}
		// The gap is measured from the read before the stall began, so it may
		// come out a little under the stall.
		if headers > 200*time.Millisecond || gap < 250*time.Millisecond {
			t.Fatalf("StallAfter %d: headers after %v, longest silence %v", after, headers, gap)
		}
	}

	fake.SetBehavior(fakellm.Behavior{Status: 429, Header: map[string]string{"Retry-After": "7"}})
	resp, _ := stream()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("%d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
