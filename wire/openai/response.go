package openai

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
)

// completion is a chat completion, or one chunk of a streamed one.
type completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
	// Error is set on the error event of a stream that broke off.
	Error *apiError `json:"error,omitempty"`
}

type choice struct {
	Index        int           `json:"index"`
	Message      *replyMessage `json:"message,omitempty"`
	Delta        *replyMessage `json:"delta,omitempty"`
	FinishReason *string       `json:"finish_reason"`
	Logprobs     *struct{}     `json:"logprobs"`
}

// replyMessage is a response's message, or a chunk's delta, whose content
// is a plain string (or null).
type replyMessage struct {
	Role             string     `json:"role,omitempty"`
	Content          *string    `json:"content,omitempty"`
	ReasoningContent *string    `json:"reasoning_content,omitempty"`
	Reasoning        *string    `json:"reasoning,omitempty"`
	Refusal          *string    `json:"refusal,omitempty"`
	ToolCalls        []toolCall `json:"tool_calls,omitempty"`
}

// DecodeResponse reads an upstream's chat completion.
func DecodeResponse(body []byte) (*wire.Response, error) {
	var in completion
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("openai: decode response: %w", err)
	}
	if in.Error != nil {
		return nil, in.Error.canonical(http.StatusOK)
	}
	out := &wire.Response{ID: in.ID, Model: in.Model, Created: in.Created}
	if in.Usage != nil {
		out.Usage = in.Usage.canonical()
	}
	if len(in.Choices) == 0 {
		return nil, errors.New("openai: decode response: no choices")
	}
	c := in.Choices[0]
	if c.FinishReason != nil {
		out.FinishReason = wire.FinishReason(*c.FinishReason)
	}
	if m := c.Message; m != nil {
		if r := m.reasoning(); r != "" {
			out.Content = append(out.Content, wire.Part{Type: wire.PartReasoning, Text: r})
		}
		if m.Content != nil && *m.Content != "" {
			out.Content = append(out.Content, wire.Part{Type: wire.PartText, Text: *m.Content})
		} else if m.Refusal != nil && *m.Refusal != "" {
			out.Content = append(out.Content, wire.Part{Type: wire.PartText, Text: *m.Refusal})
		}
		for _, tc := range m.ToolCalls {
			out.Content = append(out.Content, wire.Part{Type: wire.PartToolCall, ToolCall: &wire.ToolCall{
				ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments,
			}})
		}
	}
	return out, nil
}

func (m *replyMessage) reasoning() string {
	switch {
	case m.ReasoningContent != nil:
		return *m.ReasoningContent
	case m.Reasoning != nil:
		return *m.Reasoning
	}
	return ""
}

// EncodeResponse writes a chat completion for a client.
func EncodeResponse(resp *wire.Response) ([]byte, error) {
	msg := &replyMessage{Role: "assistant"}
	var text, reasoning string
	hasText := false
	for _, p := range resp.Content {
		switch p.Type {
		case wire.PartText:
			text += p.Text
			hasText = true
		case wire.PartReasoning:
			reasoning += p.Text
		case wire.PartToolCall:
			msg.ToolCalls = append(msg.ToolCalls, toolCall{ID: p.ToolCall.ID, Type: "function",
				Function: functionCall{Name: p.ToolCall.Name, Arguments: p.ToolCall.Arguments}})
		}
	}
	// A message with tool calls and no text has a null content, as OpenAI
	// sends it; otherwise content is a string, even an empty one.
	if hasText || len(msg.ToolCalls) == 0 {
		msg.Content = &text
	}
	if reasoning != "" {
		msg.ReasoningContent = &reasoning
	}
	finish := string(resp.FinishReason)
	if finish == "" {
		finish = string(wire.FinishStop)
	}
	out := completion{
		ID:      orID(resp.ID),
		Object:  "chat.completion",
		Created: orNow(resp.Created),
		Model:   resp.Model,
		Choices: []choice{{Message: msg, FinishReason: &finish}},
		Usage:   usageOf(resp.Usage),
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("openai: encode response: %w", err)
	}
	return b, nil
}

// orID returns id, or a new chat completion id when the upstream gave none.
func orID(id string) string {
	if id != "" {
		return id
	}
	return "chatcmpl-" + rand.Text()
}

func orNow(t int64) int64 {
	if t != 0 {
		return t
	}
	return time.Now().Unix()
}

// apiError is OpenAI's error object.
type apiError struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Param   *string         `json:"param"`
	Code    json.RawMessage `json:"code"`
}

func (e *apiError) canonical(status int) *wire.Error {
	out := &wire.Error{Status: status, Message: e.Message, Kind: wire.KindForStatus(status)}
	if e.Param != nil {
		out.Param = *e.Param
	}
	if len(e.Code) > 0 && e.Code[0] == '"' {
		_ = json.Unmarshal(e.Code, &out.Code)
	}
	if status < 400 {
		// An error inside a 200 response (a stream's error event) says
		// what it is only by its type or code.
		out.Status = http.StatusBadGateway
		switch {
		case e.Type == "rate_limit_error" || out.Code == "rate_limit_exceeded":
			out.Kind = wire.ErrRateLimit
		case e.Type == "server_error" || e.Type == "api_error":
			out.Kind = wire.ErrServer
		case e.Type == "invalid_request_error":
			out.Kind = wire.ErrInvalidRequest
		default:
			out.Kind = wire.ErrServer
		}
	}
	if out.Code == "insufficient_quota" {
		// OpenAI's 429 for an account out of credit: no retry helps there.
		out.Kind = wire.ErrPermission
	}
	return out
}

// DecodeError reads an upstream's error response. A body that is not an
// OpenAI error still gives an error, classified by its status.
func DecodeError(status int, body []byte) *wire.Error {
	var in struct {
		Error *apiError `json:"error"`
	}
	if json.Unmarshal(body, &in) == nil && in.Error != nil {
		return in.Error.canonical(status)
	}
	return &wire.Error{Status: status, Kind: wire.KindForStatus(status), Message: http.StatusText(status)}
}

// errorTypes are OpenAI's error types for the canonical kinds.
var errorTypes = map[wire.ErrorKind]string{
	wire.ErrInvalidRequest: llm.TypeInvalidRequest,
	wire.ErrAuthentication: llm.TypeAuthentication,
	wire.ErrPermission:     llm.TypePermission,
	wire.ErrNotFound:       llm.TypeNotFound,
	wire.ErrTooLarge:       llm.TypeInvalidRequest,
	wire.ErrRateLimit:      llm.TypeRateLimit,
	wire.ErrOverloaded:     llm.TypeServer,
	wire.ErrTimeout:        llm.TypeServer,
	wire.ErrServer:         llm.TypeServer,
}

// ToLLM returns a canonical error as the gateway's OpenAI-style error.
func ToLLM(e *wire.Error) *llm.Error {
	typ, ok := errorTypes[e.Kind]
	if !ok {
		typ = llm.TypeServer
	}
	code := e.Code
	if code == "" {
		code = string(e.Kind)
	}
	status := e.Status
	if status == 0 {
		status = http.StatusBadGateway
	}
	return &llm.Error{Status: status, Message: e.Message, Type: typ, Code: code, Param: e.Param}
}

// EncodeError writes an error body for a client.
func EncodeError(e *wire.Error) []byte { return ToLLM(e).JSON() }
