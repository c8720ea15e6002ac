package providers

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/llm"
)

func named(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }

var messagesStream = named("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":30,"cache_creation_input_tokens":5}}}`) +
	named("ping", `{"type":"ping"}`) +
	named("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`) +
	named("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}`) +
	named("content_block_stop", `{"type":"content_block_stop","index":0}`) +
	named("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}`) +
	named("message_stop", `{"type":"message_stop"}`)

// A Messages stream passes through byte for byte, its usage read from
// message_start (input and cache) and message_delta (output); content
// starts at the first block.
func TestAnthropicPassthroughStream(t *testing.T) {
	x := exchange(t, llm.EndpointMessages, `{"model":"m","stream":true}`, "")
	s := (&Anthropic{}).Stream(x, strings.NewReader(messagesStream))
	var out strings.Builder
	var usage *llm.Usage
	var contents []bool
	for {
		ev, err := s.Next()
		out.Write(ev.Data)
		if ev.Usage != nil {
			usage = ev.Usage
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		contents = append(contents, ev.Content)
	}
	if out.String() != messagesStream {
		t.Errorf("stream changed:\n%s", out.String())
	}
	want := llm.Usage{PromptTokens: 45, CompletionTokens: 7, TotalTokens: 52, CachedTokens: 30, CacheCreationTokens: 5}
	if usage == nil || *usage != want {
		t.Errorf("usage %+v, want %+v", usage, want)
	}
	if contents[0] || contents[1] || !contents[2] {
		t.Errorf("content marks %v", contents)
	}

	// Cut before message_stop: an error, and Anthropic's event: error to
	// end the client's stream.
	cut := messagesStream[:strings.Index(messagesStream, "event: message_delta")]
	s = (&Anthropic{}).Stream(x, strings.NewReader(cut))
	var err error
	for err == nil {
		_, err = s.Next()
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut stream: %v", err)
	}
	ev := s.(interface{ ErrorEvent(*llm.Error) []byte }).ErrorEvent(llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_stream_broken", "broke off"))
	if string(ev) != "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"broke off\"}}\n\n" {
		t.Errorf("error event %q", ev)
	}
}

// The client's anthropic-version wins; its beta flags join the
// upstream's, each once.
func TestAnthropicClientHeaders(t *testing.T) {
	a := &Anthropic{Version: "2023-06-01", Beta: []string{"a-1", "b-2"}}
	req, _ := http.NewRequest(http.MethodPost, "http://x", nil)
	a.clientHeaders(req, http.Header{"Anthropic-Version": {"2099-01-01"}, "Anthropic-Beta": {"b-2, c-3", "d-4"}})
	if req.Header.Get("anthropic-version") != "2099-01-01" || req.Header.Get("anthropic-beta") != "a-1,b-2,c-3,d-4" {
		t.Errorf("headers %v", req.Header)
	}
	req, _ = http.NewRequest(http.MethodPost, "http://x", nil)
	(&Anthropic{}).clientHeaders(req, http.Header{})
	if len(req.Header) != 0 {
		t.Errorf("headers %v", req.Header)
	}
}

// A token count for an upstream without one is the tokenizer's, said to be
// an estimate; other endpoints go to the upstream.
func TestCountTokensEstimate(t *testing.T) {
	x := exchange(t, llm.EndpointCountTokens, `{"model":"m","system":"be brief","messages":[{"role":"user","content":"the quick brown fox jumps over the lazy dog"}]}`, "gpt-4o")
	body, hdr, ok, err := countTokens(x)
	if err != nil || !ok || hdr.Get(TokenCountHeader) != "estimated" || !strings.HasPrefix(string(body), `{"input_tokens":`) || string(body) == `{"input_tokens":0}` {
		t.Errorf("count %s %v %v %v", body, hdr, ok, err)
	}
	if _, _, ok, _ := countTokens(exchange(t, llm.EndpointMessages, `{"model":"m"}`, "")); ok {
		t.Error("a Messages call answered locally")
	}
	if _, _, _, err := countTokens(exchange(t, llm.EndpointCountTokens, `{"model":"m","messages":"nope"}`, "")); err == nil {
		t.Error("a bad body counted")
	}
}
