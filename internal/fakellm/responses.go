package fakellm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The fake's OpenAI Responses API: POST /v1/responses (and /responses),
// streamed or not, with the server's APIKey as a bearer token. Replies are
// made as for chat (numbered chunks, words as tokens, the same Behavior) in
// the Responses shapes: a response object whose output holds an assistant
// message item with one output_text part, then a function_call item when
// Behavior.ToolCall or Behavior.Agent scripts one; usage as input_tokens,
// output_tokens and total_tokens with their details; status "incomplete"
// when max_output_tokens cuts the reply. A stream is a sequence of named
// events, each with a sequence_number from 0: response.created,
// response.in_progress, then per item response.output_item.added, for a
// message response.content_part.added, response.output_text.delta per
// chunk, response.output_text.done and response.content_part.done, for a
// call response.function_call_arguments.delta (two pieces) and
// response.function_call_arguments.done, then response.output_item.done,
// and last response.completed (or response.incomplete) with the whole
// response and its usage. There is no [DONE]. Errors are OpenAI's;
// Behavior.NoResponses makes the path answer 404 as a server that speaks
// only chat completions does.

// responsesRequest is what the fake reads of a Responses request.
type responsesRequest struct {
	Model           string          `json:"model"`
	Input           json.RawMessage `json:"input"`
	Instructions    *string         `json:"instructions"`
	Tools           []responsesTool `json:"tools"`
	Stream          bool            `json:"stream"`
	MaxOutputTokens *int            `json:"max_output_tokens"`
}

type responsesTool struct {
	Type string `json:"type"`
	Name string `json:"name"`
	// Tools are those of a namespace, a group of tools under one name.
	Tools []responsesTool `json:"tools"`
}

// responsesItem is one item of a request's input: a message (whose type
// may be left out), a function call, a tool's output, a reasoning item, ...
type responsesItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Output  json.RawMessage `json:"output"`
}

func (t *turn) addTools(tools []responsesTool) {
	for _, tool := range tools {
		switch {
		case tool.Type == "namespace":
			t.addTools(tool.Tools)
		case tool.Name != "":
			t.tools = append(t.tools, tool.Name)
		default:
			// Built-in tools (local_shell, web_search, ...) go by their type.
			t.tools = append(t.tools, tool.Type)
		}
	}
}

// read counts the request's prompt words and reads its conversation, or
// says which parameter is wrong.
func (req *responsesRequest) read() (prompt int, t turn, e *apiError) {
	var texts []string
	if req.Instructions != nil {
		texts = append(texts, *req.Instructions)
	}
	var s string
	var items []responsesItem
	switch {
	case len(req.Input) == 0 || string(req.Input) == "null":
		return 0, t, &apiError{status: http.StatusBadRequest, Message: "Missing required parameter: 'input'.", Type: "invalid_request_error", Param: new("input")}
	case json.Unmarshal(req.Input, &s) == nil:
		texts = append(texts, s)
	case json.Unmarshal(req.Input, &items) == nil:
		for i, it := range items {
			var raw json.RawMessage
			switch {
			case it.Type == "" && it.Role == "":
				return 0, t, invalidParam("input", "Invalid 'input["+strconv.Itoa(i)+"]': an item needs a type or a role.")
			case it.Type == "" || it.Type == "message":
				raw = it.Content
			case isToolOutput(it.Type):
				raw = it.Output
			}
			got, err := contentTexts(raw)
			if err != nil {
				return 0, t, invalidParam("input", "Invalid 'input["+strconv.Itoa(i)+"]': "+err.Error())
			}
			texts = append(texts, got...)
			if isToolOutput(it.Type) {
				t.results = append(t.results, strings.Join(got, "\n"))
			}
			t.answered = isToolOutput(it.Type)
		}
	default:
		return 0, t, invalidParam("input", "Invalid 'input': expected a string or an array of input items.")
	}
	t.addTools(req.Tools)
	return max(words(texts...), 1), t, nil
}

// isToolOutput says an input item carries a tool's result:
// function_call_output, custom_tool_call_output, local_shell_call_output.
func isToolOutput(typ string) bool {
	return strings.HasSuffix(typ, "_call_output")
}

func serveResponses(s *Server, x *exchange, body []byte, readErr error) {
	var req responsesRequest
	parseErr := readErr
	if readErr == nil {
		parseErr = json.Unmarshal(body, &req)
	}
	s.recordAs(x, body, req.Model, req.Stream)
	b := s.behaviorFor(x, req.Model)
	switch {
	case b.NoResponses:
		x.fail(errInvalidURL(x.r))
		return
	case x.r.Method != http.MethodPost:
		x.fail(errMethod(x.r))
		return
	}
	if e := s.checkKey(x.r); e != nil {
		x.fail(e)
		return
	}
	if readErr != nil {
		status, msg := readError(readErr)
		x.fail(&apiError{status: status, Message: msg, Type: "invalid_request_error"})
		return
	}
	if parseErr != nil {
		x.fail(&apiError{status: http.StatusBadRequest, Message: "We could not parse the JSON body of your request: " + parseErr.Error(), Type: "invalid_request_error"})
		return
	}
	if req.Model == "" {
		x.fail(&apiError{status: http.StatusBadRequest, Message: "Missing required parameter: 'model'.", Type: "invalid_request_error", Param: new("model")})
		return
	}
	prompt, t, e := req.read()
	if e != nil {
		x.fail(e)
		return
	}
	if !x.sleep(b.Latency) {
		return
	}
	if b.Status >= 400 || b.ErrorBody != "" {
		x.failAs(b, req.Model)
		return
	}
	limit := 0
	if req.MaxOutputTokens != nil {
		limit = *req.MaxOutputTokens
	}
	p, name, args, calls := reply(b, t, limit, nil)
	r := &responsesReply{
		req: &req, b: b, id: newID("resp_"), created: time.Now().Unix(), prompt: prompt + b.CachedTokens,
		p: p, msgID: newID("msg_"),
	}
	if calls {
		r.call = &responsesCall{ID: newID("fc_"), Type: "function_call", Status: "completed", Arguments: args, CallID: newID("call_"), Name: name}
	}
	if req.Stream {
		r.stream(x)
		return
	}
	if !x.sleep(time.Duration(len(p.pieces)) * b.ChunkDelay) {
		return
	}
	if b.DropAfter > 0 {
		x.abort()
	}
	x.reply(r.object(true))
}

type responsesCall struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	Arguments string `json:"arguments"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
}

// responsesReply makes the objects of one reply.
type responsesReply struct {
	req     *responsesRequest
	b       Behavior
	id      string
	created int64
	prompt  int
	p       plan
	msgID   string
	call    *responsesCall
	seq     int
}

func (r *responsesReply) status() string {
	if r.p.finish == "length" {
		return "incomplete"
	}
	return "completed"
}

func textPart(text string) map[string]any {
	return map[string]any{"type": "output_text", "text": text, "annotations": []any{}, "logprobs": []any{}}
}

func (r *responsesReply) message(done bool) map[string]any {
	m := map[string]any{"id": r.msgID, "type": "message", "status": "in_progress", "role": "assistant", "content": []any{}}
	if done {
		m["status"] = "completed"
		m["content"] = []any{textPart(r.p.text())}
	}
	return m
}

// output is the response's output items, finished.
func (r *responsesReply) output() []any {
	out := []any{}
	if len(r.p.pieces) > 0 {
		out = append(out, r.message(true))
	}
	if r.call != nil {
		out = append(out, r.call)
	}
	return out
}

// object is the response object: in progress and empty, or done with its
// output and usage.
func (r *responsesReply) object(done bool) map[string]any {
	o := map[string]any{
		"id": r.id, "object": "response", "created_at": r.created, "status": "in_progress",
		"error": nil, "incomplete_details": nil, "instructions": r.req.Instructions,
		"max_output_tokens": r.req.MaxOutputTokens, "model": r.req.Model, "output": []any{},
		"parallel_tool_calls": true, "previous_response_id": nil,
		"reasoning": map[string]any{"effort": nil, "summary": nil}, "store": false,
		"temperature": 1.0, "text": map[string]any{"format": map[string]string{"type": "text"}},
		"tool_choice": "auto", "tools": []any{}, "top_p": 1.0, "truncation": "disabled",
		"usage": nil, "metadata": map[string]string{},
	}
	if !done {
		return o
	}
	o["status"] = r.status()
	o["output"] = r.output()
	if r.p.finish == "length" {
		o["incomplete_details"] = map[string]string{"reason": "max_output_tokens"}
	}
	if !r.b.NoUsage {
		out := len(r.p.pieces)
		if r.call != nil {
			out++
		}
		o["usage"] = map[string]any{
			"input_tokens":          r.prompt,
			"input_tokens_details":  map[string]int{"cached_tokens": r.b.CachedTokens},
			"output_tokens":         out,
			"output_tokens_details": map[string]int{"reasoning_tokens": 0},
			"total_tokens":          r.prompt + out,
		}
	}
	return o
}

// event sends one stream event, numbered.
func (r *responsesReply) event(x *exchange, typ string, fields map[string]any) bool {
	fields["type"] = typ
	fields["sequence_number"] = r.seq
	r.seq++
	return x.named(typ, fields)
}

func (r *responsesReply) stream(x *exchange) {
	b := r.b
	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	x.w.WriteHeader(http.StatusOK)
	if b.Stall > 0 && b.StallAfter == 0 && !(x.flush() && x.sleep(b.Stall)) {
		return
	}
	if !r.event(x, "response.created", map[string]any{"response": r.object(false)}) ||
		!r.event(x, "response.in_progress", map[string]any{"response": r.object(false)}) {
		return
	}
	if b.DropBeforeContent {
		x.abort()
	}
	index := 0
	if len(r.p.pieces) > 0 {
		at := map[string]any{"item_id": r.msgID, "output_index": index, "content_index": 0}
		with := func(k string, v any) map[string]any {
			m := map[string]any{k: v}
			for k, v := range at {
				m[k] = v
			}
			return m
		}
		if !r.event(x, "response.output_item.added", map[string]any{"output_index": index, "item": r.message(false)}) ||
			!r.event(x, "response.content_part.added", with("part", textPart(""))) {
			return
		}
		for i, piece := range r.p.pieces {
			if !x.sleep(b.ChunkDelay) {
				return
			}
			d := with("delta", piece)
			d["logprobs"] = []any{}
			if !r.event(x, "response.output_text.delta", d) {
				return
			}
			if i+1 == b.DropAfter {
				x.abort()
			}
			if b.Stall > 0 && i+1 == b.StallAfter && !x.sleep(b.Stall) {
				return
			}
		}
		done := with("text", r.p.text())
		done["logprobs"] = []any{}
		if !r.event(x, "response.output_text.done", done) ||
			!r.event(x, "response.content_part.done", with("part", textPart(r.p.text()))) ||
			!r.event(x, "response.output_item.done", map[string]any{"output_index": index, "item": r.message(true)}) {
			return
		}
		index++
	}
	if c := r.call; c != nil {
		started := *c
		started.Status, started.Arguments = "in_progress", ""
		half := len(c.Arguments) / 2
		if !r.event(x, "response.output_item.added", map[string]any{"output_index": index, "item": started}) ||
			!r.event(x, "response.function_call_arguments.delta", map[string]any{"item_id": c.ID, "output_index": index, "delta": c.Arguments[:half]}) ||
			!r.event(x, "response.function_call_arguments.delta", map[string]any{"item_id": c.ID, "output_index": index, "delta": c.Arguments[half:]}) ||
			!r.event(x, "response.function_call_arguments.done", map[string]any{"item_id": c.ID, "output_index": index, "name": c.Name, "arguments": c.Arguments}) ||
			!r.event(x, "response.output_item.done", map[string]any{"output_index": index, "item": c}) {
			return
		}
	}
	end := "response.completed"
	if r.status() == "incomplete" {
		end = "response.incomplete"
	}
	r.event(x, end, map[string]any{"response": r.object(true)})
}
