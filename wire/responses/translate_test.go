package responses_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/wiretest"
	"github.com/llmoneapi/llmoneapi/internal/wiretest/codecs"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
	"github.com/llmoneapi/llmoneapi/wire/responses"
)

// translations are the client → upstream pairs with this format on one
// side: a request fixture of the client's format, a response and a stream
// fixture of the upstream's.
var translations = []codecs.Translation{
	{Client: "responses", Upstream: "openai", Request: "testdata/request/codex.json", Response: "../openai/testdata/response/tool_calls.json", Stream: "../openai/testdata/stream/tools.sse"},
	{Client: "responses", Upstream: "anthropic", Request: "testdata/request/codex.json", Response: "../anthropic/testdata/response/tool_use.json", Stream: "../anthropic/testdata/stream/tool_use.sse"},
	{Client: "responses", Upstream: "gemini", Request: "testdata/request/simple.json", Response: "../gemini/testdata/response/function_call.json", Stream: "../gemini/testdata/stream/function_call.sse"},
	{Client: "openai", Upstream: "responses", Request: "../openai/testdata/request/tools.json", Response: "testdata/response/function_call.json", Stream: "testdata/stream/text.sse"},
	{Client: "anthropic", Upstream: "responses", Request: "../anthropic/testdata/request/agent.json", Response: "testdata/response/text.json", Stream: "testdata/stream/function_call.sse"},
}

func TestTranslate(t *testing.T) { codecs.RunTranslations(t, translations) }

// TestReasoningAcrossTurns: a Responses client served by an Anthropic
// upstream gets the thinking as a reasoning item with its signature as the
// encrypted content, and when it sends the item back next turn (as the
// Codex CLI does, store: false), the Anthropic upstream gets its thinking
// block back intact.
func TestReasoningAcrossTurns(t *testing.T) {
	evs := codecs.All["anthropic"].DecodeStream(t, wiretest.Read(t, "../anthropic/testdata/stream/tool_use.sse"))
	_, data := wiretest.SSE(t, codec.EncodeStream(evs))
	var final struct {
		Response struct {
			Output []json.RawMessage `json:"output"`
		} `json:"response"`
	}
	if err := json.Unmarshal(data[len(data)-1], &final); err != nil {
		t.Fatal(err)
	}
	// The next turn: the output items, the tool's output, and the user.
	input := append(final.Response.Output,
		json.RawMessage(`{"type":"function_call_output","call_id":"toolu_S1","output":"package main"}`),
		json.RawMessage(`{"role":"user","content":"Go on."}`))
	next, _ := json.Marshal(map[string]any{"model": "m", "input": input, "store": false, "include": []string{"reasoning.encrypted_content"}})
	req, err := responses.DecodeRequest(next)
	if err != nil {
		t.Fatal(err)
	}
	body, _, err := anthropic.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	var sent struct {
		Messages []struct {
			Role    string            `json:"role"`
			Content []json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatal(err)
	}
	if len(sent.Messages) != 3 || sent.Messages[0].Role != "assistant" {
		t.Fatalf("messages sent upstream: %s", body)
	}
	want := `{"type":"thinking","thinking":"Check the config first.","signature":"U2lnbmF0dXJl"}`
	if got := string(sent.Messages[0].Content[0]); got != want {
		t.Errorf("thinking block sent back:\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(string(body), `"tool_use_id":"toolu_S1"`) {
		t.Errorf("the tool result lost its call: %s", body)
	}
}

// TestStateful: a request that relies on state OpenAI keeps is refused
// with ErrStateful, a 400.
func TestStateful(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","previous_response_id":"resp_1","input":"and then?"}`,
		`{"model":"m","conversation":"conv_9","input":"and then?"}`,
		`{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}`,
	} {
		_, err := responses.DecodeRequest([]byte(body))
		var we *wire.Error
		if !errors.Is(err, responses.ErrStateful) || !errors.As(err, &we) || we.Status != 400 || !strings.Contains(we.Message, "whole conversation") {
			t.Errorf("%s: err = %v", body, err)
		}
	}
	if _, err := responses.DecodeRequest([]byte(`{"model":"m","previous_response_id":null,"input":"hi"}`)); err != nil {
		t.Errorf("a null previous_response_id: %v", err)
	}
}

// TestToolChoiceOfDroppedTool: a tool_choice that names a tool the
// translation drops is a 400 naming the tool; one naming a function is
// kept.
func TestToolChoiceOfDroppedTool(t *testing.T) {
	tools := `"tools":[{"type":"function","name":"shell","parameters":{"type":"object"}},{"type":"web_search"},{"type":"custom","name":"apply_patch"},{"type":"mcp","server_label":"docs"},{"type":"namespace","name":"repo","tools":[{"type":"function","name":"grep_repo"}]}]`
	for choice, tool := range map[string]string{
		`{"type":"web_search"}`:                    "web_search",
		`{"type":"web_search_preview"}`:            "web_search_preview",
		`{"type":"custom","name":"apply_patch"}`:   "apply_patch",
		`{"type":"mcp","server_label":"docs"}`:     "docs",
		`{"type":"function","name":"grep_repo"}`:   "grep_repo",
		`{"type":"file_search"}`:                   "file_search",
		`{"type":"function","name":"apply_patch"}`: "apply_patch",
	} {
		_, err := responses.DecodeRequest([]byte(`{"model":"m","input":"hi",` + tools + `,"tool_choice":` + choice + `}`))
		var we *wire.Error
		if !errors.As(err, &we) || we.Status != 400 || we.Param != "tool_choice" || !strings.Contains(we.Message, `"`+tool+`"`) || !strings.Contains(we.Message, "translated upstream") {
			t.Errorf("tool_choice %s: err = %v", choice, err)
		}
	}
	req, err := responses.DecodeRequest([]byte(`{"model":"m","input":"hi",` + tools + `,"tool_choice":{"type":"function","name":"shell"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if req.ToolChoice == nil || req.ToolChoice.Mode != wire.ToolNamed || req.ToolChoice.Name != "shell" || len(req.Tools) != 1 {
		t.Errorf("tool choice %+v, tools %+v", req.ToolChoice, req.Tools)
	}
}

// TestUsage: the passthrough path's usage reader finds the usage of a
// whole response and of the events that carry one, and reads nothing out
// of the others.
func TestUsage(t *testing.T) {
	want := `{"prompt_tokens":2140,"completion_tokens":95,"total_tokens":2235,"cached_tokens":2048,"reasoning_tokens":64}`
	u, err := responses.Usage(wiretest.Read(t, "testdata/response/text.json"))
	if err != nil || string(wiretest.JSON(t, u)) != want {
		t.Errorf("whole response: %s, %v", wiretest.JSON(t, u), err)
	}
	_, data := wiretest.SSE(t, wiretest.Read(t, "testdata/stream/text.sse"))
	var found []string
	for _, d := range data {
		u, err := responses.Usage(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if u != nil {
			found = append(found, string(wiretest.JSON(t, u)))
		}
	}
	if len(found) != 1 || found[0] != `{"prompt_tokens":31,"completion_tokens":52,"total_tokens":83,"reasoning_tokens":40}` {
		t.Errorf("usage found in the stream: %v", found)
	}
	for _, d := range []string{
		`{"type":"response.output_text.delta","delta":"the \"usage\": {\"input_tokens\": 5}"}`,
		`{"type":"response.created","response":{"id":"r","usage":null}}`,
		`{"type":"response.output_item.done","item":{"type":"function_call","arguments":"{}","usage":{"input_tokens":3}}}`,
	} {
		if u, err := responses.Usage([]byte(d)); u != nil || err != nil {
			t.Errorf("%s: %+v, %v", d, u, err)
		}
	}
}

func BenchmarkUsage(b *testing.B) {
	_, data := wiretest.SSE(b, wiretest.Read(b, "testdata/stream/text.sse"))
	delta, completed := data[4], data[len(data)-1]
	b.Run("delta", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = responses.Usage(delta)
		}
	})
	b.Run("completed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = responses.Usage(completed)
		}
	})
}
