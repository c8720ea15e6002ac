package gemini_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/gemini"
)

func TestPath(t *testing.T) {
	if got := gemini.Path("models/gemini-2.5-flash", false); got != "/models/gemini-2.5-flash:generateContent" {
		t.Errorf("Path = %q", got)
	}
	if got := gemini.Path("gemini-2.5-flash", true); got != "/models/gemini-2.5-flash:streamGenerateContent?alt=sse" {
		t.Errorf("stream Path = %q", got)
	}
}

func TestCleanSchema(t *testing.T) {
	in := `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false,
		"properties":{"tags":{"type":"array","items":{"type":["string","null"],"$ref":"#/x"}},"kind":{"const":"a"}},"required":["tags"]}`
	var got, want any
	_ = json.Unmarshal(gemini.CleanSchema(json.RawMessage(in)), &got)
	_ = json.Unmarshal([]byte(`{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","nullable":true}},"kind":{"enum":["a"]}},"required":["tags"]}`), &want)
	if g, _ := json.Marshal(got); string(g) != mustJSON(want) {
		t.Errorf("CleanSchema = %s", g)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func toolTurn(model string) *wire.Request {
	return &wire.Request{Model: model, Tools: []wire.Tool{{Name: "f", Parameters: json.RawMessage(`{"type":"object","additionalProperties":false}`)}},
		Messages: []wire.Message{
			{Role: wire.RoleUser, Content: []wire.Part{{Type: wire.PartText, Text: "go"}}},
			{Role: wire.RoleAssistant, Content: []wire.Part{
				{Type: wire.PartToolCall, ToolCall: &wire.ToolCall{ID: "call_1", Name: "f", Arguments: `{}`}},
				{Type: wire.PartToolCall, ToolCall: &wire.ToolCall{ID: "call_2", Name: "f", Arguments: `not json`}},
			}},
			{Role: wire.RoleUser, Content: []wire.Part{
				{Type: wire.PartToolResult, ToolResult: &wire.ToolResult{CallID: "call_1", Content: []wire.Part{{Type: wire.PartText, Text: "done"}}}},
				{Type: wire.PartToolResult, ToolResult: &wire.ToolResult{CallID: "call_2", IsError: true, Content: []wire.Part{{Type: wire.PartText, Text: "bad"}}}},
			}},
		}}
}

// Gemini 3 refuses function calls in the history without a thought
// signature; calls from another model get the sentinel Gemini documents,
// on the first call of a turn only.
func TestThoughtSignatureSentinel(t *testing.T) {
	body, _, err := gemini.EncodeRequest(toolTurn("gemini-3-pro-preview"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(body), `"thoughtSignature":"skip_thought_signature_validator"`); n != 1 {
		t.Errorf("%d sentinels in %s", n, body)
	}
	for _, model := range []string{"gemini-2.5-flash", "my-gemini-3"} {
		body, _, _ = gemini.EncodeRequest(toolTurn(model))
		if strings.Contains(string(body), "thoughtSignature") {
			t.Errorf("%s got a sentinel: %s", model, body)
		}
	}
}

func TestToolResultsAndLegacySchema(t *testing.T) {
	body, _, err := gemini.Encoder{LegacySchema: true}.EncodeRequest(toolTurn("gemini-2.5-flash"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(body)
	for _, want := range []string{
		`"parameters":{"type":"object"}`,                                             // cleaned
		`"functionResponse":{"id":"call_1","name":"f","response":{"result":"done"}}`, // name found from the call
		`"functionResponse":{"id":"call_2","name":"f","response":{"error":"bad"}}`,   // an error result
		`"functionCall":{"id":"call_2","name":"f","args":{"arguments":"not json"}}`,  // malformed arguments kept valid
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s in %s", want, s)
		}
	}
}
