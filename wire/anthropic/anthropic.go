// Package anthropic is the Anthropic Messages format of the translation core
// (see package wire): requests, responses, the stream's event sequence and
// errors, decoded into and encoded out of the canonical form, both
// directions, so that the same code speaks to an Anthropic upstream and
// serves an Anthropic client.
package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/llmoneapi/llmoneapi/wire"
)

// DefaultMaxTokens is the max_tokens sent upstream when the client gave
// none, since the Messages API requires one.
const DefaultMaxTokens = 4096

// minThinkingBudget is the smallest thinking budget Anthropic accepts.
const minThinkingBudget = 1024

type request struct {
	Model         string          `json:"model"`
	MaxTokens     int             `json:"max_tokens"`
	System        json.RawMessage `json:"system,omitempty"`
	Messages      []message       `json:"messages"`
	Tools         []tool          `json:"tools,omitempty"`
	ToolChoice    *toolChoice     `json:"tool_choice,omitempty"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	TopK          *int            `json:"top_k,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	Metadata      *metadata       `json:"metadata,omitempty"`
	Thinking      *thinking       `json:"thinking,omitempty"`
}

// requestFields are the fields the decoder carries; others are reported as
// dropped. metadata is carried only for its user_id.
var requestFields = wire.Fields("model", "max_tokens", "system", "messages", "tools", "tool_choice",
	"temperature", "top_p", "top_k", "stop_sequences", "stream", "metadata", "thinking")

type metadata struct {
	UserID string `json:"user_id,omitempty"`
}

type thinking struct {
	Type         string `json:"type"`
	BudgetTokens int    `json:"budget_tokens,omitempty"`
}

type message struct {
	Role string `json:"role"`
	// Content is a string or an array of blocks.
	Content json.RawMessage `json:"content"`
}

// block is a content block of any type; Type says which fields apply.
type block struct {
	Type         string          `json:"type"`
	Text         *string         `json:"text,omitempty"`
	Source       *source         `json:"source,omitempty"`
	ID           string          `json:"id,omitempty"`
	Name         string          `json:"name,omitempty"`
	Input        json.RawMessage `json:"input,omitempty"`
	ToolUseID    string          `json:"tool_use_id,omitempty"`
	Content      json.RawMessage `json:"content,omitempty"`
	IsError      bool            `json:"is_error,omitempty"`
	Thinking     *string         `json:"thinking,omitempty"`
	Signature    *string         `json:"signature,omitempty"`
	Data         string          `json:"data,omitempty"`
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

type source struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type tool struct {
	// Type is empty or "custom" for a client tool; server tools
	// (web_search_..., bash_...) have their own.
	Type         string          `json:"type,omitempty"`
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"input_schema,omitempty"`
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
	// DeferLoading (tool search) is read only to be reported dropped.
	DeferLoading bool `json:"defer_loading,omitempty"`
}

type toolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

// DecodeRequest reads a client's Messages request. Fields and blocks the
// canonical form has no place for (documents, server tools, citations,
// context_management, ...) are dropped and named in Dropped.
func DecodeRequest(body []byte) (*wire.Request, error) {
	var in request
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("anthropic: decode request: %w", err)
	}
	out := &wire.Request{
		Model:       in.Model,
		MaxTokens:   in.MaxTokens,
		Temperature: in.Temperature,
		TopP:        in.TopP,
		TopK:        in.TopK,
		Stop:        in.StopSequences,
		Stream:      in.Stream,
		// An Anthropic stream always carries usage.
		IncludeUsage: in.Stream,
		Dropped:      wire.UnknownFields(body, "", requestFields),
	}
	if in.Metadata != nil {
		out.User = in.Metadata.UserID
	}
	if th := in.Thinking; th != nil {
		switch th.Type {
		case "enabled":
			out.Reasoning = &wire.Reasoning{BudgetTokens: th.BudgetTokens}
		case "adaptive":
			// The model decides how long to think: a medium effort is the
			// closest a budget-taking format comes.
			out.Reasoning = &wire.Reasoning{Effort: "medium"}
		case "disabled":
			out.Reasoning = &wire.Reasoning{Disabled: true}
		}
	}
	sys, err := decodeBlocks(in.System, out)
	if err != nil {
		return nil, fmt.Errorf("anthropic: system: %w", err)
	}
	out.System = sys
	for _, t := range in.Tools {
		if t.Type != "" && t.Type != "custom" {
			out.Dropped = wire.Note(out.Dropped, "tools[type="+t.Type+"]")
			continue
		}
		if t.DeferLoading {
			out.Dropped = wire.Note(out.Dropped, "tools.defer_loading")
		}
		out.Tools = append(out.Tools, wire.Tool{Name: t.Name, Description: t.Description, Parameters: t.InputSchema, CacheControl: t.CacheControl})
	}
	if tc := in.ToolChoice; tc != nil {
		c := &wire.ToolChoice{DisableParallel: tc.DisableParallelToolUse}
		switch tc.Type {
		case "auto":
			c.Mode = wire.ToolAuto
		case "any":
			c.Mode = wire.ToolRequired
		case "none":
			c.Mode = wire.ToolNone
		case "tool":
			c.Mode, c.Name = wire.ToolNamed, tc.Name
		default:
			return nil, fmt.Errorf("anthropic: unknown tool_choice type %q", tc.Type)
		}
		out.ToolChoice = c
	}
	for i, m := range in.Messages {
		parts, err := decodeBlocks(m.Content, out)
		if err != nil {
			return nil, fmt.Errorf("anthropic: messages[%d]: %w", i, err)
		}
		switch m.Role {
		case "user":
			out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: parts})
		case "assistant":
			out.Messages = append(out.Messages, wire.Message{Role: wire.RoleAssistant, Content: parts})
		case "system":
			// Not in Anthropic's API, but some clients send it: before the
			// conversation it is the system prompt, later an instruction
			// from the user.
			if len(out.Messages) == 0 {
				out.System = append(out.System, parts...)
			} else {
				out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: parts})
			}
		default:
			return nil, fmt.Errorf("anthropic: messages[%d]: unknown role %q", i, m.Role)
		}
	}
	return out, nil
}

// decodeBlocks reads content given as a string or as an array of blocks.
func decodeBlocks(raw json.RawMessage, req *wire.Request) ([]wire.Part, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []wire.Part{{Type: wire.PartText, Text: s}}, nil
	}
	var blocks []block
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, errors.New("content must be a string or an array of content blocks")
	}
	parts := make([]wire.Part, 0, len(blocks))
	for _, b := range blocks {
		p, ok, err := decodeBlock(&b, req)
		if err != nil {
			return nil, err
		}
		if ok {
			parts = append(parts, p)
		}
	}
	return parts, nil
}

func decodeBlock(b *block, req *wire.Request) (wire.Part, bool, error) {
	p := wire.Part{CacheControl: b.CacheControl}
	switch b.Type {
	case "text":
		p.Type, p.Text = wire.PartText, deref(b.Text)
	case "image":
		if b.Source == nil {
			return p, false, errors.New("an image block needs a source")
		}
		p.Type = wire.PartImage
		switch b.Source.Type {
		case "base64":
			p.Image = &wire.Image{MediaType: b.Source.MediaType, Data: b.Source.Data}
		case "url":
			p.Image = &wire.Image{URL: b.Source.URL}
		default:
			req.Dropped = wire.Note(req.Dropped, "image.source[type="+b.Source.Type+"]")
			return p, false, nil
		}
	case "tool_use":
		p.Type, p.ToolCall = wire.PartToolCall, &wire.ToolCall{ID: b.ID, Name: b.Name, Arguments: wire.JSONText(b.Input)}
	case "tool_result":
		content, err := decodeBlocks(b.Content, req)
		if err != nil {
			return p, false, fmt.Errorf("tool_result: %w", err)
		}
		p.Type, p.ToolResult = wire.PartToolResult, &wire.ToolResult{CallID: b.ToolUseID, Content: content, IsError: b.IsError}
	case "thinking":
		p.Type, p.Text, p.Signature = wire.PartReasoning, deref(b.Thinking), deref(b.Signature)
	case "redacted_thinking":
		p.Type, p.Signature, p.Redacted = wire.PartReasoning, b.Data, true
	default:
		req.Dropped = wire.Note(req.Dropped, b.Type+" block")
		return p, false, nil
	}
	return p, true, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// EncodeRequest writes a Messages request for an upstream, and returns the
// canonical fields the format has no place for.
func EncodeRequest(req *wire.Request) ([]byte, []string, error) {
	var dropped []string
	note := func(what string) { dropped = wire.Note(dropped, what) }
	out := request{
		Model:         req.Model,
		MaxTokens:     req.MaxTokens,
		Temperature:   req.Temperature,
		TopP:          req.TopP,
		TopK:          req.TopK,
		StopSequences: req.Stop,
		Stream:        req.Stream,
	}
	if out.MaxTokens <= 0 {
		out.MaxTokens = DefaultMaxTokens
	}
	if req.User != "" {
		out.Metadata = &metadata{UserID: req.User}
	}
	if req.Seed != nil {
		note("seed")
	}
	if req.PresencePenalty != nil {
		note("presence_penalty")
	}
	if req.FrequencyPenalty != nil {
		note("frequency_penalty")
	}
	if req.ResponseFormat != nil && req.ResponseFormat.Type != "text" {
		note("response_format")
	}
	if r := req.Reasoning; r != nil {
		switch budget := min(r.Budget(), out.MaxTokens-1); {
		case r.Disabled:
			out.Thinking = &thinking{Type: "disabled"}
		case budget < minThinkingBudget:
			// The output bound leaves no room for the smallest budget.
			note("reasoning")
		default:
			out.Thinking = &thinking{Type: "enabled", BudgetTokens: budget}
			// Anthropic rejects sampling changes while thinking.
			if out.Temperature != nil || out.TopK != nil || out.TopP != nil {
				note("temperature/top_p/top_k with reasoning")
				out.Temperature, out.TopK, out.TopP = nil, nil, nil
			}
		}
	}
	if len(req.System) > 0 {
		blocks := encodeParts(req.System, note)
		if len(blocks) == 1 && blocks[0].CacheControl == nil {
			out.System = quote(*blocks[0].Text)
		} else {
			out.System, _ = json.Marshal(blocks)
		}
	}
	for _, t := range req.Tools {
		schema := t.Parameters
		if len(schema) == 0 || string(schema) == "null" {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, tool{Name: t.Name, Description: t.Description, InputSchema: schema, CacheControl: t.CacheControl})
	}
	if tc := req.ToolChoice; tc != nil {
		c := &toolChoice{DisableParallelToolUse: tc.DisableParallel && tc.Mode != wire.ToolNone}
		switch tc.Mode {
		case wire.ToolAuto:
			c.Type = "auto"
		case wire.ToolRequired:
			c.Type = "any"
		case wire.ToolNone:
			c.Type = "none"
		case wire.ToolNamed:
			c.Type, c.Name = "tool", tc.Name
		}
		if c.Type != "" && (len(req.Tools) > 0 || c.Type == "none") {
			out.ToolChoice = c
		}
	}
	for _, m := range req.Messages {
		blocks := encodeParts(m.Content, note)
		if len(blocks) == 0 {
			// Anthropic rejects an empty turn; one made empty by what was
			// dropped goes.
			note("empty message")
			continue
		}
		role := "user"
		if m.Role == wire.RoleAssistant {
			role = "assistant"
		}
		content, _ := json.Marshal(blocks)
		out.Messages = append(out.Messages, message{Role: role, Content: content})
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, dropped, fmt.Errorf("anthropic: encode request: %w", err)
	}
	return body, dropped, nil
}

// encodeParts writes parts as content blocks, leaving out what Anthropic
// rejects: empty text, and reasoning without the signature Anthropic
// checks (another provider's thinking).
func encodeParts(parts []wire.Part, note func(string)) []block {
	out := make([]block, 0, len(parts))
	for _, p := range parts {
		b := block{CacheControl: p.CacheControl}
		switch p.Type {
		case wire.PartText:
			if p.Text == "" {
				continue
			}
			b.Type, b.Text = "text", &p.Text
		case wire.PartImage:
			b.Type = "image"
			if p.Image.Data != "" {
				b.Source = &source{Type: "base64", MediaType: p.Image.MediaType, Data: p.Image.Data}
			} else {
				b.Source = &source{Type: "url", URL: p.Image.URL}
			}
		case wire.PartToolCall:
			b.Type, b.ID, b.Name, b.Input = "tool_use", ToolID(p.ToolCall.ID), p.ToolCall.Name, wire.ArgumentsJSON(p.ToolCall.Arguments)
			if p.ToolCall.Signature != "" {
				note("tool_call.signature")
			}
		case wire.PartToolResult:
			b.Type, b.ToolUseID, b.IsError = "tool_result", ToolID(p.ToolResult.CallID), p.ToolResult.IsError
			inner := encodeParts(p.ToolResult.Content, note)
			switch {
			case len(inner) == 1 && inner[0].Type == "text" && inner[0].CacheControl == nil:
				b.Content = quote(*inner[0].Text)
			case len(inner) > 0:
				b.Content, _ = json.Marshal(inner)
			}
		case wire.PartReasoning:
			switch {
			case p.Signature == "":
				note("reasoning without signature")
				continue
			case p.Redacted:
				b.Type, b.Data = "redacted_thinking", p.Signature
			default:
				b.Type, b.Thinking, b.Signature = "thinking", &p.Text, &p.Signature
			}
		default:
			note(string(p.Type) + " part")
			continue
		}
		out = append(out, b)
	}
	return out
}

// quote is s as a JSON string, sized for one without escapes.
func quote(s string) json.RawMessage {
	return wire.AppendString(make([]byte, 0, len(s)+2), s)
}

// ToolID returns a tool call id as Anthropic accepts it (letters, digits,
// '_' and '-'): other characters, which some OpenAI-compatible servers
// use, become '_'. The same id always maps the same way, so a result still
// finds its call.
func ToolID(id string) string {
	ok := func(r rune) bool {
		return r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
	}
	if strings.IndexFunc(id, func(r rune) bool { return !ok(r) }) < 0 {
		return id
	}
	return strings.Map(func(r rune) rune {
		if ok(r) {
			return r
		}
		return '_'
	}, id)
}
