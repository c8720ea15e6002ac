package providers_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/llm"
)

// post sends body to the gateway's path and returns the status and body.
func (g *gateway) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(g.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out)
}

// An Anthropic Messages client served by an OpenAI-style upstream: the
// request goes up as a chat completion, the answer comes back as a
// Messages response, whole or streamed.
func TestClientFormatMessagesToOpenAI(t *testing.T) {
	for _, provider := range []string{`{"name":"openai"}`, `{"name":"azure"}`} {
		g := newGateway(t, provider, "", "gpt-test")
		status, body := g.post(t, "/v1/messages", `{"model":"m","max_tokens":50,"system":"be brief","messages":[{"role":"user","content":"one two"}]}`)
		if status != 200 {
			t.Fatalf("%s: status %d: %s", provider, status, body)
		}
		var msg struct {
			Type    string `json:"type"`
			Role    string `json:"role"`
			Content []struct {
				Type, Text string
			} `json:"content"`
			StopReason string `json:"stop_reason"`
			Usage      struct {
				InputTokens  int `json:"input_tokens"`
				OutputTokens int `json:"output_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(body), &msg); err != nil {
			t.Fatal(err)
		}
		if msg.Type != "message" || msg.Role != "assistant" || len(msg.Content) != 1 || !strings.HasPrefix(msg.Content[0].Text, "chunk0") ||
			msg.StopReason != "end_turn" || msg.Usage.InputTokens < 3 || msg.Usage.OutputTokens != 3 {
			t.Errorf("%s: answer %s", provider, body)
		}
		r, _ := g.fake.LastRequest()
		if !strings.HasSuffix(r.Path, "/chat/completions") || !strings.Contains(string(r.Body), `"role":"system"`) || !strings.Contains(string(r.Body), `"max_tokens":50`) {
			t.Errorf("%s: upstream got %s %s", provider, r.Path, r.Body)
		}
		if c := g.call(t, 1); c.Endpoint != llm.EndpointMessages || c.API != llm.APIAnthropicMessages || c.UsageSource != llm.UsageUpstream || c.Usage.CompletionTokens != 3 {
			t.Errorf("%s: record %s %s %s %+v", provider, c.Endpoint, c.API, c.UsageSource, c.Usage)
		}

		status, body = g.post(t, "/v1/messages?beta=true", `{"model":"m","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"one two"}]}`)
		if status != 200 {
			t.Fatalf("%s: stream status %d: %s", provider, status, body)
		}
		var events []string
		for _, line := range strings.Split(body, "\n") {
			if name, ok := strings.CutPrefix(line, "event: "); ok && (len(events) == 0 || events[len(events)-1] != name) {
				events = append(events, name)
			}
		}
		want := "message_start ping content_block_start content_block_delta content_block_stop message_delta message_stop"
		if strings.Join(events, " ") != want {
			t.Errorf("%s: events %v in\n%s", provider, events, body)
		}
		if !strings.Contains(body, `"output_tokens":3`) {
			t.Errorf("%s: no output tokens in the stream:\n%s", provider, body)
		}
	}
}

// A gateway error on the Messages path is in Anthropic's shape.
func TestClientFormatMessagesErrors(t *testing.T) {
	g := newGateway(t, `{"name":"openai"}`, "", "gpt-test")
	status, body := g.post(t, "/v1/messages", `{"model":"nope","max_tokens":5,"messages":[]}`)
	if status != 404 || !strings.HasPrefix(body, `{"type":"error","error":{"type":"not_found_error","message":"the model 'nope'`) {
		t.Errorf("status %d: %s", status, body)
	}
	status, body = g.post(t, "/v1/chat/completions", `{"model":"nope","messages":[]}`)
	if status != 404 || !strings.HasPrefix(body, `{"error":{`) {
		t.Errorf("chat: status %d: %s", status, body)
	}
}
