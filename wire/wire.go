// Package wire is the hub of the gateway's translation core: one canonical
// form of a chat request, its response, its stream and its errors, which every
// API format (a sub-package each: wire/openai, wire/anthropic, wire/gemini)
// decodes into and encodes out of. A format is written once and serves both
// sides of the gateway: a client speaking it (decode the request, encode the
// response) and an upstream speaking it (encode the request, decode the
// response). Translating from format A to format B is A's decoder then B's
// encoder, so n formats need n codecs, not n×n translators.
//
// The package imports no host module, so any handler (llm_auth answering an
// Anthropic client in Anthropic's error format, say) can use it.
//
// What a format cannot carry is dropped, never sent malformed, and reported:
// decoders list the request fields they did not understand in
// Request.Dropped, and encoders return the canonical fields their format has
// no place for, so that a caller can log both at debug level.
package wire

import (
	"encoding/json"

	"github.com/llmoneapi/llmoneapi/llm"
)

// Role is who said a message.
type Role string

// The roles. System prompts are not messages: they are Request.System. Tool
// results travel in user messages, as Anthropic and Gemini carry them; the
// OpenAI codec turns them into (and back from) its "tool" messages.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// PartType is the kind of a Part.
type PartType string

// The part types.
const (
	PartText       PartType = "text"
	PartImage      PartType = "image"
	PartToolCall   PartType = "tool_call"
	PartToolResult PartType = "tool_result"
	PartReasoning  PartType = "reasoning"
)

// Part is one piece of a message's content. Type says which of its fields
// apply.
type Part struct {
	Type PartType `json:"type"`
	// Text is a text part's text, or a reasoning part's summary or thought
	// text.
	Text string `json:"text,omitempty"`
	// Image is an image part's image.
	Image *Image `json:"image,omitempty"`
	// ToolCall is a tool-call part's call (assistant messages).
	ToolCall *ToolCall `json:"tool_call,omitempty"`
	// ToolResult is a tool-result part's result (user messages).
	ToolResult *ToolResult `json:"tool_result,omitempty"`
	// Signature is a reasoning part's opaque signature, which its
	// provider checks when the part is sent back in a later turn
	// (Anthropic's thinking signature).
	Signature string `json:"signature,omitempty"`
	// Redacted is a reasoning part whose content the provider encrypted:
	// Signature then holds the encrypted data and Text is empty.
	Redacted bool `json:"redacted,omitempty"`
	// CacheControl is a prompt-caching marker as the client sent it
	// (Anthropic's cache_control); formats without one drop it.
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

// Image is an image given by URL or inline as base64 data.
type Image struct {
	// URL is where the image is, for an image given by reference.
	URL string `json:"url,omitempty"`
	// MediaType is the image's MIME type, e.g. "image/png"; required
	// with Data, optional with URL.
	MediaType string `json:"media_type,omitempty"`
	// Data is the image itself, base64-encoded (standard alphabet).
	Data string `json:"data,omitempty"`
	// Detail is OpenAI's detail hint ("low", "high", "auto").
	Detail string `json:"detail,omitempty"`
}

// ToolCall is a model's call of a tool.
type ToolCall struct {
	// ID ties the call to its result.
	ID string `json:"id"`
	// Name is the tool's name.
	Name string `json:"name"`
	// Arguments is the call's arguments, a JSON object as text; "{}" for
	// none.
	Arguments string `json:"arguments"`
	// Signature is an opaque signature of the call that its provider wants
	// back in later turns (Gemini's thoughtSignature); formats without a
	// place for it drop it.
	Signature string `json:"signature,omitempty"`
}

// ToolResult is the result of a tool call, sent back to the model.
type ToolResult struct {
	// CallID is the ID of the ToolCall this answers.
	CallID string `json:"call_id"`
	// Name is the tool's name, when the client gave it (Gemini needs it;
	// its encoder finds it from the call when it is missing).
	Name string `json:"name,omitempty"`
	// Content is the result: text and image parts.
	Content []Part `json:"content,omitempty"`
	// IsError says the tool failed and Content describes the failure.
	IsError bool `json:"is_error,omitempty"`
}

// Message is one turn of a conversation.
type Message struct {
	Role    Role   `json:"role"`
	Content []Part `json:"content"`
}

// OnlyToolResults tells a user turn that holds tool results and nothing
// else: the turn the chat APIs' tool messages, one per result, fold into.
func (m Message) OnlyToolResults() bool {
	if m.Role != RoleUser || len(m.Content) == 0 {
		return false
	}
	for _, p := range m.Content {
		if p.Type != PartToolResult {
			return false
		}
	}
	return true
}

// Tool is a function the model may call.
type Tool struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Parameters is the JSON Schema of the arguments, as the client sent
	// it; nil for a tool without parameters.
	Parameters json.RawMessage `json:"parameters,omitempty"`
	// CacheControl is a prompt-caching marker on the tool (Anthropic).
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

// ToolChoiceMode says whether and how the model must call tools.
type ToolChoiceMode string

// The tool-choice modes.
const (
	ToolAuto     ToolChoiceMode = "auto"     // the model decides
	ToolNone     ToolChoiceMode = "none"     // no tool calls
	ToolRequired ToolChoiceMode = "required" // at least one call, of any tool
	ToolNamed    ToolChoiceMode = "tool"     // a call of ToolChoice.Name
)

// ToolChoice constrains the model's tool calls.
type ToolChoice struct {
	Mode ToolChoiceMode `json:"mode"`
	// Name is the tool to call when Mode is ToolNamed.
	Name string `json:"name,omitempty"`
	// DisableParallel asks for at most one call per turn.
	DisableParallel bool `json:"disable_parallel,omitempty"`
}

// WithoutParallel returns c, or an auto choice when c is nil, allowing at
// most one call per turn (OpenAI's "parallel_tool_calls": false).
func (c *ToolChoice) WithoutParallel() *ToolChoice {
	if c == nil {
		c = &ToolChoice{Mode: ToolAuto}
	}
	c.DisableParallel = true
	return c
}

// Reasoning asks a reasoning model to think before it answers.
type Reasoning struct {
	// Effort is OpenAI's reasoning effort: "minimal", "low", "medium",
	// "high"; empty when the client gave a budget instead.
	Effort string `json:"effort,omitempty"`
	// BudgetTokens is how many tokens the model may think for
	// (Anthropic's and Gemini's thinking budget); 0 when the client gave
	// an effort instead.
	BudgetTokens int `json:"budget_tokens,omitempty"`
	// Disabled turns thinking off explicitly.
	Disabled bool `json:"disabled,omitempty"`
}

// Budget returns the thinking budget in tokens: BudgetTokens, or one
// derived from Effort for formats that take a budget.
func (r *Reasoning) Budget() int {
	if r.BudgetTokens > 0 {
		return r.BudgetTokens
	}
	switch r.Effort {
	case "minimal":
		return 1024
	case "low":
		return 2048
	case "high":
		return 16384
	default:
		return 8192
	}
}

// EffortLevel returns the reasoning effort: Effort, or one derived from
// BudgetTokens for formats that take an effort.
func (r *Reasoning) EffortLevel() string {
	switch {
	case r.Effort != "":
		return r.Effort
	case r.BudgetTokens <= 1024:
		return "minimal"
	case r.BudgetTokens <= 4096:
		return "low"
	case r.BudgetTokens <= 12288:
		return "medium"
	default:
		return "high"
	}
}

// ResponseFormat asks for output of a given shape.
type ResponseFormat struct {
	// Type is "text", "json_object" or "json_schema".
	Type string `json:"type"`
	// Name, Schema and Strict describe a json_schema format.
	Name   string          `json:"name,omitempty"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict bool            `json:"strict,omitempty"`
}

// Request is a chat request in canonical form.
type Request struct {
	// Model is the model the request is for.
	Model string `json:"model"`
	// System is the system prompt: text parts, in order. OpenAI's system
	// and developer messages at the start of the conversation land here.
	System []Part `json:"system,omitempty"`
	// Messages is the conversation, oldest first.
	Messages []Message `json:"messages"`
	// Tools are the functions the model may call.
	Tools      []Tool      `json:"tools,omitempty"`
	ToolChoice *ToolChoice `json:"tool_choice,omitempty"`
	// MaxTokens bounds the output tokens; 0 leaves it to the format's
	// encoder (a format that requires it states its default).
	MaxTokens        int      `json:"max_tokens,omitempty"`
	Temperature      *float64 `json:"temperature,omitempty"`
	TopP             *float64 `json:"top_p,omitempty"`
	TopK             *int     `json:"top_k,omitempty"`
	Seed             *int64   `json:"seed,omitempty"`
	PresencePenalty  *float64 `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64 `json:"frequency_penalty,omitempty"`
	// Stop are sequences that end the output when generated.
	Stop []string `json:"stop,omitempty"`
	// Stream asks for a streamed response.
	Stream bool `json:"stream,omitempty"`
	// IncludeUsage says the client asked for usage at the end of a stream
	// (OpenAI's stream_options.include_usage). Encoders for upstreams ask
	// for usage whatever this says.
	IncludeUsage   bool            `json:"include_usage,omitempty"`
	Reasoning      *Reasoning      `json:"reasoning,omitempty"`
	ResponseFormat *ResponseFormat `json:"response_format,omitempty"`
	// User identifies the end user to the provider.
	User string `json:"user,omitempty"`

	// Dropped names the fields of the client's request that the decoder
	// could not carry into this form, for a debug log.
	Dropped []string `json:"-"`
}

// FinishReason is why a response ended, in OpenAI's words.
type FinishReason string

// The finish reasons.
const (
	FinishStop          FinishReason = "stop"
	FinishLength        FinishReason = "length"
	FinishToolCalls     FinishReason = "tool_calls"
	FinishContentFilter FinishReason = "content_filter"
)

// Response is a complete (not streamed) chat response in canonical form.
type Response struct {
	// ID is the provider's id of the response.
	ID string `json:"id"`
	// Model is the model that answered, as the provider names it.
	Model string `json:"model"`
	// Created is when the response was made, in Unix seconds; 0 when the
	// provider did not say.
	Created int64 `json:"created,omitempty"`
	// Content is the answer: text, reasoning and tool-call parts, in order.
	Content      []Part       `json:"content"`
	FinishReason FinishReason `json:"finish_reason"`
	// StopSequence is the stop sequence that ended the output, when the
	// provider says which.
	StopSequence string `json:"stop_sequence,omitempty"`
	// Usage is the call's usage; nil when the provider reported none.
	Usage *llm.Usage `json:"usage,omitempty"`
}

// Text returns the response's text parts joined.
func (r *Response) Text() string {
	var s string
	for _, p := range r.Content {
		if p.Type == PartText {
			s += p.Text
		}
	}
	return s
}

// EventType is the kind of a stream Event.
type EventType uint8

// The stream event types. A well-formed stream is one EventStart, then
// deltas, then one EventFinish; EventUsage may come anywhere (each replaces
// the last), and EventError ends a stream that broke off. The stream's
// proper end is not an event: a stream encoder's End writes it.
const (
	EventStart EventType = iota + 1
	EventTextDelta
	EventReasoningDelta
	EventToolCallStart
	EventToolCallDelta
	EventFinish
	EventUsage
	EventError
)

var eventNames = [...]string{"", "start", "text_delta", "reasoning_delta", "tool_call_start", "tool_call_delta", "finish", "usage", "error"}

func (t EventType) String() string {
	if int(t) < len(eventNames) {
		return eventNames[t]
	}
	return "unknown"
}

// Event is one event of a streamed response. Type says which fields apply.
type Event struct {
	Type EventType
	// ID, Model and Created are the response's, on EventStart.
	ID      string
	Model   string
	Created int64
	// Text is the text of a text or reasoning delta, or the argument text
	// of a tool-call delta.
	Text string
	// Signature is a reasoning delta's signature (Anthropic's
	// signature_delta), or a tool call's on EventToolCallStart (Gemini's
	// thoughtSignature); Redacted marks a reasoning delta as encrypted
	// reasoning.
	Signature string
	Redacted  bool
	// Index is a tool call's position among the response's tool calls
	// (0, 1, ...), on EventToolCallStart and EventToolCallDelta.
	Index int
	// CallID and Name are the tool call's, on EventToolCallStart.
	CallID string
	Name   string
	// FinishReason and StopSequence are the response's, on EventFinish.
	FinishReason FinishReason
	StopSequence string
	// Usage is the usage known so far: on EventUsage, and on EventStart
	// when the input tokens are known before the output (a format whose
	// stream starts with them).
	Usage *llm.Usage
	// Err is the error that broke the stream, on EventError.
	Err *Error
}

// ErrorKind classifies an error across formats.
type ErrorKind string

// The error kinds. Each format maps its own error types onto these.
const (
	ErrInvalidRequest ErrorKind = "invalid_request"
	ErrAuthentication ErrorKind = "authentication"
	ErrPermission     ErrorKind = "permission"
	ErrNotFound       ErrorKind = "not_found"
	ErrTooLarge       ErrorKind = "request_too_large"
	ErrRateLimit      ErrorKind = "rate_limit"
	ErrOverloaded     ErrorKind = "overloaded"
	ErrTimeout        ErrorKind = "timeout"
	ErrServer         ErrorKind = "server"
)

// Error is an API error in canonical form.
type Error struct {
	// Status is the HTTP status it came with or goes out with.
	Status int       `json:"status"`
	Kind   ErrorKind `json:"kind"`
	// Message is the human-readable message.
	Message string `json:"message"`
	// Code is a machine-readable code, when the format has one.
	Code string `json:"code,omitempty"`
	// Param names the request field at fault, when the format says.
	Param string `json:"param,omitempty"`
}

func (e *Error) Error() string { return string(e.Kind) + ": " + e.Message }

// Retryable reports whether another upstream, or the same one later, may
// succeed where this failed: rate limits, overload, timeouts and server
// errors.
func (e *Error) Retryable() bool {
	switch e.Kind {
	case ErrRateLimit, ErrOverloaded, ErrTimeout, ErrServer:
		return true
	}
	return false
}

// KindForStatus is the kind of an error that says no more than its HTTP
// status.
func KindForStatus(status int) ErrorKind {
	switch {
	case status == 401:
		return ErrAuthentication
	case status == 403:
		return ErrPermission
	case status == 404:
		return ErrNotFound
	case status == 408 || status == 504:
		return ErrTimeout
	case status == 413:
		return ErrTooLarge
	case status == 429:
		return ErrRateLimit
	case status == 503 || status == 529:
		return ErrOverloaded
	case status >= 500:
		return ErrServer
	}
	return ErrInvalidRequest
}

// FromLLM returns the canonical form of a gateway error, so that a handler
// can answer a client in that client's format.
func FromLLM(e *llm.Error) *Error {
	w := &Error{Status: e.Status, Message: e.Message, Code: e.Code, Param: e.Param, Kind: KindForStatus(e.Status)}
	switch e.Type {
	case llm.TypeAuthentication:
		w.Kind = ErrAuthentication
	case llm.TypePermission:
		w.Kind = ErrPermission
	case llm.TypeNotFound:
		w.Kind = ErrNotFound
	case llm.TypeRateLimit:
		w.Kind = ErrRateLimit
	}
	return w
}
