package responses

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/openai"
)

// response is the Responses API's response object. The fields the gateway
// cannot know (the request's tools, instructions, ...) are written with the
// neutral values OpenAI uses, so that clients whose types require them
// accept the object.
type response struct {
	ID                 string          `json:"id"`
	Object             string          `json:"object"`
	CreatedAt          json.Number     `json:"created_at"`
	Status             string          `json:"status"`
	Error              *responseError  `json:"error"`
	IncompleteDetails  *incomplete     `json:"incomplete_details"`
	Instructions       json.RawMessage `json:"instructions"`
	MaxOutputTokens    json.RawMessage `json:"max_output_tokens"`
	Model              string          `json:"model"`
	Output             []item          `json:"output"`
	ParallelToolCalls  bool            `json:"parallel_tool_calls"`
	PreviousResponseID json.RawMessage `json:"previous_response_id"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	Tools              json.RawMessage `json:"tools"`
	Metadata           json.RawMessage `json:"metadata"`
	Usage              *usage          `json:"usage"`
}

// responseError is a failed response's error, and what an error event
// carries.
type responseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type incomplete struct {
	Reason string `json:"reason"`
}

// The response statuses.
const (
	statusInProgress = "in_progress"
	statusCompleted  = "completed"
	statusIncomplete = "incomplete"
	statusFailed     = "failed"
)

// usage is the Responses API's usage object, whose input_tokens count the
// cached ones too.
type usage struct {
	InputTokens         int64         `json:"input_tokens"`
	InputTokensDetails  inputDetails  `json:"input_tokens_details"`
	OutputTokens        int64         `json:"output_tokens"`
	OutputTokensDetails outputDetails `json:"output_tokens_details"`
	TotalTokens         int64         `json:"total_tokens"`
}

type inputDetails struct {
	CachedTokens     int64 `json:"cached_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens,omitempty"`
}

type outputDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

func (u *usage) canonical() *llm.Usage {
	out := &llm.Usage{
		PromptTokens:        u.InputTokens,
		CompletionTokens:    u.OutputTokens,
		TotalTokens:         u.TotalTokens,
		CachedTokens:        u.InputTokensDetails.CachedTokens,
		CacheCreationTokens: u.InputTokensDetails.CacheWriteTokens,
		ReasoningTokens:     u.OutputTokensDetails.ReasoningTokens,
	}
	out.TotalTokens = out.Total()
	return out
}

func usageOf(u *llm.Usage) *usage {
	if u == nil {
		return nil
	}
	out := &usage{
		InputTokens:         u.PromptTokens,
		InputTokensDetails:  inputDetails{CachedTokens: u.CachedTokens, CacheWriteTokens: u.CacheCreationTokens},
		OutputTokens:        u.CompletionTokens,
		OutputTokensDetails: outputDetails{ReasoningTokens: u.ReasoningTokens},
		TotalTokens:         u.Total(),
	}
	return out
}

// DecodeResponse reads an upstream's response object. A failed response,
// or an error body, gives a *wire.Error.
func DecodeResponse(body []byte) (*wire.Response, error) {
	var in response
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("responses: decode response: %w", err)
	}
	if in.Object != "response" && in.Error != nil {
		// An error body sent with a success status.
		return nil, openai.DecodeError(http.StatusOK, body)
	}
	if in.Status == statusFailed {
		var e responseError
		if in.Error != nil {
			e = *in.Error
		}
		return nil, errorOf(e.Code, e.Message)
	}
	out := &wire.Response{ID: in.ID, Model: in.Model, Created: unixTime(in.CreatedAt)}
	if in.Usage != nil {
		out.Usage = in.Usage.canonical()
	}
	var req wire.Request // collects what is dropped, which a response does not report
	calls := false
	for i := range in.Output {
		it := &in.Output[i]
		switch it.Type {
		case "message":
			parts, err := decodeContent(it.Content, &req)
			if err != nil {
				return nil, fmt.Errorf("responses: decode response: output[%d]: %w", i, err)
			}
			out.Content = append(out.Content, parts...)
		case "function_call":
			args := "{}"
			if it.Arguments != nil && *it.Arguments != "" {
				args = *it.Arguments
			}
			out.Content = append(out.Content, wire.Part{Type: wire.PartToolCall, ToolCall: &wire.ToolCall{ID: it.CallID, Name: it.Name, Arguments: args}})
			calls = true
		case "reasoning":
			if p, ok := decodeReasoning(it); ok {
				out.Content = append(out.Content, p)
			}
		}
		// The calls of built-in tools the upstream ran itself carry
		// nothing a client of another format could use.
	}
	out.FinishReason = finishReason(in.Status, in.IncompleteDetails, calls)
	return out, nil
}

// unixTime reads created_at, which the API documents as a number.
func unixTime(n json.Number) int64 {
	if i, err := n.Int64(); err == nil {
		return i
	}
	f, _ := n.Float64()
	return int64(f)
}

func finishReason(status string, details *incomplete, calls bool) wire.FinishReason {
	if status == statusIncomplete {
		if details != nil && details.Reason == "content_filter" {
			return wire.FinishContentFilter
		}
		return wire.FinishLength
	}
	if calls {
		return wire.FinishToolCalls
	}
	return wire.FinishStop
}

// statusOf is a finish reason as a response's status and the details of an
// incomplete one.
func statusOf(f wire.FinishReason) (string, *incomplete) {
	switch f {
	case wire.FinishLength:
		return statusIncomplete, &incomplete{Reason: "max_output_tokens"}
	case wire.FinishContentFilter:
		return statusIncomplete, &incomplete{Reason: "content_filter"}
	}
	return statusCompleted, nil
}

// EncodeResponse writes a response object for a client.
func EncodeResponse(resp *wire.Response) ([]byte, error) {
	out := newResponse(respID(resp.ID), resp.Model, orNow(resp.Created))
	out.Status, out.IncompleteDetails = statusOf(resp.FinishReason)
	out.Usage = usageOf(resp.Usage)
	ids := newItemIDs(out.ID)
	var text []contentPart
	flush := func() {
		if len(text) > 0 {
			content, _ := json.Marshal(text)
			out.Output = append(out.Output, item{Type: "message", ID: ids.next("msg"), Status: statusCompleted, Role: "assistant", Content: content})
			text = nil
		}
	}
	for _, p := range resp.Content {
		switch p.Type {
		case wire.PartText:
			text = append(text, outputText(p.Text))
		case wire.PartReasoning:
			flush()
			out.Output = append(out.Output, reasoningItem(p, ids.next("rs")))
		case wire.PartToolCall:
			flush()
			args := p.ToolCall.Arguments
			out.Output = append(out.Output, item{Type: "function_call", ID: ids.next("fc"), Status: statusCompleted,
				CallID: p.ToolCall.ID, Name: p.ToolCall.Name, Arguments: &args})
		}
	}
	flush()
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("responses: encode response: %w", err)
	}
	return b, nil
}

// newResponse is a response object without output, status or usage.
func newResponse(id, model string, created int64) *response {
	return &response{
		ID: id, Object: "response", CreatedAt: json.Number(strconv.FormatInt(created, 10)), Model: model,
		Output: []item{}, ParallelToolCalls: true,
		ToolChoice: json.RawMessage(`"auto"`), Tools: json.RawMessage(`[]`), Metadata: json.RawMessage(`{}`),
	}
}

func outputText(s string) contentPart {
	return contentPart{Type: "output_text", Text: &s, Annotations: &[]json.RawMessage{}}
}

// respID is a response id as the Responses API writes them: the upstream's
// own id, prefixed with resp_ unless it already is.
func respID(id string) string {
	switch {
	case id == "":
		return "resp_" + rand.Text()
	case strings.HasPrefix(id, "resp_"):
		return id
	}
	return "resp_" + id
}

// itemIDs names a response's output items: each id is the item type's
// prefix, the response's id and the item's position, so that the same
// response always names its items the same way and two responses never
// share one.
type itemIDs struct {
	base string
	n    int
}

func newItemIDs(respID string) *itemIDs {
	return &itemIDs{base: strings.TrimPrefix(respID, "resp_")}
}

func (ids *itemIDs) next(prefix string) string {
	id := prefix + "_" + ids.base + "_" + strconv.Itoa(ids.n)
	ids.n++
	return id
}

func orNow(t int64) int64 {
	if t != 0 {
		return t
	}
	return time.Now().Unix()
}

// errorCodes are the codes of stream and response errors (which carry a
// code, not a type) for the canonical kinds that OpenAI names; the others
// go by their kind's name.
var errorCodes = map[wire.ErrorKind]string{
	wire.ErrRateLimit:      "rate_limit_exceeded",
	wire.ErrTooLarge:       "context_length_exceeded",
	wire.ErrInvalidRequest: "invalid_prompt",
	wire.ErrServer:         "server_error",
}

// errorKinds are the canonical kinds of OpenAI's codes.
var errorKinds = map[string]wire.ErrorKind{
	"rate_limit_exceeded":     wire.ErrRateLimit,
	"context_length_exceeded": wire.ErrTooLarge,
	"invalid_prompt":          wire.ErrInvalidRequest,
	"server_error":            wire.ErrServer,
	"insufficient_quota":      wire.ErrPermission,
	"vector_store_timeout":    wire.ErrTimeout,
}

// errorStatus is the status an error of a kind goes out with when it came
// inside a 200 (a stream's error event, a failed response).
var errorStatus = map[wire.ErrorKind]int{
	wire.ErrInvalidRequest: http.StatusBadRequest,
	wire.ErrAuthentication: http.StatusUnauthorized,
	wire.ErrPermission:     http.StatusForbidden,
	wire.ErrNotFound:       http.StatusNotFound,
	wire.ErrTooLarge:       http.StatusBadRequest,
	wire.ErrRateLimit:      http.StatusTooManyRequests,
	wire.ErrOverloaded:     http.StatusServiceUnavailable,
	wire.ErrTimeout:        http.StatusGatewayTimeout,
	wire.ErrServer:         http.StatusBadGateway,
}

// errorOf is the canonical form of an error given by code and message.
func errorOf(code, message string) *wire.Error {
	kind, ok := errorKinds[code]
	if !ok {
		kind = wire.ErrorKind(code)
		if _, known := errorStatus[kind]; !known {
			kind = wire.ErrServer
		}
		if strings.HasPrefix(code, "invalid_") || strings.HasPrefix(code, "image_") {
			kind = wire.ErrInvalidRequest
		}
	}
	if message == "" {
		message = "the upstream failed the response"
	}
	return &wire.Error{Status: errorStatus[kind], Kind: kind, Message: message, Code: code}
}

// codeOf is the code a canonical error goes out with in a stream or a
// failed response: its own, or its kind's.
func codeOf(e *wire.Error) string {
	if e.Code != "" {
		return e.Code
	}
	if c, ok := errorCodes[e.Kind]; ok {
		return c
	}
	return string(e.Kind)
}

// DecodeError reads an upstream's error response: the Responses API uses
// OpenAI's error shape.
func DecodeError(status int, body []byte) *wire.Error { return openai.DecodeError(status, body) }

// EncodeError writes an error body for a client, in OpenAI's error shape.
func EncodeError(e *wire.Error) []byte { return openai.EncodeError(e) }
