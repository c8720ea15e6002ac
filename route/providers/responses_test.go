package providers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
)

// responsesEvent is one event of a Responses stream as OpenAI sends it; a
// data-only one (some compatible servers) when name is empty.
func responsesEvent(name, data string) string {
	if name == "" {
		return "data: " + data + "\n\n"
	}
	return "event: " + name + "\ndata: " + data + "\n\n"
}

var (
	respCreated   = responsesEvent("response.created", `{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1700000000,"status":"in_progress","instructions":"a \"model\": not this","model":"gpt-5","output":[],"usage":null}}`)
	respProgress  = responsesEvent("response.in_progress", `{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","status":"in_progress","usage":null}}`)
	respAdded     = responsesEvent("response.output_item.added", `{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}`)
	respDelta     = responsesEvent("", `{"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"usage"}`)
	respCompleted = responsesEvent("response.completed", `{"type":"response.completed","sequence_number":4,"response":{"id":"resp_1","status":"completed","usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":2},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":12}}}`)
)

// The relay passes every event through byte for byte, holds the stream
// back (Content false) until the answer starts, reads the usage from
// response.completed and ends there.
func TestResponsesStream(t *testing.T) {
	upstream := respCreated + respProgress + ": keep-alive\n\n" + respAdded + respDelta + respCompleted + "data: [DONE]\n\n"
	s := newResponsesStream(strings.NewReader(upstream))
	var out strings.Builder
	var contents []bool
	var usage *llm.Usage
	for {
		ev, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out.Write(ev.Data)
		contents = append(contents, ev.Content)
		if ev.Usage != nil {
			usage = ev.Usage
		}
	}
	if want := strings.TrimSuffix(upstream, "data: [DONE]\n\n"); out.String() != want {
		t.Errorf("relayed\n%s\nwant\n%s", out.String(), want)
	}
	if want := []bool{false, false, false, true, true, true}; !slices.Equal(contents, want) {
		t.Errorf("content flags %v, want %v", contents, want)
	}
	want := llm.Usage{PromptTokens: 7, CompletionTokens: 5, TotalTokens: 12, CachedTokens: 2, ReasoningTokens: 3}
	if usage == nil || *usage != want {
		t.Errorf("usage %+v, want %+v", usage, want)
	}
	if s.id != "resp_1" || s.model != "gpt-5" || s.created != 1700000000 || s.seq != 5 {
		t.Errorf("read id %q, model %q, created %d, seq %d", s.id, s.model, s.created, s.seq)
	}
}

// A stream that stops before its final event is cut: the events that end
// the client's stream go on from the upstream's numbering, in the
// Responses API's shapes. A failure the upstream reports after the answer
// started reaches the client as it came (and ErrorEvent adds only what it
// lacks); one before the answer started is relayed not at all, so that
// another upstream may serve the call.
func TestResponsesStreamBroken(t *testing.T) {
	upstreamError := responsesEvent("error", `{"type":"error","sequence_number":3,"code":"server_error","message":"boom"}`)
	upstreamFailed := responsesEvent("response.failed", `{"type":"response.failed","sequence_number":4,"response":{"id":"resp_1","status":"failed","error":{"code":"server_error","message":"boom"},"usage":{"input_tokens":7,"output_tokens":1,"total_tokens":8}}}`)
	e := llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_stream_broken", "the upstream broke off its stream")
	for _, tc := range []struct {
		name, tail string
		want       []string // the events ErrorEvent writes
		seq        int      // the first one's sequence number
		usage      bool
	}{
		{"cut", "", []string{"error", "response.failed"}, 3, false},
		{"error", upstreamError, []string{"response.failed"}, 4, false},
		{"error and failed", upstreamError + upstreamFailed, nil, 0, true},
	} {
		upstream := respCreated + respProgress + respAdded + tc.tail
		s := newResponsesStream(strings.NewReader(upstream))
		out, usage, err := drain(s)
		if err == nil || err == io.EOF || tc.usage == errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if out != upstream || (usage != nil) != tc.usage {
			t.Errorf("%s: relayed %q, usage %v", tc.name, out, usage)
		}
		end := string(s.ErrorEvent(e))
		var names []string
		for n, ev := range strings.Split(strings.TrimSuffix(end, "\n\n"), "\n\n") {
			if ev == "" {
				continue
			}
			name, data, _ := strings.Cut(strings.TrimPrefix(ev, "event: "), "\ndata: ")
			names = append(names, name)
			var got struct {
				Type           string `json:"type"`
				SequenceNumber int    `json:"sequence_number"`
				Code           string `json:"code"`
				Response       struct {
					ID, Status, Model string
					Error             struct{ Code string }
				}
			}
			if err := json.Unmarshal([]byte(data), &got); err != nil {
				t.Fatalf("%s: %q: %v", tc.name, ev, err)
			}
			if want := tc.seq + n; got.Type != name || got.SequenceNumber != want {
				t.Errorf("%s: %s has sequence_number %d, want %d", tc.name, name, got.SequenceNumber, want)
			}
			if name == "error" && got.Code != "upstream_stream_broken" ||
				name == "response.failed" && (got.Response.ID != "resp_1" || got.Response.Status != "failed" || got.Response.Model != "gpt-5" || got.Response.Error.Code != "upstream_stream_broken") {
				t.Errorf("%s: %s", tc.name, data)
			}
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("%s: the stream's end is %v, want %v", tc.name, names, tc.want)
		}
	}

	s := newResponsesStream(strings.NewReader(respCreated + upstreamError))
	if out, _, err := drain(s); err == nil || strings.Contains(out, "boom") {
		t.Errorf("a failure before the answer: relayed %q, %v", out, err)
	}
}

// The Responses API's body goes to /responses with only the model renamed:
// it has no include_usage to ask for.
func TestOpenAIResponsesBody(t *testing.T) {
	body := `{"model":"m","stream":true,"stream_options":{"include_obfuscation":false},"input":"hi","prompt_cache_key":"k"}`
	got := string(openaiBody(exchange(t, llm.EndpointResponses, body, "gpt-5")))
	if want := strings.Replace(body, `"m"`, `"gpt-5"`, 1); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func provisionedOpenAI(t *testing.T, mode string) *OpenAI {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	o := &OpenAI{Responses: mode}
	if err := o.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return o
}

// In auto mode, a 404 or 405 on /responses sends that call again as a chat
// completion and every later call so at once; a 404 for an unknown model
// is the client's answer. The other modes never redo.
func TestOpenAIResponsesRedo(t *testing.T) {
	u := &route.Upstream{URL: "http://up"}
	newX := func() *route.Exchange {
		x := exchange(t, llm.EndpointResponses, `{"model":"m","input":"hi"}`, "")
		x.Upstream = u
		return x
	}
	path := func(o *OpenAI, x *route.Exchange) string {
		req, err := o.NewRequest(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		return req.URL.Path
	}
	notFound := []byte(`{"error":{"message":"Invalid URL (POST /v1/responses)","type":"invalid_request_error","code":null}}`)
	noModel := []byte(`{"error":{"message":"The model 'm' does not exist","type":"invalid_request_error","code":"model_not_found"}}`)
	noPrevious := []byte(`{"error":{"message":"Previous response with id 'resp_abc' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}`)

	o := provisionedOpenAI(t, "")
	if o.Responses != ResponsesAuto {
		t.Errorf("default mode %q", o.Responses)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	o.logger = zap.New(core)
	x := newX()
	if p := path(o, x); p != "/responses" || x.Translated {
		t.Errorf("auto, first: %s, translated %v", p, x.Translated)
	}
	if o.Redo(x, 404, noModel) || o.Redo(x, 404, noPrevious) || o.Redo(x, 400, notFound) || o.Redo(exchange(t, llm.EndpointChat, `{"model":"m"}`, ""), 404, notFound) {
		t.Error("redone for an unknown model, a 400 or a chat call")
	}
	if !o.Redo(x, 405, notFound) {
		t.Fatal("a 405 on /responses was not redone")
	}
	if p := path(o, x); p != "/chat/completions" || !x.Translated {
		t.Errorf("auto, redone: %s, translated %v", p, x.Translated)
	}
	if o.Redo(x, 404, notFound) {
		t.Error("a translated exchange was redone")
	}
	if x := newX(); path(o, x) != "/chat/completions" || !x.Translated {
		t.Error("auto, later call: not translated at once")
	}
	if x := newX(); !o.Redo(x, 404, notFound) || logs.Len() != 1 || !strings.Contains(logs.All()[0].Message, "no Responses API") {
		t.Errorf("a call sent before the fallback is redone, and the fallback logged once: %v", logs.All())
	}

	// A 404 from FastAPI (vLLM), from Go's mux, from llama.cpp.
	for _, body := range []string{`{"detail":"Not Found"}`, "404 page not found\n", `{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}`} {
		if !provisionedOpenAI(t, "").Redo(newX(), 404, []byte(body)) {
			t.Errorf("a 404 %s on /responses was not redone", body)
		}
	}

	native := provisionedOpenAI(t, ResponsesNative)
	if x := newX(); path(native, x) != "/responses" || native.Redo(x, 404, notFound) {
		t.Error("native mode translated or redone")
	}
	translated := provisionedOpenAI(t, ResponsesTranslate)
	if x := newX(); path(translated, x) != "/chat/completions" || !x.Translated {
		t.Error("translate mode did not translate")
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := (&OpenAI{Responses: "sometimes"}).Provision(ctx); err == nil || !strings.Contains(err.Error(), "native, translate, auto") {
		t.Errorf("bad mode: %v", err)
	}
}
