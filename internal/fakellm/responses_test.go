package fakellm_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

func responsesParams(model string, input ...responses.ResponseInputItemUnionParam) responses.ResponseNewParams {
	return responses.ResponseNewParams{Model: model, Input: responses.ResponseNewParamsInputUnion{OfInputItemList: input}}
}

func userItem(text string) responses.ResponseInputItemUnionParam {
	return responses.ResponseInputItemParamOfMessage(text, responses.EasyInputMessageRoleUser)
}

var weatherFunction = responses.ToolParamOfFunction("get_weather", map[string]any{
	"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}},
}, false)

func TestResponses(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 3, CachedTokens: 7}}
	client, _ := start(t, fake)
	p := responsesParams("gpt-test", userItem("three little words"))
	p.Instructions = openai.String("Be brief.")
	resp, err := client.Responses.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.OutputText(); got != "chunk0 chunk1 chunk2" {
		t.Errorf("output text %q", got)
	}
	if !strings.HasPrefix(resp.ID, "resp_") || resp.Object != "response" || resp.Status != responses.ResponseStatusCompleted || resp.Model != "gpt-test" {
		t.Errorf("id %q, object %q, status %q, model %q", resp.ID, resp.Object, resp.Status, resp.Model)
	}
	u := resp.Usage
	// 2 instruction words + 3 input words, plus the 7 cached ones.
	if u.InputTokens != 12 || u.InputTokensDetails.CachedTokens != 7 || u.OutputTokens != 3 || u.TotalTokens != 15 {
		t.Errorf("usage %+v", u)
	}
	req, _ := fake.LastRequest()
	if req.Path != "/v1/responses" || req.Model != "gpt-test" || req.Stream {
		t.Errorf("recorded %s model %q stream %v", req.Path, req.Model, req.Stream)
	}
}

func TestResponsesStream(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 2}}
	client, _ := start(t, fake)
	stream := client.Responses.NewStreaming(context.Background(), responsesParams("gpt-test", userItem("hello there")))
	var types []string
	var deltas strings.Builder
	var final responses.Response
	for i := int64(0); stream.Next(); i++ {
		e := stream.Current()
		if e.SequenceNumber != i {
			t.Errorf("event %d (%s) has sequence_number %d", i, e.Type, e.SequenceNumber)
		}
		types = append(types, e.Type)
		if e.Type == "response.output_text.delta" {
			deltas.WriteString(e.Delta)
		}
		if e.Type == "response.completed" {
			final = e.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want := "response.created response.in_progress response.output_item.added response.content_part.added " +
		"response.output_text.delta response.output_text.delta response.output_text.done response.content_part.done " +
		"response.output_item.done response.completed"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("events\n%s\nwant\n%s", got, want)
	}
	if deltas.String() != "chunk0 chunk1" || final.OutputText() != "chunk0 chunk1" {
		t.Errorf("deltas %q, final %q", deltas.String(), final.OutputText())
	}
	if u := final.Usage; u.InputTokens != 2 || u.OutputTokens != 2 || u.TotalTokens != 4 {
		t.Errorf("usage %+v", u)
	}
	if req, _ := fake.LastRequest(); !req.Stream {
		t.Error("the request was not recorded as a stream")
	}
}

func TestResponsesToolCall(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey, Behavior: fakellm.Behavior{Chunks: 1, ToolCall: &fakellm.ToolCall{Arguments: `{"city":"Paris"}`}}}
	client, _ := start(t, fake)
	p := responsesParams("gpt-test", userItem("weather?"))
	p.Tools = []responses.ToolUnionParam{weatherFunction}

	// Streamed: the call comes as an item with its arguments in deltas.
	stream := client.Responses.NewStreaming(context.Background(), p)
	var args strings.Builder
	var final responses.Response
	for stream.Next() {
		e := stream.Current()
		switch e.Type {
		case "response.function_call_arguments.delta":
			args.WriteString(e.Delta)
		case "response.completed":
			final = e.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if args.String() != `{"city":"Paris"}` {
		t.Errorf("argument deltas %q", args.String())
	}
	if len(final.Output) != 2 || final.Output[1].Type != "function_call" {
		t.Fatalf("output %+v", final.Output)
	}
	call := final.Output[1].AsFunctionCall()
	if call.Name != "get_weather" || call.Arguments != `{"city":"Paris"}` || !strings.HasPrefix(call.CallID, "call_") {
		t.Errorf("call %+v", call)
	}
	if final.Usage.OutputTokens != 2 {
		t.Errorf("output tokens %d, want 1 chunk + 1 call", final.Usage.OutputTokens)
	}

	// The second turn carries the call and its output: text alone.
	out := responses.ResponseInputItemParamOfFunctionCallOutput("sunny")
	out.OfFunctionCallOutput.CallID = openai.String(call.CallID)
	p.Input.OfInputItemList = append(p.Input.OfInputItemList,
		responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name), out)
	resp, err := client.Responses.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Output) != 1 || resp.OutputText() != "chunk0" {
		t.Errorf("second turn output %+v", resp.Output)
	}
}

func TestResponsesMaxOutputTokens(t *testing.T) {
	client, _ := start(t, &fakellm.Server{APIKey: testKey})
	p := responsesParams("gpt-test", userItem("hi"))
	p.MaxOutputTokens = openai.Int(2)
	resp, err := client.Responses.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != responses.ResponseStatusIncomplete || resp.IncompleteDetails.Reason != "max_output_tokens" || resp.OutputText() != "chunk0 chunk1" {
		t.Errorf("status %q, details %+v, text %q", resp.Status, resp.IncompleteDetails, resp.OutputText())
	}
}

func TestResponsesFaults(t *testing.T) {
	fake := &fakellm.Server{APIKey: testKey}
	client, ts := start(t, fake)
	ctx := context.Background()

	// An upstream status is OpenAI's error, as for chat.
	fake.SetModelBehavior("limited", fakellm.Behavior{Status: http.StatusTooManyRequests})
	_, err := client.Responses.New(ctx, responsesParams("limited", userItem("hi")))
	if e := apiError(t, err); e.StatusCode != http.StatusTooManyRequests || e.Code != "rate_limit_exceeded" {
		t.Errorf("status %d code %q", e.StatusCode, e.Code)
	}

	// A chat-only server has no /responses at all.
	fake.SetModelBehavior("chat-only", fakellm.Behavior{NoResponses: true})
	_, err = client.Responses.New(ctx, responsesParams("chat-only", userItem("hi")))
	if e := apiError(t, err); e.StatusCode != http.StatusNotFound || !strings.Contains(e.Message, "Invalid URL") {
		t.Errorf("status %d message %q", e.StatusCode, e.Message)
	}

	// A wrong key.
	_, err = client.Responses.New(ctx, responsesParams("gpt-test", userItem("hi")), option.WithAPIKey("sk-wrong-key-9999"))
	if e := apiError(t, err); e.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: status %d", e.StatusCode)
	}

	// DropAfter cuts a stream after its first delta: no response.completed.
	fake.SetModelBehavior("cut", fakellm.Behavior{DropAfter: 1})
	stream := client.Responses.NewStreaming(ctx, responsesParams("cut", userItem("hi")))
	var last string
	deltas := 0
	for stream.Next() {
		last = stream.Current().Type
		if last == "response.output_text.delta" {
			deltas++
		}
	}
	if stream.Err() == nil || deltas != 1 || last != "response.output_text.delta" {
		t.Errorf("cut stream: err %v, %d deltas, last event %s", stream.Err(), deltas, last)
	}

	// DropBeforeContent breaks the stream after it started, before any text.
	fake.SetModelBehavior("early", fakellm.Behavior{DropBeforeContent: true})
	stream = client.Responses.NewStreaming(ctx, responsesParams("early", userItem("hi")))
	var types []string
	for stream.Next() {
		types = append(types, stream.Current().Type)
	}
	if stream.Err() == nil || strings.Join(types, " ") != "response.created response.in_progress" {
		t.Errorf("early drop: err %v, events %v", stream.Err(), types)
	}

	// Stall goes silent after a delta, then goes on.
	fake.SetModelBehavior("slow", fakellm.Behavior{Chunks: 2, Stall: 150 * time.Millisecond, StallAfter: 1})
	began := time.Now()
	stream = client.Responses.NewStreaming(ctx, responsesParams("slow", userItem("hi")))
	var text string
	for stream.Next() {
		if e := stream.Current(); e.Type == "response.completed" {
			text = e.Response.OutputText()
		}
	}
	if stream.Err() != nil || text != "chunk0 chunk1" || time.Since(began) < 150*time.Millisecond {
		t.Errorf("stall: err %v, text %q, after %v", stream.Err(), text, time.Since(began))
	}

	// NoUsage leaves usage null.
	fake.SetModelBehavior("silent", fakellm.Behavior{NoUsage: true})
	resp, err := client.Responses.New(ctx, responsesParams("silent", userItem("hi")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.JSON.Usage.Valid() {
		t.Errorf("usage %s, want null", resp.JSON.Usage.Raw())
	}

	// A body that is not JSON, and input that is neither a string nor items.
	for _, body := range []string{`{`, `{"model":"m","input":42}`, `{"model":"m"}`, `{"input":"hi"}`} {
		r, _ := http.NewRequest(http.MethodPost, ts.URL+"/responses", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+testKey)
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var e struct {
			Error struct{ Message, Type string }
		}
		if res.StatusCode != http.StatusBadRequest || json.Unmarshal(b, &e) != nil || e.Error.Type != "invalid_request_error" {
			t.Errorf("%s: %d %s", body, res.StatusCode, b)
		}
	}
}

func TestResponsesStreamBytes(t *testing.T) {
	ts := httptest.NewServer(&fakellm.Server{Behavior: fakellm.Behavior{Chunks: 1}})
	defer ts.Close()
	res, err := http.Post(ts.URL+"/v1/responses", "application/json", strings.NewReader(`{"model":"m","stream":true,"input":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	events := strings.Split(strings.TrimSpace(string(b)), "\n\n")
	if len(events) != 9 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d events, content type %q:\n%s", len(events), res.Header.Get("Content-Type"), b)
	}
	for i, e := range events {
		name, data, ok := strings.Cut(e, "\n")
		var v struct {
			Type     string `json:"type"`
			Sequence *int   `json:"sequence_number"`
		}
		if !ok || json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &v) != nil || "event: "+v.Type != name || v.Sequence == nil || *v.Sequence != i {
			t.Errorf("event %d: %q", i, e)
		}
	}
	if strings.Contains(string(b), "[DONE]") {
		t.Error("a Responses stream ends with response.completed, not [DONE]")
	}
}
