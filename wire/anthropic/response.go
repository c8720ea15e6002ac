package anthropic

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
)

type response struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Role         string  `json:"role"`
	Model        string  `json:"model"`
	Content      []block `json:"content"`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        *usage  `json:"usage,omitempty"`
}

// usage is Anthropic's usage object, whose input_tokens leaves out the
// tokens read from or written to the prompt cache.
type usage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens,omitempty"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens,omitempty"`
}

func (u *usage) canonical() *llm.Usage {
	prompt := u.InputTokens + u.CacheReadInputTokens + u.CacheCreationInputTokens
	return &llm.Usage{
		PromptTokens:        prompt,
		CompletionTokens:    u.OutputTokens,
		TotalTokens:         prompt + u.OutputTokens,
		CachedTokens:        u.CacheReadInputTokens,
		CacheCreationTokens: u.CacheCreationInputTokens,
	}
}

func usageOf(u *llm.Usage) *usage {
	if u == nil {
		return &usage{}
	}
	return &usage{
		InputTokens:              max(u.PromptTokens-u.CachedTokens-u.CacheCreationTokens, 0),
		OutputTokens:             u.CompletionTokens,
		CacheCreationInputTokens: u.CacheCreationTokens,
		CacheReadInputTokens:     u.CachedTokens,
	}
}

// finishReason maps a stop_reason to the canonical finish reason.
func finishReason(stop string) wire.FinishReason {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return wire.FinishLength
	case "tool_use":
		return wire.FinishToolCalls
	case "refusal":
		return wire.FinishContentFilter
	}
	// end_turn, stop_sequence, pause_turn.
	return wire.FinishStop
}

// stopReason maps a canonical finish reason to a stop_reason.
func stopReason(f wire.FinishReason, stopSequence string) string {
	switch f {
	case wire.FinishLength:
		return "max_tokens"
	case wire.FinishToolCalls:
		return "tool_use"
	case wire.FinishContentFilter:
		return "refusal"
	}
	if stopSequence != "" {
		return "stop_sequence"
	}
	return "end_turn"
}

// DecodeResponse reads an upstream's Messages response.
func DecodeResponse(body []byte) (*wire.Response, error) {
	if out, ok := scanResponse(body); ok {
		return out, nil
	}
	return decodeResponse(body)
}

// The members scanResponse reads, as response and block name them, in the
// order of its ScanMembers values.
var (
	responseFields = []string{"type", "id", "model", "content", "stop_reason", "stop_sequence", "usage"}
	answerFields   = []string{"type", "text", "id", "name", "input", "thinking", "signature", "cache_control"}
)

// scanResponse reads, by scanning, an answer of text, thinking and tool_use
// blocks, as most are: decoding it cost as much as translating a whole
// stream. It reports false for anything it cannot read as decodeResponse
// does, which DecodeResponse then decodes.
func scanResponse(body []byte) (*wire.Response, bool) {
	var typ, id, model, content, stop, stopSeq, u []byte
	if !wire.ScanMembers(body, responseFields, &typ, &id, &model, &content, &stop, &stopSeq, &u) || typ != nil && string(typ) != `"message"` || content == nil || content[0] != '[' {
		return nil, false
	}
	out := &wire.Response{}
	var ok bool
	if out.ID, ok = wire.ScanString(id); !ok {
		return nil, false
	}
	if out.Model, ok = wire.ScanString(model); !ok {
		return nil, false
	}
	reason, ok := wire.ScanOptionalString(stop)
	if !ok {
		return nil, false
	}
	out.FinishReason = finishReason(reason)
	if out.StopSequence, ok = wire.ScanOptionalString(stopSeq); !ok {
		return nil, false
	}
	if u != nil && string(u) != "null" {
		usage, ok := scanUsage(u)
		if !ok {
			return nil, false
		}
		out.Usage = usage.canonical()
	}
	if llm.ScanArray(content, func(v llm.Span) error {
		p, ok := scanBlock(content[v.Start:v.End])
		if !ok {
			return errUnscanned
		}
		out.Content = append(out.Content, p)
		return nil
	}) != nil {
		return nil, false
	}
	return out, true
}

// errUnscanned stops a scan that met what it leaves to the decoder.
var errUnscanned = errors.New("anthropic: left to the decoder")

// scanBlock reads a text, thinking or tool_use block without
// cache_control.
func scanBlock(b []byte) (wire.Part, bool) {
	var typ, text, id, name, input, thinking, signature, cacheControl []byte
	if len(b) == 0 || b[0] != '{' ||
		!wire.ScanMembers(b, answerFields, &typ, &text, &id, &name, &input, &thinking, &signature, &cacheControl) ||
		cacheControl != nil {
		return wire.Part{}, false
	}
	var p wire.Part
	var ok bool
	switch string(typ) {
	case `"text"`:
		p.Type = wire.PartText
		p.Text, ok = wire.ScanString(text)
	case `"thinking"`:
		p.Type = wire.PartReasoning
		if p.Text, ok = wire.ScanString(thinking); ok {
			p.Signature, ok = wire.ScanString(signature)
		}
	case `"tool_use"`:
		call := &wire.ToolCall{}
		if call.ID, ok = wire.ScanString(id); ok {
			call.Name, ok = wire.ScanString(name)
		}
		call.Arguments = wire.JSONText(input)
		p.Type, p.ToolCall = wire.PartToolCall, call
	}
	return p, ok
}

// decodeResponse decodes a Messages response with encoding/json.
func decodeResponse(body []byte) (*wire.Response, error) {
	var in response
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("anthropic: decode response: %w", err)
	}
	if in.Type == "error" {
		return nil, DecodeError(http.StatusOK, body)
	}
	out := &wire.Response{ID: in.ID, Model: in.Model, StopSequence: deref(in.StopSequence)}
	out.FinishReason = finishReason(deref(in.StopReason))
	if in.Usage != nil {
		out.Usage = in.Usage.canonical()
	}
	var req wire.Request // collects what is dropped, which a response does not report
	for i := range in.Content {
		if p, ok, err := decodeBlock(&in.Content[i], &req); err != nil {
			return nil, fmt.Errorf("anthropic: decode response: %w", err)
		} else if ok {
			out.Content = append(out.Content, p)
		}
	}
	return out, nil
}

// EncodeResponse writes a Messages response for a client.
func EncodeResponse(resp *wire.Response) ([]byte, error) {
	stop := stopReason(resp.FinishReason, resp.StopSequence)
	out := response{
		ID: msgID(resp.ID), Type: "message", Role: "assistant", Model: resp.Model,
		StopReason: &stop, Usage: usageOf(resp.Usage), Content: []block{},
	}
	if resp.StopSequence != "" {
		out.StopSequence = &resp.StopSequence
	}
	for _, p := range resp.Content {
		switch p.Type {
		case wire.PartText:
			if p.Text == "" {
				continue
			}
			// Formats that split an answer's text in parts (Gemini's, per
			// chunk) give one text block, as Anthropic would.
			if n := len(out.Content); n > 0 && out.Content[n-1].Type == "text" {
				joined := *out.Content[n-1].Text + p.Text
				out.Content[n-1].Text = &joined
				continue
			}
			text := p.Text
			out.Content = append(out.Content, block{Type: "text", Text: &text})
		case wire.PartReasoning:
			// Reasoning from another provider has no signature; it is
			// shown to the client all the same, and dropped when the
			// client sends it back to an Anthropic upstream.
			if p.Redacted {
				out.Content = append(out.Content, block{Type: "redacted_thinking", Data: p.Signature})
			} else {
				out.Content = append(out.Content, block{Type: "thinking", Thinking: &p.Text, Signature: &p.Signature})
			}
		case wire.PartToolCall:
			out.Content = append(out.Content, block{Type: "tool_use", ID: ToolID(p.ToolCall.ID), Name: p.ToolCall.Name, Input: wire.ArgumentsJSON(p.ToolCall.Arguments)})
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("anthropic: encode response: %w", err)
	}
	return b, nil
}

func msgID(id string) string {
	if id != "" {
		return id
	}
	return "msg_" + rand.Text()
}

// errorBody is Anthropic's error shape.
type errorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorKinds maps Anthropic's error types to the canonical kinds.
var errorKinds = map[string]wire.ErrorKind{
	"invalid_request_error": wire.ErrInvalidRequest,
	"authentication_error":  wire.ErrAuthentication,
	"permission_error":      wire.ErrPermission,
	"billing_error":         wire.ErrPermission,
	"not_found_error":       wire.ErrNotFound,
	"request_too_large":     wire.ErrTooLarge,
	"rate_limit_error":      wire.ErrRateLimit,
	"api_error":             wire.ErrServer,
	"overloaded_error":      wire.ErrOverloaded,
	"timeout_error":         wire.ErrTimeout,
}

// errorTypes maps the canonical kinds to Anthropic's error types and
// statuses.
var errorTypes = map[wire.ErrorKind]struct {
	typ    string
	status int
}{
	wire.ErrInvalidRequest: {"invalid_request_error", http.StatusBadRequest},
	wire.ErrAuthentication: {"authentication_error", http.StatusUnauthorized},
	wire.ErrPermission:     {"permission_error", http.StatusForbidden},
	wire.ErrNotFound:       {"not_found_error", http.StatusNotFound},
	wire.ErrTooLarge:       {"request_too_large", http.StatusRequestEntityTooLarge},
	wire.ErrRateLimit:      {"rate_limit_error", http.StatusTooManyRequests},
	wire.ErrOverloaded:     {"overloaded_error", StatusOverloaded},
	wire.ErrTimeout:        {"timeout_error", http.StatusGatewayTimeout},
	wire.ErrServer:         {"api_error", http.StatusInternalServerError},
}

// StatusOverloaded is the status Anthropic answers with when it is
// overloaded; routing treats it like a 503.
const StatusOverloaded = 529

// DecodeError reads an upstream's error response, or the data of a
// stream's error event (status 200). A body that is not an Anthropic error
// still gives an error, classified by its status.
func DecodeError(status int, body []byte) *wire.Error {
	var in errorBody
	if json.Unmarshal(body, &in) != nil || in.Error.Type == "" {
		return &wire.Error{Status: status, Kind: wire.KindForStatus(status), Message: http.StatusText(status)}
	}
	kind, ok := errorKinds[in.Error.Type]
	if !ok {
		kind = wire.KindForStatus(status)
	}
	if status < 400 {
		status = errorTypes[kind].status
	}
	return &wire.Error{Status: status, Kind: kind, Message: in.Error.Message, Code: in.Error.Type}
}

// EncodeError writes an error body for a client.
func EncodeError(e *wire.Error) []byte {
	var out errorBody
	out.Type = "error"
	out.Error.Type = errorType(e)
	out.Error.Message = e.Message
	b, _ := json.Marshal(out)
	return b
}

func errorType(e *wire.Error) string {
	if t, ok := errorTypes[e.Kind]; ok {
		return t.typ
	}
	return "api_error"
}

// ErrorStatus is the status an Anthropic client gets for e: its own, or the
// one Anthropic uses for its kind.
func ErrorStatus(e *wire.Error) int {
	if e.Status >= 400 {
		return e.Status
	}
	if t, ok := errorTypes[e.Kind]; ok {
		return t.status
	}
	return http.StatusInternalServerError
}

func init() {
	// Every handler's errors on the Messages paths (llm_auth's 401s, a
	// limit's 429, llm_route's 404s) in Anthropic's shape.
	llm.RegisterErrorEncoder(llm.APIAnthropicMessages, func(e *llm.Error) (int, []byte) {
		w := wire.FromLLM(e)
		return ErrorStatus(w), EncodeError(w)
	})
}

// ResponseUsage reads the usage of a whole Messages response, nil when it
// has none, without decoding the rest: for a response passed through.
func ResponseUsage(body []byte) (*llm.Usage, error) {
	var u *llm.Usage
	err := llm.ScanObject(body, func(key []byte, v llm.Span) error {
		if string(key) != "usage" || body[v.Start] != '{' {
			return nil
		}
		var in usage
		if err := json.Unmarshal(body[v.Start:v.End], &in); err != nil {
			return fmt.Errorf("anthropic: bad usage: %w", err)
		}
		u = in.canonical()
		return nil
	})
	return u, err
}
