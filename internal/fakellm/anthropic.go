package fakellm

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// The fake's Anthropic Messages API: POST /v1/messages, streamed or not,
// and POST /v1/messages/count_tokens. A request must carry the server's
// APIKey (when set) in x-api-key, or as a bearer token as Anthropic's newer
// SDKs send it, and an anthropic-version header.
// Replies are made as for OpenAI (numbered chunks, words as tokens, the
// same Behavior), in Anthropic's shapes: a thinking block first when the
// request enables thinking, a tool_use block last when Behavior.ToolCall
// scripts one, usage with the cache fields, stop_reason for why it ended,
// and Anthropic's error bodies ({"type":"error","error":{...}}, 529
// overloaded_error).

// anthropicRequest is what the fake reads of a Messages request.
type anthropicRequest struct {
	Model     string             `json:"model"`
	MaxTokens *int               `json:"max_tokens"`
	System    json.RawMessage    `json:"system"`
	Messages  []anthropicMessage `json:"messages"`
	Tools     []struct {
		Name string `json:"name"`
	} `json:"tools"`
	StopSequences []string `json:"stop_sequences"`
	Stream        bool     `json:"stream"`
	Thinking      *struct {
		Type string `json:"type"`
	} `json:"thinking"`
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anthropicBlock struct {
	Type    string          `json:"type"`
	Text    string          `json:"text"`
	Content json.RawMessage `json:"content"`
}

// anthropicText returns the texts of content given as a string or as
// blocks, tool results included, and the texts of its tool results alone.
func anthropicText(raw json.RawMessage) (texts, results []string, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil, true
	}
	var blocks []anthropicBlock
	if json.Unmarshal(raw, &blocks) != nil {
		return nil, nil, false
	}
	for _, b := range blocks {
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "tool_result":
			inner, _, _ := anthropicText(b.Content)
			texts = append(texts, inner...)
			// A result with no text still counts as one that came back.
			results = append(results, strings.Join(inner, "\n"))
		}
	}
	return texts, results, true
}

// read counts the request's prompt words and reads its conversation.
func (req *anthropicRequest) read() (prompt int, t turn, ok bool) {
	texts, _, ok := anthropicText(req.System)
	if !ok {
		return 0, t, false
	}
	for i, m := range req.Messages {
		text, results, ok := anthropicText(m.Content)
		if !ok {
			return 0, t, false
		}
		texts = append(texts, text...)
		t.results = append(t.results, results...)
		t.answered = i == len(req.Messages)-1 && len(results) > 0
	}
	for _, tool := range req.Tools {
		t.tools = append(t.tools, tool.Name)
	}
	return max(words(texts...), 1), t, true
}

// anthropicFail answers with an Anthropic error.
func (x *exchange) anthropicFail(status int, typ, msg string) {
	b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": msg}})
	x.send(status, b)
}

// anthropicFailAs answers with the error a Behavior asks for.
func (x *exchange) anthropicFailAs(b Behavior, model string) {
	status := b.Status
	if status < 400 {
		status = http.StatusInternalServerError
	}
	if b.ErrorBody != "" {
		x.send(status, []byte(b.ErrorBody))
		return
	}
	typ, msg := "api_error", "Internal server error"
	switch {
	case status == http.StatusUnauthorized:
		typ, msg = "authentication_error", "invalid x-api-key"
	case status == http.StatusForbidden:
		typ, msg = "permission_error", "Your API key does not have permission to use the specified resource."
	case status == http.StatusNotFound:
		typ, msg = "not_found_error", "model: "+model
	case status == http.StatusRequestEntityTooLarge:
		typ, msg = "request_too_large", "Request exceeds the maximum allowed number of bytes."
	case status == http.StatusTooManyRequests:
		typ, msg = "rate_limit_error", "Number of requests has exceeded your per-minute rate limit."
	case status == 529 || status == http.StatusServiceUnavailable:
		typ, msg = "overloaded_error", "Overloaded"
	case status < 500:
		typ, msg = "invalid_request_error", http.StatusText(status)
	}
	x.anthropicFail(status, typ, msg)
}

// anthropicCheck reads and checks a Messages request as Anthropic does,
// answering the error itself when it fails.
func (s *Server) anthropicCheck(x *exchange, body []byte, readErr error, needMaxTokens bool) (*anthropicRequest, int, turn, bool) {
	var req anthropicRequest
	parseErr := readErr
	if readErr == nil {
		parseErr = json.Unmarshal(body, &req)
	}
	s.recordAs(x, body, req.Model, req.Stream)
	if x.r.Method != http.MethodPost {
		x.anthropicFail(http.StatusMethodNotAllowed, "invalid_request_error", "Method Not Allowed")
		return nil, 0, turn{}, false
	}
	if s.APIKey != "" && x.r.Header.Get("x-api-key") != s.APIKey && s.checkKey(x.r) != nil {
		x.anthropicFail(http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return nil, 0, turn{}, false
	}
	if x.r.Header.Get("anthropic-version") == "" {
		x.anthropicFail(http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		return nil, 0, turn{}, false
	}
	if readErr != nil {
		status, msg := readError(readErr)
		x.anthropicFail(status, "invalid_request_error", msg)
		return nil, 0, turn{}, false
	}
	if parseErr != nil {
		x.anthropicFail(http.StatusBadRequest, "invalid_request_error", "There was an issue with your request body: "+parseErr.Error())
		return nil, 0, turn{}, false
	}
	prompt, t, ok := req.read()
	switch {
	case req.Model == "":
		x.anthropicFail(http.StatusBadRequest, "invalid_request_error", "model: Field required")
	case needMaxTokens && req.MaxTokens == nil:
		x.anthropicFail(http.StatusBadRequest, "invalid_request_error", "max_tokens: Field required")
	case len(req.Messages) == 0:
		x.anthropicFail(http.StatusBadRequest, "invalid_request_error", "messages: at least one message is required")
	case !ok:
		x.anthropicFail(http.StatusBadRequest, "invalid_request_error", "messages: content must be a string or an array of content blocks")
	default:
		return &req, prompt, t, true
	}
	return nil, 0, turn{}, false
}

func serveAnthropicCount(s *Server, x *exchange, body []byte, readErr error) {
	_, prompt, _, ok := s.anthropicCheck(x, body, readErr, false)
	if !ok {
		return
	}
	x.reply(map[string]int{"input_tokens": prompt})
}

// anthropicUsage is the usage of a reply, or nil when b leaves it out.
func anthropicUsage(b Behavior, prompt, output int) map[string]int {
	if b.NoUsage {
		return nil
	}
	return map[string]int{
		"input_tokens":                prompt,
		"output_tokens":               output,
		"cache_creation_input_tokens": b.CacheCreationTokens,
		"cache_read_input_tokens":     b.CachedTokens,
	}
}

const (
	fakeThought   = "Thinking about it."
	fakeSignature = "ZmFrZS1zaWduYXR1cmU="
)

func serveAnthropic(s *Server, x *exchange, body []byte, readErr error) {
	req, prompt, t, ok := s.anthropicCheck(x, body, readErr, true)
	if !ok {
		return
	}
	b := s.behaviorFor(x, req.Model)
	if !x.sleep(b.Latency) {
		return
	}
	if b.Status >= 400 || b.ErrorBody != "" {
		x.anthropicFailAs(b, req.Model)
		return
	}
	p, toolName, toolArgs, calls := reply(b, t, *req.MaxTokens, req.StopSequences)
	thinks := req.Thinking != nil && req.Thinking.Type != "disabled"
	stop := map[string]string{"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}[p.finish]
	output := len(p.pieces)
	if calls {
		stop = "tool_use"
		output++
	}
	if thinks {
		output++
	}
	var stopSeq any
	if p.stopSeq != "" {
		stopSeq = p.stopSeq
	}
	id, toolID := newID("msg_"), newID("toolu_")
	if !req.Stream {
		if !x.sleep(time.Duration(len(p.pieces)) * b.ChunkDelay) {
			return
		}
		if b.DropAfter > 0 {
			x.abort()
		}
		content := []any{}
		if thinks {
			content = append(content, map[string]string{"type": "thinking", "thinking": fakeThought, "signature": fakeSignature})
		}
		if text := p.text(); text != "" {
			content = append(content, map[string]string{"type": "text", "text": text})
		}
		if calls {
			content = append(content, map[string]any{"type": "tool_use", "id": toolID, "name": toolName, "input": json.RawMessage(toolArgs)})
		}
		msg := map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": req.Model, "content": content,
			"stop_reason": stop, "stop_sequence": stopSeq,
		}
		if u := anthropicUsage(b, prompt, output); u != nil {
			msg["usage"] = u
		}
		x.reply(msg)
		return
	}

	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	x.w.WriteHeader(http.StatusOK)
	start := map[string]any{
		"id": id, "type": "message", "role": "assistant", "model": req.Model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil,
	}
	if u := anthropicUsage(b, prompt, 1); u != nil {
		start["usage"] = u
	}
	if !x.named("message_start", map[string]any{"type": "message_start", "message": start}) {
		return
	}
	index := 0
	block := func(content any, deltas ...any) bool {
		if !x.named("content_block_start", map[string]any{"type": "content_block_start", "index": index, "content_block": content}) {
			return false
		}
		for _, d := range deltas {
			if !x.named("content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": d}) {
				return false
			}
		}
		index++
		return x.named("content_block_stop", map[string]any{"type": "content_block_stop", "index": index - 1})
	}
	if thinks && !block(map[string]string{"type": "thinking", "thinking": "", "signature": ""},
		map[string]string{"type": "thinking_delta", "thinking": fakeThought},
		map[string]string{"type": "signature_delta", "signature": fakeSignature}) {
		return
	}
	if len(p.pieces) > 0 {
		if !x.named("content_block_start", map[string]any{"type": "content_block_start", "index": index, "content_block": map[string]string{"type": "text", "text": ""}}) ||
			!x.named("ping", map[string]string{"type": "ping"}) {
			return
		}
		for i, piece := range p.pieces {
			if !x.sleep(b.ChunkDelay) {
				return
			}
			d := map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]string{"type": "text_delta", "text": piece}}
			if !x.named("content_block_delta", d) {
				return
			}
			if i+1 == b.DropAfter {
				x.abort()
			}
		}
		if !x.named("content_block_stop", map[string]any{"type": "content_block_stop", "index": index}) {
			return
		}
		index++
	}
	// The arguments come in two pieces, as a model streams them.
	half := len(toolArgs) / 2
	if calls && !block(map[string]any{"type": "tool_use", "id": toolID, "name": toolName, "input": map[string]any{}},
		map[string]string{"type": "input_json_delta", "partial_json": toolArgs[:half]},
		map[string]string{"type": "input_json_delta", "partial_json": toolArgs[half:]}) {
		return
	}
	end := map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": stopSeq}}
	if !b.NoUsage {
		end["usage"] = map[string]int{"output_tokens": output}
	}
	if !x.named("message_delta", end) {
		return
	}
	x.named("message_stop", map[string]string{"type": "message_stop"})
}

// named sends v as one server-sent event with an event name, at once.
func (x *exchange) named(name string, v any) bool {
	if x.r.Context().Err() != nil {
		x.gone = true
		return false
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the server's own values always marshal
	}
	p := make([]byte, 0, len(b)+len(name)+16)
	p = append(p, "event: "...)
	p = append(p, name...)
	p = append(p, "\ndata: "...)
	p = append(p, b...)
	p = append(p, "\n\n"...)
	return x.write(p) && x.flush()
}
