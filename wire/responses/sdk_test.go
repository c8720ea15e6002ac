package responses_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/llmoneapi/llmoneapi/internal/wiretest"
	"github.com/llmoneapi/llmoneapi/wire"
	wireresponses "github.com/llmoneapi/llmoneapi/wire/responses"
)

// sdkServer serves body (an encoder's output) on /v1/responses and decodes
// each request the SDK sends with DecodeRequest, so that both directions
// meet the official client.
func sdkServer(t *testing.T, contentType string, body []byte) (openai.Client, *[]*wire.Request) {
	t.Helper()
	var got []*wire.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/responses" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		in, _ := io.ReadAll(r.Body)
		req, err := wireresponses.DecodeRequest(in)
		if err != nil {
			t.Errorf("decode the SDK's request %s: %v", in, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got = append(got, req)
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	client := openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	return client, &got
}

// sdkParams is a second turn of a tool-using conversation, as a client
// built on the SDK sends it.
func sdkParams() responses.ResponseNewParams {
	return responses.ResponseNewParams{
		Model:        "any-model",
		Instructions: openai.String("Use the tools."),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("Weather in Oslo and Lima?", responses.EasyInputMessageRoleUser),
			responses.ResponseInputItemParamOfFunctionCall(`{"city":"Oslo"}`, "call_a", "get_weather"),
			{OfFunctionCallOutput: &responses.ResponseInputItemFunctionCallOutputParam{
				CallID: openai.String("call_a"),
				Output: responses.ResponseInputItemFunctionCallOutputOutputUnionParam{OfString: openai.String(`{"sky":"snow"}`)},
			}},
		}},
		Tools: []responses.ToolUnionParam{{OfFunction: &responses.FunctionToolParam{
			Name: "get_weather", Strict: openai.Bool(false),
			Parameters: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		}}},
		MaxOutputTokens: openai.Int(300),
		Store:           openai.Bool(false),
		Include:         []responses.ResponseIncludable{responses.ResponseIncludableReasoningEncryptedContent},
	}
}

func checkSDKRequest(t *testing.T, got []*wire.Request, stream bool) {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("the server got %d requests, want 1", len(got))
	}
	req := got[0]
	if len(req.Dropped) > 0 {
		t.Errorf("the SDK's request lost %v in decoding", req.Dropped)
	}
	if req.Stream != stream || req.MaxTokens != 300 || len(req.Tools) != 1 || req.Tools[0].Name != "get_weather" {
		t.Errorf("request = %+v", req)
	}
	if len(req.System) != 1 || req.System[0].Text != "Use the tools." {
		t.Errorf("system = %+v", req.System)
	}
	if len(req.Messages) != 3 || req.Messages[1].Content[0].ToolCall.ID != "call_a" || req.Messages[2].Content[0].ToolResult.CallID != "call_a" {
		t.Errorf("messages = %+v", req.Messages)
	}
}

// TestSDKResponse: the SDK reads what EncodeResponse writes.
func TestSDKResponse(t *testing.T) {
	resp := wiretest.CanonicalResponse(t, wiretest.Canonical+"/response/tool_calls.json")
	body, err := wireresponses.EncodeResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	client, got := sdkServer(t, "application/json", body)
	out, err := client.Responses.New(context.Background(), sdkParams())
	if err != nil {
		t.Fatal(err)
	}
	checkSDKRequest(t, *got, false)
	if !strings.HasPrefix(out.ID, "resp_") || out.Status != responses.ResponseStatusCompleted || out.Model != "some-model-2026" || out.CreatedAt != 1780000100 {
		t.Errorf("id %q, status %q, model %q, created %v", out.ID, out.Status, out.Model, out.CreatedAt)
	}
	if out.OutputText() != "Looking both up." {
		t.Errorf("output text %q", out.OutputText())
	}
	if len(out.Output) != 4 {
		t.Fatalf("%d output items, want 4: %s", len(out.Output), body)
	}
	r := out.Output[0].AsReasoning()
	if r.Type != "reasoning" || len(r.Summary) != 1 || r.Summary[0].Text != "Two cities, two calls." || r.EncryptedContent != "c2lnLXR3bw==" {
		t.Errorf("reasoning item %+v", r)
	}
	ids := map[string]bool{}
	for i, want := range []struct{ callID, args string }{{"call_a", `{"city":"Oslo"}`}, {"call_b", `{"city":"Lima"}`}} {
		fc := out.Output[2+i].AsFunctionCall()
		if fc.Type != "function_call" || fc.CallID != want.callID || fc.Name != "get_weather" || fc.Arguments != want.args || fc.Status != "completed" {
			t.Errorf("function call %d = %+v", i, fc)
		}
		ids[fc.ID] = true
	}
	if len(ids) != 2 {
		t.Errorf("the function calls share an id")
	}
	u := out.Usage
	if u.InputTokens != 300 || u.OutputTokens != 60 || u.TotalTokens != 360 || u.OutputTokensDetails.ReasoningTokens != 20 || u.InputTokensDetails.CacheWriteTokens != 100 {
		t.Errorf("usage %+v", u)
	}
}

// TestSDKResponseIncomplete: a response cut by its length is incomplete,
// with the reason the SDK documents.
func TestSDKResponseIncomplete(t *testing.T) {
	body, err := wireresponses.EncodeResponse(&wire.Response{ID: "resp_cut", Model: "m", Created: 1780000000,
		Content: []wire.Part{{Type: wire.PartText, Text: "Once upon"}}, FinishReason: wire.FinishLength})
	if err != nil {
		t.Fatal(err)
	}
	client, _ := sdkServer(t, "application/json", body)
	out, err := client.Responses.New(context.Background(), sdkParams())
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != "resp_cut" || out.Status != responses.ResponseStatusIncomplete || out.IncompleteDetails.Reason != "max_output_tokens" || out.OutputText() != "Once upon" {
		t.Errorf("id %q status %q reason %q text %q", out.ID, out.Status, out.IncompleteDetails.Reason, out.OutputText())
	}
}

// sdkStream runs the canonical events through the stream encoder and reads
// the result with the SDK's streaming client, checking what every event
// must have: its sequence number, in order.
func sdkStream(t *testing.T, evs []wire.Event) []responses.ResponseStreamEventUnion {
	t.Helper()
	client, got := sdkServer(t, "text/event-stream", codec.EncodeStream(evs))
	params := sdkParams()
	stream := client.Responses.NewStreaming(context.Background(), params)
	var out []responses.ResponseStreamEventUnion
	for stream.Next() {
		ev := stream.Current()
		if ev.SequenceNumber != int64(len(out)) {
			t.Errorf("event %d (%s) has sequence_number %d", len(out), ev.Type, ev.SequenceNumber)
		}
		out = append(out, ev)
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("the SDK's stream failed: %v", err)
	}
	checkSDKRequest(t, *got, true)
	return out
}

// TestSDKStream: the SDK reads the encoder's stream, and what it says adds
// up: deltas to the .done texts, items to the final response.
func TestSDKStream(t *testing.T) {
	evs := sdkStream(t, wiretest.CanonicalEvents(t, wiretest.Canonical+"/stream/tools.json"))
	var types []string
	text, summary := "", ""
	args := map[string]string{}     // item id → arguments from the deltas
	itemIndex := map[string]int64{} // item id → output index, from output_item.added
	var completed responses.Response
	for _, ev := range evs {
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.output_item.added":
			a := ev.AsResponseOutputItemAdded()
			itemIndex[a.Item.ID] = a.OutputIndex
		case "response.output_text.delta":
			text += ev.AsResponseOutputTextDelta().Delta
		case "response.output_text.done":
			if d := ev.AsResponseOutputTextDone(); d.Text != text {
				t.Errorf("output_text.done %q, deltas %q", d.Text, text)
			}
		case "response.reasoning_summary_text.delta":
			summary += ev.AsResponseReasoningSummaryTextDelta().Delta
		case "response.function_call_arguments.delta":
			d := ev.AsResponseFunctionCallArgumentsDelta()
			if i, ok := itemIndex[d.ItemID]; !ok || i != d.OutputIndex {
				t.Errorf("arguments delta for item %q at %d, added at %d (%v)", d.ItemID, d.OutputIndex, i, ok)
			}
			args[d.ItemID] += d.Delta
		case "response.function_call_arguments.done":
			if d := ev.AsResponseFunctionCallArgumentsDone(); d.Arguments != args[d.ItemID] {
				t.Errorf("arguments.done %q, deltas %q", d.Arguments, args[d.ItemID])
			}
		case "response.output_item.done":
			d := ev.AsResponseOutputItemDone()
			if itemIndex[d.Item.ID] != d.OutputIndex {
				t.Errorf("item %q done at %d, added at %d", d.Item.ID, d.OutputIndex, itemIndex[d.Item.ID])
			}
			if d.Item.Type == "function_call" && d.Item.AsFunctionCall().Arguments != args[d.Item.ID] {
				t.Errorf("done item arguments %q, deltas %q", d.Item.AsFunctionCall().Arguments, args[d.Item.ID])
			}
		case "response.completed":
			completed = ev.AsResponseCompleted().Response
		}
	}
	if types[0] != "response.created" || types[1] != "response.in_progress" || types[len(types)-1] != "response.completed" {
		t.Errorf("event types %v", types)
	}
	if text != "On it." || summary != "User wants two lookups." {
		t.Errorf("text %q, summary %q", text, summary)
	}
	if completed.Status != responses.ResponseStatusCompleted || completed.OutputText() != "On it." || len(completed.Output) != 4 {
		t.Fatalf("completed response %s", completed.RawJSON())
	}
	if r := completed.Output[0].AsReasoning(); r.EncryptedContent != "c2lnLXRocmVl" || r.Summary[0].Text != summary {
		t.Errorf("reasoning %+v", r)
	}
	for i, want := range []string{`{"city":"Oslo"}`, `{"city":"Lima"}`} {
		fc := completed.Output[2+i].AsFunctionCall()
		if fc.Arguments != want || fc.Arguments != args[fc.ID] || fc.Name != "get_weather" {
			t.Errorf("call %d = %+v", i, fc)
		}
	}
	if u := completed.Usage; u.InputTokens != 210 || u.InputTokensDetails.CachedTokens != 128 || u.OutputTokens != 44 || u.OutputTokensDetails.ReasoningTokens != 12 || u.TotalTokens != 254 {
		t.Errorf("usage %+v", u)
	}
}

// TestSDKStreamIncomplete: a stream cut by its length ends with
// response.incomplete.
func TestSDKStreamIncomplete(t *testing.T) {
	evs := sdkStream(t, []wire.Event{
		{Type: wire.EventStart, ID: "resp_len", Model: "m"},
		{Type: wire.EventTextDelta, Text: "Once"},
		{Type: wire.EventFinish, FinishReason: wire.FinishLength},
	})
	last := evs[len(evs)-1]
	if last.Type != "response.incomplete" {
		t.Fatalf("last event %s", last.Type)
	}
	r := last.AsResponseIncomplete().Response
	if r.ID != "resp_len" || r.IncompleteDetails.Reason != "max_output_tokens" || r.OutputText() != "Once" {
		t.Errorf("incomplete response %s", r.RawJSON())
	}
}

// TestSDKStreamError: a stream that broke off ends with an error event and
// response.failed, both of which the SDK hands over as events.
func TestSDKStreamError(t *testing.T) {
	evs := sdkStream(t, wiretest.CanonicalEvents(t, wiretest.Canonical+"/stream/error.json"))
	n := len(evs)
	if n < 2 || evs[n-2].Type != "error" || evs[n-1].Type != "response.failed" {
		t.Fatalf("last events %v", evs[max(n-2, 0):])
	}
	if e := evs[n-2].AsError(); e.Message != "The upstream is overloaded." || e.Code == "" {
		t.Errorf("error event %+v", e)
	}
	if r := evs[n-1].AsResponseFailed().Response; r.Status != responses.ResponseStatusFailed || r.Error.Message != "The upstream is overloaded." {
		t.Errorf("failed response %s", r.RawJSON())
	}
}
