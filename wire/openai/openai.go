// Package openai is the OpenAI chat completions format of the translation
// core (see package wire): requests, responses, stream chunks and errors,
// decoded into and encoded out of the canonical form, both directions.
//
// Besides OpenAI's own fields it reads and writes "reasoning_content", the
// field OpenAI-compatible servers (DeepSeek, vLLM, OpenRouter's "reasoning")
// carry a model's thinking in, since OpenAI's chat format has none.
package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire"
)

// request is a chat completions request body.
type request struct {
	Model               string          `json:"model"`
	Messages            []message       `json:"messages"`
	Tools               []tool          `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	MaxTokens           int             `json:"max_tokens,omitempty"`
	MaxCompletionTokens int             `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	Stop                json.RawMessage `json:"stop,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *streamOptions  `json:"stream_options,omitempty"`
	ReasoningEffort     string          `json:"reasoning_effort,omitempty"`
	ResponseFormat      *responseFormat `json:"response_format,omitempty"`
	User                string          `json:"user,omitempty"`
}

// requestFields are the request fields the decoder carries; every other
// top-level field is reported as dropped.
var requestFields = wire.Fields("model", "messages", "tools", "tool_choice", "parallel_tool_calls",
	"max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "presence_penalty",
	"frequency_penalty", "stop", "stream", "stream_options", "reasoning_effort", "response_format", "user")

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type message struct {
	Role string `json:"role"`
	// Content is a string or an array of parts; null for an assistant
	// message that only calls tools.
	Content          json.RawMessage `json:"content"`
	Name             string          `json:"name,omitempty"`
	ToolCalls        []toolCall      `json:"tool_calls,omitempty"`
	ToolCallID       string          `json:"tool_call_id,omitempty"`
	ReasoningContent string          `json:"reasoning_content,omitempty"`
}

type contentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
}

type imageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

type toolCall struct {
	// Index is set in stream chunks only.
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type tool struct {
	Type     string   `json:"type"`
	Function function `json:"function"`
}

type function struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

type namedChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

type responseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *jsonSchema `json:"json_schema,omitempty"`
}

type jsonSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict bool            `json:"strict,omitempty"`
}

// DecodeRequest reads a client's chat completions request.
func DecodeRequest(body []byte) (*wire.Request, error) {
	var in request
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("openai: decode request: %w", err)
	}
	out := &wire.Request{
		Model:            in.Model,
		Temperature:      in.Temperature,
		TopP:             in.TopP,
		Seed:             in.Seed,
		PresencePenalty:  in.PresencePenalty,
		FrequencyPenalty: in.FrequencyPenalty,
		Stream:           in.Stream,
		IncludeUsage:     in.StreamOptions != nil && in.StreamOptions.IncludeUsage,
		User:             in.User,
		MaxTokens:        in.MaxCompletionTokens,
		Dropped:          wire.UnknownFields(body, "", requestFields),
	}
	if out.MaxTokens == 0 {
		out.MaxTokens = in.MaxTokens
	}
	if in.ReasoningEffort != "" {
		out.Reasoning = &wire.Reasoning{Effort: in.ReasoningEffort, Disabled: in.ReasoningEffort == "none"}
	}
	if rf := in.ResponseFormat; rf != nil {
		out.ResponseFormat = &wire.ResponseFormat{Type: rf.Type}
		if rf.JSONSchema != nil {
			out.ResponseFormat.Name, out.ResponseFormat.Schema, out.ResponseFormat.Strict = rf.JSONSchema.Name, rf.JSONSchema.Schema, rf.JSONSchema.Strict
		}
	}
	stop, err := decodeStop(in.Stop)
	if err != nil {
		return nil, err
	}
	out.Stop = stop
	for _, t := range in.Tools {
		if t.Type != "function" && t.Type != "" {
			out.Dropped = wire.Note(out.Dropped, "tools[type="+t.Type+"]")
			continue
		}
		out.Tools = append(out.Tools, wire.Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters})
	}
	if out.ToolChoice, err = decodeToolChoice(in.ToolChoice); err != nil {
		return nil, err
	}
	if in.ParallelToolCalls != nil && !*in.ParallelToolCalls {
		out.ToolChoice = out.ToolChoice.WithoutParallel()
	}
	if err := decodeMessages(in.Messages, out); err != nil {
		return nil, err
	}
	return out, nil
}

func decodeStop(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("openai: 'stop' must be a string or an array of strings")
	}
	return many, nil
}

func decodeToolChoice(raw json.RawMessage) (*wire.ToolChoice, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "auto":
			return &wire.ToolChoice{Mode: wire.ToolAuto}, nil
		case "none":
			return &wire.ToolChoice{Mode: wire.ToolNone}, nil
		case "required":
			return &wire.ToolChoice{Mode: wire.ToolRequired}, nil
		}
		return nil, fmt.Errorf("openai: unknown 'tool_choice' %q", mode)
	}
	var named namedChoice
	if err := json.Unmarshal(raw, &named); err != nil || named.Function.Name == "" {
		return nil, errors.New("openai: 'tool_choice' must be a mode or {\"type\":\"function\",\"function\":{\"name\":...}}")
	}
	return &wire.ToolChoice{Mode: wire.ToolNamed, Name: named.Function.Name}, nil
}

// decodeMessages fills the request's System and Messages. System and
// developer messages before the first turn are the system prompt; later ones
// (which the canonical form has no place for) become user text, so that no
// instruction is lost. Consecutive tool messages become one user message of
// tool results, as the other formats carry them.
func decodeMessages(msgs []message, out *wire.Request) error {
	for i, m := range msgs {
		switch m.Role {
		case "system", "developer":
			parts, err := decodeContent(m.Content)
			if err != nil {
				return fmt.Errorf("openai: messages[%d]: %w", i, err)
			}
			if len(out.Messages) == 0 {
				out.System = append(out.System, parts...)
				continue
			}
			out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: parts})
		case "user":
			parts, err := decodeContent(m.Content)
			if err != nil {
				return fmt.Errorf("openai: messages[%d]: %w", i, err)
			}
			out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: parts})
		case "assistant":
			parts, err := decodeContent(m.Content)
			if err != nil {
				return fmt.Errorf("openai: messages[%d]: %w", i, err)
			}
			if m.ReasoningContent != "" {
				parts = append([]wire.Part{{Type: wire.PartReasoning, Text: m.ReasoningContent}}, parts...)
			}
			for _, tc := range m.ToolCalls {
				parts = append(parts, wire.Part{Type: wire.PartToolCall, ToolCall: &wire.ToolCall{
					ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments,
				}})
			}
			out.Messages = append(out.Messages, wire.Message{Role: wire.RoleAssistant, Content: parts})
		case "tool":
			parts, err := decodeContent(m.Content)
			if err != nil {
				return fmt.Errorf("openai: messages[%d]: %w", i, err)
			}
			result := wire.Part{Type: wire.PartToolResult, ToolResult: &wire.ToolResult{CallID: m.ToolCallID, Content: parts}}
			if n := len(out.Messages); n > 0 && out.Messages[n-1].OnlyToolResults() {
				out.Messages[n-1].Content = append(out.Messages[n-1].Content, result)
				continue
			}
			out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: []wire.Part{result}})
		default:
			return fmt.Errorf("openai: messages[%d]: unknown role %q", i, m.Role)
		}
	}
	return nil
}

// decodeContent reads a message's content: a string, an array of parts, or
// null.
func decodeContent(raw json.RawMessage) ([]wire.Part, error) {
	text, parts, err := wire.DecodeContent[contentPart](raw, "content parts")
	if err != nil || parts == nil {
		return text, err
	}
	out := make([]wire.Part, 0, len(parts))
	for _, p := range parts {
		switch p.Type {
		case "text":
			out = append(out, wire.Part{Type: wire.PartText, Text: p.Text})
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return nil, errors.New("an image_url part needs image_url.url")
			}
			img := ImageFromURL(p.ImageURL.URL)
			img.Detail = p.ImageURL.Detail
			out = append(out, wire.Part{Type: wire.PartImage, Image: img})
		default:
			return nil, fmt.Errorf("content parts of type %q are not supported in translation", p.Type)
		}
	}
	return out, nil
}

// ImageFromURL reads an image URL: a data: URL becomes inline base64 data
// with its media type, any other URL stays a reference.
func ImageFromURL(u string) *wire.Image {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		if meta, data, ok := strings.Cut(rest, ","); ok {
			if mt, ok := strings.CutSuffix(meta, ";base64"); ok {
				return &wire.Image{MediaType: mt, Data: data}
			}
		}
	}
	return &wire.Image{URL: u}
}

// ImageURL is the OpenAI form of an image: its URL, or a data: URL.
func ImageURL(img *wire.Image) string {
	if img.Data != "" {
		return "data:" + img.MediaType + ";base64," + img.Data
	}
	return img.URL
}

// EncodeRequest writes a chat completions request for an upstream. A
// streamed request always asks for usage (the gateway records it; the
// stream encoder hides it from a client that did not ask). It returns the
// canonical fields the format has no place for.
func EncodeRequest(req *wire.Request) ([]byte, []string, error) {
	var dropped []string
	out := request{
		Model:            req.Model,
		Temperature:      req.Temperature,
		TopP:             req.TopP,
		Seed:             req.Seed,
		PresencePenalty:  req.PresencePenalty,
		FrequencyPenalty: req.FrequencyPenalty,
		Stream:           req.Stream,
		User:             req.User,
	}
	// max_completion_tokens is OpenAI's current name, and the only one its
	// reasoning models take; many compatible servers know only max_tokens,
	// which OpenAI still takes for other models.
	if req.Reasoning != nil && !req.Reasoning.Disabled {
		out.MaxCompletionTokens = req.MaxTokens
	} else {
		out.MaxTokens = req.MaxTokens
	}
	if req.Stream {
		out.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	if req.TopK != nil {
		dropped = append(dropped, "top_k")
	}
	if r := req.Reasoning; r != nil {
		if r.Disabled {
			dropped = append(dropped, "reasoning.disabled")
		} else {
			out.ReasoningEffort = r.EffortLevel()
		}
	}
	if rf := req.ResponseFormat; rf != nil {
		out.ResponseFormat = &responseFormat{Type: rf.Type}
		if rf.Type == "json_schema" {
			out.ResponseFormat.JSONSchema = &jsonSchema{Name: rf.Name, Schema: rf.Schema, Strict: rf.Strict}
		}
	}
	if len(req.Stop) > 0 {
		out.Stop, _ = json.Marshal(req.Stop)
	}
	for _, t := range req.Tools {
		out.Tools = append(out.Tools, tool{Type: "function", Function: function{Name: t.Name, Description: t.Description, Parameters: t.Parameters}})
		if t.CacheControl != nil {
			dropped = wire.Note(dropped, "tools.cache_control")
		}
	}
	if tc := req.ToolChoice; tc != nil {
		switch tc.Mode {
		case wire.ToolNamed:
			var n namedChoice
			n.Type, n.Function.Name = "function", tc.Name
			out.ToolChoice, _ = json.Marshal(n)
		case wire.ToolAuto, wire.ToolNone, wire.ToolRequired:
			out.ToolChoice, _ = json.Marshal(string(tc.Mode))
		}
		if tc.DisableParallel && len(req.Tools) > 0 {
			f := false
			out.ParallelToolCalls = &f
		}
	}
	if len(req.System) > 0 {
		content, d := encodeContent(req.System)
		dropped = appendNotes(dropped, d)
		out.Messages = append(out.Messages, message{Role: "system", Content: content})
	}
	for _, m := range req.Messages {
		msgs, d := encodeMessage(m)
		dropped = appendNotes(dropped, d)
		out.Messages = append(out.Messages, msgs...)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, dropped, fmt.Errorf("openai: encode request: %w", err)
	}
	return body, dropped, nil
}

func appendNotes(dst, notes []string) []string {
	for _, n := range notes {
		dst = wire.Note(dst, n)
	}
	return dst
}

// encodeMessage writes one canonical message as one or more OpenAI
// messages: a user message's tool results become tool messages, ahead of
// whatever else it says.
func encodeMessage(m wire.Message) ([]message, []string) {
	var dropped []string
	if m.Role == wire.RoleAssistant {
		out := message{Role: "assistant"}
		var rest []wire.Part
		for _, p := range m.Content {
			switch p.Type {
			case wire.PartToolCall:
				out.ToolCalls = append(out.ToolCalls, toolCall{ID: p.ToolCall.ID, Type: "function",
					Function: functionCall{Name: p.ToolCall.Name, Arguments: p.ToolCall.Arguments}})
				if p.ToolCall.Signature != "" {
					dropped = wire.Note(dropped, "tool_call.signature")
				}
			case wire.PartReasoning:
				// Earlier turns' thinking is not sent upstream: OpenAI's
				// chat format has no field for it, servers that answer
				// with reasoning_content refuse it back (DeepSeek: 400),
				// and another provider's signed thinking means nothing
				// here.
				dropped = wire.Note(dropped, "reasoning")
			default:
				rest = append(rest, p)
			}
		}
		var d []string
		out.Content, d = encodeContent(rest)
		dropped = appendNotes(dropped, d)
		if out.Content == nil && len(out.ToolCalls) == 0 {
			out.Content = json.RawMessage(`""`)
		}
		return []message{out}, dropped
	}
	var out []message
	var rest []wire.Part
	for _, p := range m.Content {
		if p.Type != wire.PartToolResult {
			rest = append(rest, p)
			continue
		}
		content, d := encodeContent(p.ToolResult.Content)
		dropped = appendNotes(dropped, d)
		if content == nil {
			content = json.RawMessage(`""`)
		}
		if p.ToolResult.IsError {
			dropped = wire.Note(dropped, "tool_result.is_error")
		}
		out = append(out, message{Role: "tool", ToolCallID: p.ToolResult.CallID, Content: content})
	}
	if len(rest) > 0 || len(out) == 0 {
		content, d := encodeContent(rest)
		dropped = appendNotes(dropped, d)
		if content == nil {
			content = json.RawMessage(`""`)
		}
		out = append(out, message{Role: "user", Content: content})
	}
	return out, dropped
}

// encodeContent writes text and image parts: text alone as a plain string
// (its parts joined by newlines, since some compatible servers take only
// strings), anything else as an array of parts; nil for no parts.
func encodeContent(parts []wire.Part) (json.RawMessage, []string) {
	var dropped []string
	var out []contentPart
	for _, p := range parts {
		if p.CacheControl != nil {
			dropped = wire.Note(dropped, "cache_control")
		}
		switch p.Type {
		case wire.PartText:
			out = append(out, contentPart{Type: "text", Text: p.Text})
		case wire.PartImage:
			out = append(out, contentPart{Type: "image_url", ImageURL: &imageURL{URL: ImageURL(p.Image), Detail: p.Image.Detail}})
		default:
			dropped = wire.Note(dropped, string(p.Type)+" part")
		}
	}
	switch {
	case len(out) == 0:
		return nil, dropped
	case allText(out):
		texts := make([]string, len(out))
		for i, p := range out {
			texts[i] = p.Text
		}
		b, _ := json.Marshal(strings.Join(texts, "\n"))
		return b, dropped
	}
	b, _ := json.Marshal(out)
	return b, dropped
}

func allText(parts []contentPart) bool {
	for _, p := range parts {
		if p.Type != "text" {
			return false
		}
	}
	return true
}

// usage is OpenAI's usage object.
type usage struct {
	PromptTokens            int64          `json:"prompt_tokens"`
	CompletionTokens        int64          `json:"completion_tokens"`
	TotalTokens             int64          `json:"total_tokens"`
	PromptTokensDetails     *promptDetails `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *outputDetails `json:"completion_tokens_details,omitempty"`
}

type promptDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
	// CacheCreationTokens is not OpenAI's (its cache costs nothing to
	// write) but some compatible servers report it; it carries Anthropic's
	// figure to an OpenAI client.
	CacheCreationTokens int64 `json:"cache_creation_tokens,omitempty"`
}

type outputDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

func (u *usage) canonical() *llm.Usage {
	out := &llm.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	if d := u.PromptTokensDetails; d != nil {
		out.CachedTokens, out.CacheCreationTokens = d.CachedTokens, d.CacheCreationTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.ReasoningTokens = d.ReasoningTokens
	}
	out.TotalTokens = out.Total()
	return out
}

func usageOf(u *llm.Usage) *usage {
	if u == nil {
		return nil
	}
	out := &usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.Total()}
	if u.CachedTokens > 0 || u.CacheCreationTokens > 0 {
		out.PromptTokensDetails = &promptDetails{CachedTokens: u.CachedTokens, CacheCreationTokens: u.CacheCreationTokens}
	}
	if u.ReasoningTokens > 0 {
		out.CompletionTokensDetails = &outputDetails{ReasoningTokens: u.ReasoningTokens}
	}
	return out
}
