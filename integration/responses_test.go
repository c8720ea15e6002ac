package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// responsesSite serves the Responses API from each kind of upstream, all on
// the fake provider: an openai upstream that speaks it, one that speaks
// chat completions only (found out in auto mode, or told with responses
// translate), and Anthropic and Gemini upstreams.
const responsesSite = `:{PORT} {
	llm_stats {
		log
	}
	llm_auth {
		static {
			key sk-resp-alice {
				user alice
			}
			key sk-resp-quota {
				user quentin
				quota {QUOTA}
			}
		}
	}
	llm_route {
		model native {
			upstream openai {UPSTREAM} ` + upstreamKey + ` {
				model gpt-5-codex
			}
		}
		model chat-auto {
			upstream openai {UPSTREAM} ` + upstreamKey + ` {
				model vllm-auto
			}
		}
		model chat-translate {
			upstream openai {UPSTREAM} ` + upstreamKey + ` {
				model vllm-told
				responses translate
			}
		}
		model claude {
			upstream anthropic {UPSTREAM} ` + upstreamKey + ` {
				model claude-sonnet-4-5
			}
		}
		model gemini {
			upstream gemini {UPSTREAM} ` + upstreamKey + ` {
				model gemini-2.5-flash
			}
		}
	}
}
`

// responsesUpstream is what each model's calls must reach on the fake: the
// path (a prefix for Gemini, whose method follows the model) and the
// header that carries the upstream's key.
var responsesUpstream = map[string]struct{ path, keyHeader, keyPrefix string }{
	"native":         {"/v1/responses", "Authorization", "Bearer "},
	"chat-auto":      {"/v1/chat/completions", "Authorization", "Bearer "},
	"chat-translate": {"/v1/chat/completions", "Authorization", "Bearer "},
	"claude":         {"/v1/messages", "X-Api-Key", ""},
	"gemini":         {"/v1/models/gemini-2.5-flash:", "X-Goog-Api-Key", ""},
}

var responsesModels = []string{"native", "chat-auto", "chat-translate", "claude", "gemini"}

func startResponses(t *testing.T, fake *fakellm.Server, quota int) *gateway {
	t.Helper()
	behave(fake, fake.Behavior)
	if quota == 0 {
		quota = 1 << 40
	}
	return start(t, fake, strings.ReplaceAll(responsesSite, "{QUOTA}", fmt.Sprint(quota)))
}

// behave sets how the fake answers. Both chat-only upstreams answer 404 on
// /responses whatever else it does, as vLLM's older releases and many
// OpenAI-compatible servers do.
func behave(fake *fakellm.Server, b fakellm.Behavior) {
	fake.SetBehavior(b)
	b.NoResponses = true
	for _, m := range []string{"vllm-auto", "vllm-told"} {
		fake.SetModelBehavior(m, b)
	}
}

// checkUpstream checks the last request the fake got for model: its path,
// the upstream's key, and nothing of the client's key.
func checkUpstream(t *testing.T, fake *fakellm.Server, model, clientKey string) fakellm.Request {
	t.Helper()
	r, ok := fake.LastRequest()
	if !ok {
		t.Fatal("nothing reached the upstream")
	}
	want := responsesUpstream[model]
	if !strings.HasPrefix(r.Path, want.path) {
		t.Errorf("%s: upstream got %s %s, want %s", model, r.Method, r.Path, want.path)
	}
	if got := r.Header.Get(want.keyHeader); got != want.keyPrefix+upstreamKey {
		t.Errorf("%s: upstream key header %s = %q", model, want.keyHeader, got)
	}
	for name, values := range r.Header {
		if strings.Contains(strings.Join(values, " "), clientKey) {
			t.Errorf("%s: the client's key went upstream in %s", model, name)
		}
	}
	if strings.Contains(string(r.Body), clientKey) {
		t.Errorf("%s: the client's key went upstream in the body", model)
	}
	return r
}

// checkRecord checks the newest usage record, the n-th, against the usage
// the client got.
func checkRecord(t *testing.T, g *gateway, n int, model string, stream bool, usage responses.ResponseUsage) map[string]any {
	t.Helper()
	line := g.LastStats(t, n)
	if line["api"] != "openai.responses" || line["endpoint"] != "responses" || line["model"] != model ||
		line["stream"] != stream || line["status"] != float64(200) || line["usage_source"] != "upstream" {
		t.Errorf("%s: record %v", model, line)
	}
	if line["prompt_tokens"] != float64(usage.InputTokens) || line["completion_tokens"] != float64(usage.OutputTokens) ||
		line["total_tokens"] != float64(usage.TotalTokens) || usage.TotalTokens == 0 {
		t.Errorf("%s: record's usage %v, the client's %+v", model, line, usage)
	}
	// Every API of the fake reports 4 cached tokens, in its own fields.
	if usage.InputTokensDetails.CachedTokens != 4 || line["cached_tokens"] != float64(4) {
		t.Errorf("%s: cached tokens: client %d, record %v", model, usage.InputTokensDetails.CachedTokens, line["cached_tokens"])
	}
	return line
}

var shellTool = responses.ToolParamOfFunction("shell", map[string]any{
	"type":       "object",
	"properties": map[string]any{"command": map[string]any{"type": "string"}},
	"required":   []string{"command"},
}, false)

// TestResponses calls each kind of upstream through real Caddy with the
// OpenAI SDK's Responses client: instructions and a prompt, then a
// streamed turn in which the model calls a tool, then the turn with the
// tool's output, stateless (the whole input each time). Each call reaches
// the right upstream path with the upstream's key only, and is recorded
// once with the upstream's usage under the Responses API.
func TestResponses(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 3, CachedTokens: 4}}
	g := startResponses(t, fake, 0)
	c := client(g, "sk-resp-alice")
	ctx := context.Background()
	records := 0
	for _, model := range responsesModels {
		t.Run(model, func(t *testing.T) {
			behave(fake, fakellm.Behavior{Chunks: 3, CachedTokens: 4})
			resp, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model:        model,
				Instructions: openai.String("be brief"),
				Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("hello there")},
				Store:        openai.Bool(false),
			})
			if err != nil {
				t.Fatal(err)
			}
			if resp.OutputText() != "chunk0 chunk1 chunk2" || resp.Status != responses.ResponseStatusCompleted || resp.Object != "response" {
				t.Errorf("answer %q, status %q, object %q", resp.OutputText(), resp.Status, resp.Object)
			}
			r := checkUpstream(t, fake, model, "sk-resp-alice")
			if !strings.Contains(string(r.Body), "be brief") || !strings.Contains(string(r.Body), "hello there") {
				t.Errorf("the instructions or the input did not reach the upstream: %s", r.Body)
			}
			records++
			checkRecord(t, g, records, model, false, resp.Usage)

			// A streamed turn that calls the tool.
			behave(fake, fakellm.Behavior{Chunks: 2, CachedTokens: 4, ToolCall: &fakellm.ToolCall{Arguments: `{"command":"ls"}`}})
			input := responses.ResponseInputParam{
				responses.ResponseInputItemParamOfMessage("list the files", responses.EasyInputMessageRoleUser),
			}
			params := responses.ResponseNewParams{
				Model: model,
				Input: responses.ResponseNewParamsInputUnion{OfInputItemList: input},
				Tools: []responses.ToolUnionParam{shellTool},
				Store: openai.Bool(false),
			}
			stream := c.Responses.NewStreaming(ctx, params)
			var final *responses.Response
			var text strings.Builder
			var types []string
			seq := int64(0)
			for stream.Next() {
				ev := stream.Current()
				types = append(types, ev.Type)
				if ev.SequenceNumber != seq {
					t.Errorf("event %d (%s) has sequence_number %d", seq, ev.Type, ev.SequenceNumber)
				}
				seq++
				switch ev.Type {
				case "response.output_text.delta":
					text.WriteString(ev.Delta)
				case "response.completed":
					final = &ev.Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if final == nil {
				t.Fatalf("no response.completed in %v", types)
			}
			for _, want := range []string{"response.created", "response.output_item.added", "response.output_text.delta",
				"response.function_call_arguments.delta", "response.output_item.done"} {
				if !slices.Contains(types, want) {
					t.Errorf("no %s event in %v", want, types)
				}
			}
			var call *responses.ResponseFunctionToolCall
			for _, item := range final.Output {
				if item.Type == "function_call" {
					fc := item.AsFunctionCall()
					call = &fc
				}
			}
			if call == nil || call.Name != "shell" || call.Arguments != `{"command":"ls"}` || call.CallID == "" {
				t.Fatalf("streamed tool call: %+v in %+v", call, final.Output)
			}
			if text.String() != "chunk0 chunk1" {
				t.Errorf("streamed text %q", text.String())
			}
			checkUpstream(t, fake, model, "sk-resp-alice")
			records++
			checkRecord(t, g, records, model, true, final.Usage)

			// The next turn sends the call back, with its item id as
			// Codex keeps it, and the tool's output.
			fc := responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name)
			fc.OfFunctionCall.ID = openai.String(call.ID)
			output := responses.ResponseInputItemParamOfFunctionCallOutput("main.go\nREADME.md")
			output.OfFunctionCallOutput.CallID = openai.String(call.CallID)
			params.Input.OfInputItemList = append(input, fc, output)
			resp, err = c.Responses.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if resp.OutputText() != "chunk0 chunk1" || resp.Status != responses.ResponseStatusCompleted {
				t.Errorf("after the tool's output: %q, %q, output %+v", resp.OutputText(), resp.Status, resp.Output)
			}
			for _, item := range resp.Output {
				if item.Type == "function_call" {
					t.Errorf("the tool was called again: %+v", item)
				}
			}
			r = checkUpstream(t, fake, model, "sk-resp-alice")
			if !strings.Contains(string(r.Body), "README.md") || !strings.Contains(string(r.Body), call.CallID) {
				t.Errorf("the tool's output did not reach the upstream: %s", r.Body)
			}
			records++
			checkRecord(t, g, records, model, false, resp.Usage)
		})
	}
	if lines := g.StatsLines(t, records); len(lines) != records {
		t.Errorf("%d records for %d calls", len(lines), records)
	}
}

// TestResponsesAuto: an openai upstream in auto mode that answers 404 on
// /responses gets that same call as a chat completion, and every later
// call goes there at once; one told "responses translate" never sees
// /responses at all.
func TestResponsesAuto(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 3}}
	g := startResponses(t, fake, 0)
	c := client(g, "sk-resp-alice")
	ask := func(model string) []fakellm.Request {
		t.Helper()
		fake.Reset()
		resp, err := c.Responses.New(context.Background(), responses.ResponseNewParams{
			Model: model, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.OutputText() != "chunk0 chunk1 chunk2" {
			t.Errorf("%s: answer %q", model, resp.OutputText())
		}
		return fake.Requests()
	}
	paths := func(rs []fakellm.Request) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Path)
		}
		return out
	}
	if got := paths(ask("chat-auto")); len(got) != 2 || got[0] != "/v1/responses" || got[1] != "/v1/chat/completions" {
		t.Errorf("first call: upstream got %v, want /v1/responses then /v1/chat/completions", got)
	}
	for i := 0; i < 2; i++ {
		if got := paths(ask("chat-auto")); len(got) != 1 || got[0] != "/v1/chat/completions" {
			t.Errorf("later call: upstream got %v, want /v1/chat/completions alone", got)
		}
	}
	if got := paths(ask("chat-translate")); len(got) != 1 || got[0] != "/v1/chat/completions" {
		t.Errorf("translate: upstream got %v", got)
	}
	// One call, one record and one try each, the fallback included.
	lines := g.StatsLines(t, 4)
	if len(lines) != 4 || lines[0]["attempts"] != float64(1) || lines[0]["api"] != "openai.responses" {
		t.Errorf("records %v", lines)
	}
	// A native upstream still gets /responses.
	if got := paths(ask("native")); len(got) != 1 || got[0] != "/v1/responses" {
		t.Errorf("native: upstream got %v", got)
	}
}

// codexParams is a request as the Codex CLI sends it: built-in tools
// beside its function tools, reasoning with encrypted content asked back,
// a prompt cache key, client metadata, store: false, and an id on every
// input item of the history, a reasoning item among them.
func codexParams(model string) (responses.ResponseNewParams, []option.RequestOption) {
	prior := responses.ResponseInputItemParamOfOutputMessage([]responses.ResponseOutputMessageContentUnionParam{{
		OfOutputText: &responses.ResponseOutputTextParam{Text: "I will look.", Annotations: []responses.ResponseOutputTextAnnotationUnionParam{}},
	}}, "msg_0001", responses.ResponseOutputMessageStatusCompleted)
	reasoning := responses.ResponseInputItemParamOfReasoning("rs_0001", []responses.ResponseReasoningItemSummaryParam{{Text: "the user wants files"}})
	reasoning.OfReasoning.EncryptedContent = openai.String("gAAAA-opaque")
	params := responses.ResponseNewParams{
		Model:        model,
		Instructions: openai.String("You are a coding agent."),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("list the files", responses.EasyInputMessageRoleUser),
			reasoning,
			prior,
			responses.ResponseInputItemParamOfMessage("go on", responses.EasyInputMessageRoleUser),
		}},
		Tools: []responses.ToolUnionParam{
			shellTool,
			responses.ToolParamOfWebSearch(responses.WebSearchToolTypeWebSearch),
		},
		ToolChoice:        responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsAuto)},
		ParallelToolCalls: openai.Bool(false),
		Store:             openai.Bool(false),
		Include:           []responses.ResponseIncludable{responses.ResponseIncludableReasoningEncryptedContent},
		PromptCacheKey:    openai.String("019a-session"),
		Reasoning:         shared.ReasoningParam{Effort: shared.ReasoningEffortMedium, Summary: shared.ReasoningSummaryAuto},
	}
	// Codex's fields the SDK has no type for, and a namespace group of
	// tools as recent versions send.
	opts := []option.RequestOption{
		option.WithJSONSet("client_metadata", map[string]any{"originator": "codex_exec"}),
		option.WithJSONSet("tools.2", map[string]any{"type": "namespace", "name": "mcp__files", "tools": []any{
			map[string]any{"type": "function", "name": "read", "parameters": map[string]any{"type": "object"}},
		}}),
	}
	return params, opts
}

// TestResponsesCodex: what the Codex CLI sends is accepted from every kind
// of upstream. A native upstream gets it all; a translated one gets the
// function tools and the conversation, and none of the built-in tools.
func TestResponsesCodex(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey, Behavior: fakellm.Behavior{Chunks: 3, CachedTokens: 4}}
	g := startResponses(t, fake, 0)
	c := client(g, "sk-resp-alice")
	for n, model := range responsesModels {
		params, opts := codexParams(model)
		stream := c.Responses.NewStreaming(context.Background(), params, opts...)
		var final *responses.Response
		for stream.Next() {
			if ev := stream.Current(); ev.Type == "response.completed" {
				final = &ev.Response
			}
		}
		if err := stream.Err(); err != nil || final == nil {
			t.Fatalf("%s: %v, final %v", model, err, final)
		}
		if final.OutputText() != "chunk0 chunk1 chunk2" {
			t.Errorf("%s: answer %q", model, final.OutputText())
		}
		r := checkUpstream(t, fake, model, "sk-resp-alice")
		body := string(r.Body)
		if !strings.Contains(body, "list the files") || !strings.Contains(body, "go on") || !strings.Contains(body, "coding agent") || !strings.Contains(body, `"shell"`) {
			t.Errorf("%s: the conversation or the function tool did not reach the upstream: %s", model, body)
		}
		if model == "native" {
			for _, field := range []string{`"prompt_cache_key":"019a-session"`, `"client_metadata"`, `"web_search"`, `"namespace"`, `"rs_0001"`, `"include"`} {
				if !strings.Contains(body, field) {
					t.Errorf("native: %s did not pass through: %s", field, body)
				}
			}
		} else if strings.Contains(body, "web_search") || strings.Contains(body, "client_metadata") || strings.Contains(body, "019a-session") {
			t.Errorf("%s: built-in tools or Codex's metadata went to a translated upstream: %s", model, body)
		}
		checkRecord(t, g, n+1, model, true, final.Usage)
	}
}

// TestResponsesRefused: what a translated upstream cannot do is a clear
// 400 before anything is sent, and the native upstream takes it.
func TestResponsesRefused(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey}
	g := startResponses(t, fake, 0)
	c := client(g, "sk-resp-alice")
	for _, model := range []string{"chat-translate", "claude", "gemini"} {
		fake.Reset()
		_, err := c.Responses.New(context.Background(), responses.ResponseNewParams{
			Model:              model,
			PreviousResponseID: openai.String("resp_0123"),
			Input:              responses.ResponseNewParamsInputUnion{OfString: openai.String("and then?")},
		})
		e := apiError(t, err, 400)
		if !strings.Contains(e.Message, "previous_response_id") || !strings.Contains(e.Message, "whole conversation") {
			t.Errorf("%s: previous_response_id refused with %q", model, e.Message)
		}

		params, _ := codexParams(model)
		params.ToolChoice = responses.ResponseNewParamsToolChoiceUnion{OfHostedTool: &responses.ToolChoiceTypesParam{Type: responses.ToolChoiceTypesTypeWebSearchPreview}}
		params.Tools = append(params.Tools, responses.ToolParamOfWebSearchPreview(responses.WebSearchPreviewToolTypeWebSearchPreview))
		_, err = c.Responses.New(context.Background(), params)
		e = apiError(t, err, 400)
		if !strings.Contains(e.Message, "tool_choice") || !strings.Contains(e.Message, "web_search_preview") {
			t.Errorf("%s: tool_choice of a built-in tool refused with %q", model, e.Message)
		}
		if n := fake.Count(); n != 0 {
			t.Errorf("%s: %d requests reached the upstream", model, n)
		}
	}
	lines := g.StatsLines(t, 6)
	if lines[0]["status"] != float64(400) || lines[0]["api"] != "openai.responses" {
		t.Errorf("record of a refusal: %v", lines[0])
	}
}

// TestResponsesStreamCut: a stream the upstream cuts after its first
// content ends with the Responses API's error event and response.failed,
// numbered on from the events before, and the call is recorded once, as
// truncated.
func TestResponsesStreamCut(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey}
	g := startResponses(t, fake, 0)
	c := client(g, "sk-resp-alice")
	for n, model := range []string{"native", "claude"} {
		behave(fake, fakellm.Behavior{Chunks: 5, DropAfter: 2})
		stream := c.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
			Model: model, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("x")},
		})
		var text strings.Builder
		var types []string
		seq := int64(0)
		for stream.Next() {
			ev := stream.Current()
			types = append(types, ev.Type)
			if ev.SequenceNumber != seq {
				t.Errorf("%s: event %d (%s) has sequence_number %d", model, seq, ev.Type, ev.SequenceNumber)
			}
			seq++
			if ev.Type == "response.output_text.delta" {
				text.WriteString(ev.Delta)
			}
		}
		if err := stream.Err(); err != nil {
			t.Errorf("%s: %v", model, err)
		}
		if text.String() != "chunk0 chunk1" || len(types) < 2 || types[len(types)-2] != "error" || types[len(types)-1] != "response.failed" {
			t.Errorf("%s: cut stream: text %q, events %v", model, text.String(), types)
		}
		line := g.LastStats(t, n+1)
		if line["truncated"] != true || line["error_code"] != "upstream_stream_broken" {
			t.Errorf("%s: record %v", model, line)
		}
	}
}

// TestResponsesQuota: a Responses call's usage is charged to the key's
// quota as a chat call's is, so the next call over it is refused.
func TestResponsesQuota(t *testing.T) {
	fake := &fakellm.Server{APIKey: upstreamKey}
	g := startResponses(t, fake, 60)
	c := client(g, "sk-resp-quota")
	ctx := context.Background()
	params := responses.ResponseNewParams{
		Model: "claude", MaxOutputTokens: openai.Int(3),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("one two three")},
	}
	resp, err := c.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	used := resp.Usage.TotalTokens
	if resp.Status != responses.ResponseStatusIncomplete || resp.IncompleteDetails.Reason != "max_output_tokens" || used == 0 {
		t.Errorf("max_output_tokens 3 of 5 chunks: status %q, details %+v, usage %+v", resp.Status, resp.IncompleteDetails, resp.Usage)
	}
	if line := g.LastStats(t, 1); line["total_tokens"] != float64(used) || line["user"] != "quentin" {
		t.Errorf("record %v", line)
	}
	// The request's estimate (its bytes / 4 and max_output_tokens) no
	// longer fits beside what the first call used.
	params.MaxOutputTokens = openai.Int(60 - used)
	_, err = c.Responses.New(ctx, params)
	e := apiError(t, err, 429)
	if !strings.Contains(e.Message, fmt.Sprintf("Used %d,", used)) || e.Code != "insufficient_quota" {
		t.Errorf("refusal %s does not count the first call's %d tokens", e.RawJSON(), used)
	}
}
