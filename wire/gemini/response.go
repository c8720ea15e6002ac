package gemini

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
)

// response is a GenerateContentResponse, whole or one chunk of a stream.
type response struct {
	Candidates     []candidate     `json:"candidates,omitempty"`
	PromptFeedback *promptFeedback `json:"promptFeedback,omitempty"`
	UsageMetadata  *usageMetadata  `json:"usageMetadata,omitempty"`
	ModelVersion   string          `json:"modelVersion,omitempty"`
	ResponseID     string          `json:"responseId,omitempty"`
	// Error is set on an error inside a stream.
	Error *apiError `json:"error,omitempty"`
}

type candidate struct {
	Content      *content `json:"content,omitempty"`
	FinishReason string   `json:"finishReason,omitempty"`
	Index        int      `json:"index"`
}

type promptFeedback struct {
	BlockReason string `json:"blockReason,omitempty"`
}

type usageMetadata struct {
	PromptTokenCount        int64 `json:"promptTokenCount"`
	CandidatesTokenCount    int64 `json:"candidatesTokenCount,omitempty"`
	TotalTokenCount         int64 `json:"totalTokenCount"`
	CachedContentTokenCount int64 `json:"cachedContentTokenCount,omitempty"`
	ThoughtsTokenCount      int64 `json:"thoughtsTokenCount,omitempty"`
	ToolUsePromptTokenCount int64 `json:"toolUsePromptTokenCount,omitempty"`
}

// canonical maps Gemini's usage: its thoughts are output tokens on top of
// the candidates', and tool-use prompt tokens are input.
func (u *usageMetadata) canonical() *llm.Usage {
	prompt := u.PromptTokenCount + u.ToolUsePromptTokenCount
	completion := u.CandidatesTokenCount + u.ThoughtsTokenCount
	total := u.TotalTokenCount
	if total == 0 {
		total = prompt + completion
	}
	return &llm.Usage{
		PromptTokens: prompt, CompletionTokens: completion, TotalTokens: total,
		CachedTokens: u.CachedContentTokenCount, ReasoningTokens: u.ThoughtsTokenCount,
	}
}

func usageOf(u *llm.Usage) *usageMetadata {
	if u == nil {
		return nil
	}
	return &usageMetadata{
		PromptTokenCount: u.PromptTokens, CandidatesTokenCount: u.CompletionTokens - u.ReasoningTokens,
		TotalTokenCount: u.Total(), CachedContentTokenCount: u.CachedTokens, ThoughtsTokenCount: u.ReasoningTokens,
	}
}

// finishReason maps a Gemini finish reason; Gemini says STOP after function
// calls too, so calls says whether there were any.
func finishReason(reason string, calls bool) wire.FinishReason {
	switch reason {
	case "MAX_TOKENS":
		return wire.FinishLength
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE":
		return wire.FinishContentFilter
	}
	if calls {
		return wire.FinishToolCalls
	}
	return wire.FinishStop
}

func geminiFinish(f wire.FinishReason) string {
	switch f {
	case wire.FinishLength:
		return "MAX_TOKENS"
	case wire.FinishContentFilter:
		return "SAFETY"
	}
	return "STOP"
}

// callID is the id of a response's n-th function call when Gemini gave
// none: unique to the response, so that a client's later result finds it.
func callID(responseID string, n int) string {
	if responseID == "" {
		responseID = rand.Text()[:16]
	}
	return "call_" + responseID + "_" + strconv.Itoa(n)
}

// DecodeResponse reads an upstream's generateContent response.
func DecodeResponse(body []byte) (*wire.Response, error) {
	var in response
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("gemini: decode response: %w", err)
	}
	if in.Error != nil {
		return nil, in.Error.canonical(http.StatusOK)
	}
	out := &wire.Response{ID: in.ResponseID, Model: in.ModelVersion}
	if in.UsageMetadata != nil {
		out.Usage = in.UsageMetadata.canonical()
	}
	if len(in.Candidates) == 0 {
		if in.PromptFeedback != nil && in.PromptFeedback.BlockReason != "" {
			out.FinishReason = wire.FinishContentFilter
			return out, nil
		}
		return nil, fmt.Errorf("gemini: decode response: no candidates")
	}
	c := in.Candidates[0]
	calls := 0
	if c.Content != nil {
		var req wire.Request
		parts, _ := decodeParts(c.Content.Parts, &req)
		for i := range parts {
			if tc := parts[i].ToolCall; tc != nil {
				if c.Content.Parts[i].FunctionCall.ID == "" {
					tc.ID = callID(in.ResponseID, calls)
				}
				calls++
			}
		}
		out.Content = parts
	}
	out.FinishReason = finishReason(c.FinishReason, calls > 0)
	return out, nil
}

// EncodeResponse writes a generateContent response for a client.
func EncodeResponse(resp *wire.Response) ([]byte, error) {
	parts := responseParts(resp.Content)
	if len(parts) == 0 {
		parts = []part{{Text: new("")}}
	}
	out := response{
		Candidates:    []candidate{{Content: &content{Role: "model", Parts: parts}, FinishReason: geminiFinish(resp.FinishReason)}},
		UsageMetadata: usageOf(resp.Usage),
		ModelVersion:  resp.Model,
		ResponseID:    resp.ID,
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("gemini: encode response: %w", err)
	}
	return b, nil
}

// responseParts writes a response's content, thoughts included.
func responseParts(content []wire.Part) []part {
	out := make([]part, 0, len(content))
	for _, p := range content {
		switch p.Type {
		case wire.PartText:
			out = append(out, part{Text: &p.Text})
		case wire.PartReasoning:
			out = append(out, part{Text: &p.Text, Thought: true, ThoughtSignature: p.Signature})
		case wire.PartToolCall:
			tc := p.ToolCall
			out = append(out, part{FunctionCall: &functionCall{ID: tc.ID, Name: tc.Name, Args: wire.ArgumentsJSON(tc.Arguments)}, ThoughtSignature: tc.Signature})
		}
	}
	return out
}

// apiError is Google's error object.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Details []struct {
		Reason string `json:"reason,omitempty"`
	} `json:"details,omitempty"`
}

// errorKinds maps Google's status names to the canonical kinds.
var errorKinds = map[string]wire.ErrorKind{
	"INVALID_ARGUMENT":    wire.ErrInvalidRequest,
	"FAILED_PRECONDITION": wire.ErrInvalidRequest,
	"OUT_OF_RANGE":        wire.ErrInvalidRequest,
	"UNAUTHENTICATED":     wire.ErrAuthentication,
	"PERMISSION_DENIED":   wire.ErrPermission,
	"NOT_FOUND":           wire.ErrNotFound,
	"RESOURCE_EXHAUSTED":  wire.ErrRateLimit,
	"UNAVAILABLE":         wire.ErrOverloaded,
	"DEADLINE_EXCEEDED":   wire.ErrTimeout,
	"INTERNAL":            wire.ErrServer,
	"UNKNOWN":             wire.ErrServer,
}

var errorStatuses = map[wire.ErrorKind]struct {
	name string
	code int
}{
	wire.ErrInvalidRequest: {"INVALID_ARGUMENT", 400},
	wire.ErrAuthentication: {"UNAUTHENTICATED", 401},
	wire.ErrPermission:     {"PERMISSION_DENIED", 403},
	wire.ErrNotFound:       {"NOT_FOUND", 404},
	wire.ErrTooLarge:       {"INVALID_ARGUMENT", 413},
	wire.ErrRateLimit:      {"RESOURCE_EXHAUSTED", 429},
	wire.ErrOverloaded:     {"UNAVAILABLE", 503},
	wire.ErrTimeout:        {"DEADLINE_EXCEEDED", 504},
	wire.ErrServer:         {"INTERNAL", 500},
}

func (e *apiError) canonical(status int) *wire.Error {
	if status < 400 {
		status = e.Code
	}
	if status < 400 {
		status = http.StatusBadGateway
	}
	kind, ok := errorKinds[e.Status]
	if !ok {
		kind = wire.KindForStatus(status)
	}
	// Gemini refuses a bad key with 400 INVALID_ARGUMENT; routing must see
	// a credentials problem, not a bad request.
	for _, d := range e.Details {
		if d.Reason == "API_KEY_INVALID" {
			kind = wire.ErrAuthentication
		}
	}
	if strings.Contains(e.Message, "API key not valid") {
		kind = wire.ErrAuthentication
	}
	return &wire.Error{Status: status, Kind: kind, Message: e.Message, Code: e.Status}
}

// DecodeError reads an upstream's error response: {"error":{...}}, or the
// same in an array as a stream without alt=sse sends it.
func DecodeError(status int, body []byte) *wire.Error {
	body = bytes.TrimSpace(body)
	var in struct {
		Error *apiError `json:"error"`
	}
	if len(body) > 0 && body[0] == '[' {
		var list []json.RawMessage
		if json.Unmarshal(body, &list) == nil && len(list) > 0 {
			body = list[0]
		}
	}
	if json.Unmarshal(body, &in) != nil || in.Error == nil {
		return &wire.Error{Status: status, Kind: wire.KindForStatus(status), Message: http.StatusText(status)}
	}
	return in.Error.canonical(status)
}

func errorObject(e *wire.Error) *apiError {
	s, ok := errorStatuses[e.Kind]
	if !ok {
		s = errorStatuses[wire.ErrServer]
	}
	code := e.Status
	if code < 400 {
		code = s.code
	}
	return &apiError{Code: code, Message: e.Message, Status: s.name}
}

// EncodeError writes an error body for a client.
func EncodeError(e *wire.Error) []byte {
	b, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{errorObject(e)})
	return b
}
