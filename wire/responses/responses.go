// Package responses is the OpenAI Responses API format (POST /v1/responses)
// of the translation core (see package wire): requests, the response object,
// the stream's event sequence and errors, decoded into and encoded out of
// the canonical form, both directions, so that the same code serves a
// Responses client (the Codex CLI) from any upstream and speaks to an
// upstream that only has the Responses API.
//
// The translation is stateless: the client sends the whole conversation in
// input every turn (store: false), as coding agents do. A request that
// points at state kept by OpenAI (previous_response_id, conversation) is
// refused with ErrStateful, a 400, since a translated upstream keeps none;
// so is an item_reference input item.
//
// What a request keeps and drops in translation:
//
//	kept                                   as
//	input (a string, or items)             Messages
//	  message (user, assistant)            user / assistant messages
//	    input_text, output_text, refusal   text parts
//	    input_image (image_url)            image parts (data: URLs inline)
//	  message (system, developer)          System before the first turn, a user message after
//	  function_call (call_id, name, args)  an assistant tool call
//	  function_call_output                 a tool result (text and images)
//	  reasoning (summary, encrypted_content) a reasoning part: the summary text, and the
//	                                       encrypted content as its Signature (Redacted
//	                                       when there is no summary)
//	instructions                           System, first
//	tools (type function)                  Tools
//	tool_choice                            ToolChoice; allowed_tools narrows Tools
//	parallel_tool_calls: false             ToolChoice.DisableParallel
//	max_output_tokens, temperature, top_p  the same
//	reasoning.effort                       Reasoning.Effort ("none" disables it)
//	text.format (json_schema, json_object) ResponseFormat
//	stream                                 Stream (usage always comes in response.completed)
//	user, safety_identifier                User
//	store: false                           (what the translation does anyway)
//	include: reasoning.encrypted_content   (always sent back when the upstream has it)
//
//	dropped, named in Request.Dropped
//	built-in and other non-function tools (web_search, file_search, local_shell, custom,
//	mcp, a namespace group, ...) and the items of their calls and outputs (a
//	function_call with a namespace among them);
//	input_file parts, input_image by file_id, item_reference items, an item's id and
//	status, strict on tools, include (other values), prompt_cache_key, client_metadata,
//	metadata, reasoning.summary, service_tier, truncation, text.verbosity, store: true,
//	and any other top-level field.
//
// A tool_choice naming a dropped tool cannot be honoured and is refused
// with a 400 *wire.Error naming the tool. Other malformed requests give a
// plain error, which callers answer with 400 too.
//
// Responses, stream events and errors: messages become output_text, tool
// calls function_call items (call_id is the canonical call id), reasoning
// reasoning items (summary_text, encrypted_content); finish "length" is
// status incomplete with incomplete_details.reason max_output_tokens,
// "content_filter" the same with reason content_filter; a stop sequence has
// no place. Usage is input_tokens (cached included, as cached_tokens in
// input_tokens_details; cache writes as cache_write_tokens),
// output_tokens (reasoning_tokens in output_tokens_details) and
// total_tokens. Errors are OpenAI's error shape (wire/openai).
//
// A stream is response.created and response.in_progress, then per item
// response.output_item.added, its deltas (output_text, reasoning summary
// text, function call arguments) between their part events, and its .done
// events, then response.completed (response.incomplete for finish
// "length") with the whole response and its usage; every event has its
// sequence_number and the item ids are the same throughout. A stream that
// breaks off ends with an error event and response.failed, whose code is the
// upstream's or OpenAI's for the kind (rate_limit_exceeded,
// context_length_exceeded, server_error, ...).
//
// Towards a Responses upstream, EncodeRequest writes store: false, function
// tools with strict: false (the API's default of strict rejects most schemas
// other formats take), reasoning items only with their encrypted content,
// and drops what the format lacks: stop, seed, top_k, the penalties.
package responses

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/openai"
)

// ErrStateful is what DecodeRequest returns for a request that refers to
// state kept by OpenAI (previous_response_id, conversation): a translated
// upstream keeps none, so the client must send the whole input each turn.
// It is a 400 invalid request; compare with errors.Is and do not modify it.
var ErrStateful = &wire.Error{
	Status: http.StatusBadRequest,
	Kind:   wire.ErrInvalidRequest,
	Code:   "unsupported_parameter",
	Param:  "previous_response_id",
	Message: "this model is served through a translated upstream, which keeps no conversation state: " +
		"previous_response_id and conversation are not supported; send the whole conversation in input (with store: false)",
}

// request is a Responses request body.
type request struct {
	Model              string          `json:"model"`
	Instructions       json.RawMessage `json:"instructions,omitempty"`
	Input              json.RawMessage `json:"input,omitempty"`
	Tools              []tool          `json:"tools,omitempty"`
	ToolChoice         json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls  *bool           `json:"parallel_tool_calls,omitempty"`
	MaxOutputTokens    int             `json:"max_output_tokens,omitempty"`
	Temperature        *float64        `json:"temperature,omitempty"`
	TopP               *float64        `json:"top_p,omitempty"`
	Reasoning          *reasoning      `json:"reasoning,omitempty"`
	Text               *textOptions    `json:"text,omitempty"`
	Stream             bool            `json:"stream,omitempty"`
	Store              *bool           `json:"store,omitempty"`
	Include            []string        `json:"include,omitempty"`
	User               string          `json:"user,omitempty"`
	SafetyIdentifier   string          `json:"safety_identifier,omitempty"`
	PreviousResponseID *string         `json:"previous_response_id,omitempty"`
	Conversation       json.RawMessage `json:"conversation,omitempty"`
}

// requestFields are the fields the decoder carries (or refuses); others are
// reported as dropped. store and include are checked one by one.
var requestFields = wire.Fields("model", "instructions", "input", "tools", "tool_choice",
	"parallel_tool_calls", "max_output_tokens", "temperature", "top_p", "reasoning", "text", "stream",
	"store", "include", "user", "safety_identifier", "previous_response_id", "conversation")

// includeReasoning is the include value that asks for reasoning items'
// encrypted content, which the translation always carries.
const includeReasoning = "reasoning.encrypted_content"

type reasoning struct {
	Effort string `json:"effort,omitempty"`
	// Summary and GenerateSummary (its old name) ask for reasoning
	// summaries, which only OpenAI makes.
	Summary         json.RawMessage `json:"summary,omitempty"`
	GenerateSummary json.RawMessage `json:"generate_summary,omitempty"`
}

type textOptions struct {
	Format    *textFormat     `json:"format,omitempty"`
	Verbosity json.RawMessage `json:"verbosity,omitempty"`
}

type textFormat struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// tool is a tool of any type; Type says which fields apply.
type tool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
	// Tools are a namespace group's tools.
	Tools []tool `json:"tools,omitempty"`
	// ServerLabel names an mcp tool's server.
	ServerLabel string `json:"server_label,omitempty"`
}

// item is an input or output item of any type; Type says which fields
// apply. A message may come without a type.
type item struct {
	Type   string `json:"type,omitempty"`
	ID     string `json:"id,omitempty"`
	Status string `json:"status,omitempty"`
	// Role and Content are a message's; Content is a string or parts.
	Role    string          `json:"role,omitempty"`
	Content json.RawMessage `json:"content,omitempty"`
	// CallID, Name and Arguments are a function call's; CallID and Output
	// (a string or parts) a function call output's.
	CallID    string          `json:"call_id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Arguments *string         `json:"arguments,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	// Namespace is the namespace group of a function call's tool.
	Namespace string `json:"namespace,omitempty"`
	// Summary, EncryptedContent (and Content, as reasoning_text parts) are
	// a reasoning item's.
	Summary          *[]summaryPart `json:"summary,omitempty"`
	EncryptedContent *string        `json:"encrypted_content,omitempty"`
}

type summaryPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// contentPart is a message's content part of any type.
type contentPart struct {
	Type     string  `json:"type"`
	Text     *string `json:"text,omitempty"`
	Refusal  *string `json:"refusal,omitempty"`
	ImageURL string  `json:"image_url,omitempty"`
	FileID   string  `json:"file_id,omitempty"`
	Detail   string  `json:"detail,omitempty"`
	// Annotations are an output_text part's (citations); always [] here.
	Annotations *[]json.RawMessage `json:"annotations,omitempty"`
}

// DecodeRequest reads a client's Responses request. See the package
// comment for what it keeps and drops; it returns ErrStateful, or a 400
// *wire.Error for a tool_choice naming a dropped tool, or a plain error for
// a malformed request.
func DecodeRequest(body []byte) (*wire.Request, error) {
	var in request
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("responses: decode request: %w", err)
	}
	if (in.PreviousResponseID != nil && *in.PreviousResponseID != "") || (len(in.Conversation) > 0 && string(in.Conversation) != "null") {
		return nil, ErrStateful
	}
	out := &wire.Request{
		Model:       in.Model,
		MaxTokens:   in.MaxOutputTokens,
		Temperature: in.Temperature,
		TopP:        in.TopP,
		Stream:      in.Stream,
		// A Responses stream always ends with its usage.
		IncludeUsage: in.Stream,
		User:         in.SafetyIdentifier,
		Dropped:      wire.UnknownFields(body, "", requestFields),
	}
	if out.User == "" {
		out.User = in.User
	}
	note := func(what string) { out.Dropped = wire.Note(out.Dropped, what) }
	if in.Store != nil && *in.Store {
		note("store")
	}
	for _, inc := range in.Include {
		if inc != includeReasoning {
			note("include[" + inc + "]")
		}
	}
	if r := in.Reasoning; r != nil {
		if r.Effort != "" {
			out.Reasoning = &wire.Reasoning{Effort: r.Effort, Disabled: r.Effort == "none"}
		}
		if len(r.Summary) > 0 || len(r.GenerateSummary) > 0 {
			note("reasoning.summary")
		}
	}
	if t := in.Text; t != nil {
		if f := t.Format; f != nil && f.Type != "" {
			out.ResponseFormat = &wire.ResponseFormat{Type: f.Type, Name: f.Name, Schema: f.Schema, Strict: f.Strict != nil && *f.Strict}
			if f.Description != "" {
				note("text.format.description")
			}
		}
		if len(t.Verbosity) > 0 {
			note("text.verbosity")
		}
	}
	sys, err := decodeInstructions(in.Instructions)
	if err != nil {
		return nil, err
	}
	out.System = sys
	dropped := decodeTools(in.Tools, out)
	if out.ToolChoice, err = decodeToolChoice(in.ToolChoice, out, dropped); err != nil {
		return nil, err
	}
	if in.ParallelToolCalls != nil && !*in.ParallelToolCalls {
		out.ToolChoice = out.ToolChoice.WithoutParallel()
	}
	if err := decodeInput(in.Input, out); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeInstructions reads instructions, a string.
func decodeInstructions(raw json.RawMessage) ([]wire.Part, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, errors.New("responses: 'instructions' must be a string")
	}
	if s == "" {
		return nil, nil
	}
	return []wire.Part{{Type: wire.PartText, Text: s}}, nil
}

// decodeTools keeps the function tools and returns the names of the tools
// dropped (built-in tools by their type, others by name too), for
// tool_choice.
func decodeTools(tools []tool, out *wire.Request) []string {
	var dropped []string
	for _, t := range tools {
		switch t.Type {
		case "function":
			params := t.Parameters
			if string(params) == "null" {
				params = nil
			}
			out.Tools = append(out.Tools, wire.Tool{Name: t.Name, Description: t.Description, Parameters: params})
			if t.Strict != nil && *t.Strict {
				out.Dropped = wire.Note(out.Dropped, "tools.strict")
			}
			continue
		case "namespace":
			for _, inner := range t.Tools {
				dropped = append(dropped, inner.Name)
			}
		}
		out.Dropped = wire.Note(out.Dropped, "tools[type="+t.Type+"]")
		dropped = append(dropped, t.Type)
		if t.Name != "" {
			dropped = append(dropped, t.Name)
		}
		if t.ServerLabel != "" {
			dropped = append(dropped, t.ServerLabel)
		}
	}
	return dropped
}

// choice is tool_choice as an object.
type choice struct {
	Type        string `json:"type"`
	Name        string `json:"name,omitempty"`
	ServerLabel string `json:"server_label,omitempty"`
	// Mode and Tools are allowed_tools'.
	Mode  string   `json:"mode,omitempty"`
	Tools []choice `json:"tools,omitempty"`
}

func decodeToolChoice(raw json.RawMessage, out *wire.Request, dropped []string) (*wire.ToolChoice, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		if m, ok := toolModes[mode]; ok {
			return &wire.ToolChoice{Mode: m}, nil
		}
		return nil, fmt.Errorf("responses: unknown 'tool_choice' %q", mode)
	}
	var c choice
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, errors.New("responses: 'tool_choice' must be a mode or an object")
	}
	switch c.Type {
	case "function":
		if c.Name == "" {
			return nil, errors.New("responses: a function 'tool_choice' needs a name")
		}
		if !hasTool(out.Tools, c.Name) && slices.Contains(dropped, c.Name) {
			return nil, unservedTool(c.Name)
		}
		return &wire.ToolChoice{Mode: wire.ToolNamed, Name: c.Name}, nil
	case "allowed_tools":
		// Only the tools listed may be called: the others go.
		allowed := make([]string, 0, len(c.Tools))
		for _, t := range c.Tools {
			if t.Type != "function" {
				out.Dropped = wire.Note(out.Dropped, "tool_choice.allowed_tools[type="+t.Type+"]")
				continue
			}
			allowed = append(allowed, t.Name)
		}
		out.Tools = slices.DeleteFunc(out.Tools, func(t wire.Tool) bool { return !slices.Contains(allowed, t.Name) })
		m, ok := toolModes[c.Mode]
		if !ok || m == wire.ToolNone {
			m = wire.ToolAuto
		}
		return &wire.ToolChoice{Mode: m}, nil
	}
	// A built-in tool (web_search_preview, file_search, ...), an mcp
	// server's or a custom tool: none is served by a translated upstream.
	name := c.Type
	switch {
	case c.Name != "":
		name = c.Name
	case c.ServerLabel != "":
		name = c.ServerLabel
	}
	return nil, unservedTool(name)
}

var toolModes = map[string]wire.ToolChoiceMode{
	"auto": wire.ToolAuto, "none": wire.ToolNone, "required": wire.ToolRequired,
}

func hasTool(tools []wire.Tool, name string) bool {
	return slices.ContainsFunc(tools, func(t wire.Tool) bool { return t.Name == name })
}

// unservedTool is the 400 for a tool_choice that names a tool the
// translation dropped.
func unservedTool(name string) *wire.Error {
	return &wire.Error{
		Status: http.StatusBadRequest, Kind: wire.ErrInvalidRequest, Code: "unsupported_value", Param: "tool_choice",
		Message: fmt.Sprintf("tool_choice names the tool %q, which cannot be served by a translated upstream: only function tools are", name),
	}
}

// decodeInput fills the request's Messages (and System, from system and
// developer messages before the first turn). Consecutive assistant items
// (reasoning, text, function calls) make one assistant message, and
// consecutive function call outputs one user message of tool results, as
// the other formats carry a turn.
func decodeInput(raw json.RawMessage, out *wire.Request) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("responses: input: %w", err)
		}
		out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: []wire.Part{{Type: wire.PartText, Text: s}}})
		return nil
	}
	var items []item
	if err := json.Unmarshal(raw, &items); err != nil {
		return errors.New("responses: 'input' must be a string or an array of items")
	}
	var skipped []string // the call ids of calls dropped with their tools
	for i := range items {
		it := &items[i]
		if it.ID != "" {
			out.Dropped = wire.Note(out.Dropped, "input.id")
		}
		if it.Status != "" {
			out.Dropped = wire.Note(out.Dropped, "input.status")
		}
		if it.Type == "function_call" && it.Namespace != "" {
			// A call of a tool of a namespace group, which is dropped:
			// the call goes, and its output with it.
			out.Dropped = wire.Note(out.Dropped, "input[type=function_call,namespace]")
			skipped = append(skipped, it.CallID)
			continue
		}
		if it.Type == "function_call_output" && slices.Contains(skipped, it.CallID) {
			continue
		}
		if err := decodeItem(it, out); err != nil {
			return fmt.Errorf("responses: input[%d]: %w", i, err)
		}
	}
	return nil
}

func decodeItem(it *item, out *wire.Request) error {
	switch it.Type {
	case "", "message":
		parts, err := decodeContent(it.Content, out)
		if err != nil {
			return err
		}
		switch it.Role {
		case "user":
			appendUser(out, parts...)
		case "assistant":
			appendAssistant(out, parts...)
		case "system", "developer":
			if len(out.Messages) == 0 {
				out.System = append(out.System, parts...)
			} else {
				// Later instructions have no place but the conversation.
				out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: parts})
			}
		default:
			return fmt.Errorf("unknown role %q", it.Role)
		}
	case "function_call":
		args := "{}"
		if it.Arguments != nil && *it.Arguments != "" {
			args = *it.Arguments
		}
		appendAssistant(out, wire.Part{Type: wire.PartToolCall, ToolCall: &wire.ToolCall{ID: it.CallID, Name: it.Name, Arguments: args}})
	case "function_call_output":
		content, err := decodeOutput(it.Output, out)
		if err != nil {
			return err
		}
		result := wire.Part{Type: wire.PartToolResult, ToolResult: &wire.ToolResult{CallID: it.CallID, Content: content}}
		if n := len(out.Messages); n > 0 && out.Messages[n-1].OnlyToolResults() {
			out.Messages[n-1].Content = append(out.Messages[n-1].Content, result)
		} else {
			out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: []wire.Part{result}})
		}
	case "reasoning":
		if p, ok := decodeReasoning(it); ok {
			appendAssistant(out, p)
		}
	case "item_reference":
		// An item stored by OpenAI, which a translated upstream never saw.
		return ErrStateful
	default:
		// The calls of built-in and custom tools and their outputs
		// (web_search_call, local_shell_call, custom_tool_call_output, ...):
		// their tools are dropped, so are they, calls and outputs alike.
		out.Dropped = wire.Note(out.Dropped, "input[type="+it.Type+"]")
	}
	return nil
}

// decodeReasoning reads a reasoning item: its summary (or, from servers
// that send the raw reasoning, its reasoning_text content) as the text, its
// encrypted content as the signature.
func decodeReasoning(it *item) (wire.Part, bool) {
	var texts []string
	if it.Summary != nil {
		for _, s := range *it.Summary {
			texts = append(texts, s.Text)
		}
	}
	if len(texts) == 0 && len(it.Content) > 0 {
		var parts []summaryPart
		if json.Unmarshal(it.Content, &parts) == nil {
			for _, p := range parts {
				texts = append(texts, p.Text)
			}
		}
	}
	p := wire.Part{Type: wire.PartReasoning, Text: strings.Join(texts, "\n\n")}
	if it.EncryptedContent != nil {
		p.Signature = *it.EncryptedContent
	}
	p.Redacted = p.Text == "" && p.Signature != ""
	return p, p.Text != "" || p.Signature != ""
}

// appendUser adds parts to the conversation as a user turn.
func appendUser(out *wire.Request, parts ...wire.Part) {
	out.Messages = append(out.Messages, wire.Message{Role: wire.RoleUser, Content: parts})
}

// appendAssistant adds parts to the assistant turn in progress, or starts
// one.
func appendAssistant(out *wire.Request, parts ...wire.Part) {
	if n := len(out.Messages); n > 0 && out.Messages[n-1].Role == wire.RoleAssistant {
		out.Messages[n-1].Content = append(out.Messages[n-1].Content, parts...)
		return
	}
	out.Messages = append(out.Messages, wire.Message{Role: wire.RoleAssistant, Content: parts})
}

// decodeContent reads a message's content: a string or an array of parts.
func decodeContent(raw json.RawMessage, out *wire.Request) ([]wire.Part, error) {
	text, parts, err := wire.DecodeContent[contentPart](raw, "content parts")
	if err != nil || parts == nil {
		return text, err
	}
	res := make([]wire.Part, 0, len(parts))
	for _, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			if p.Text != nil {
				res = append(res, wire.Part{Type: wire.PartText, Text: *p.Text})
			}
		case "refusal":
			if p.Refusal != nil {
				res = append(res, wire.Part{Type: wire.PartText, Text: *p.Refusal})
			}
		case "input_image":
			if p.ImageURL == "" {
				// A file uploaded to OpenAI, which another provider cannot
				// read.
				out.Dropped = wire.Note(out.Dropped, "input_image.file_id")
				continue
			}
			img := openai.ImageFromURL(p.ImageURL)
			if p.Detail != "auto" {
				img.Detail = p.Detail
			}
			res = append(res, wire.Part{Type: wire.PartImage, Image: img})
		default:
			out.Dropped = wire.Note(out.Dropped, p.Type+" part")
		}
	}
	return res, nil
}

// decodeOutput reads a function call's output: a string or content parts.
func decodeOutput(raw json.RawMessage, out *wire.Request) ([]wire.Part, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []wire.Part{{Type: wire.PartText, Text: s}}, nil
	}
	parts, err := decodeContent(raw, out)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	return parts, nil
}

// EncodeRequest writes a Responses request for an upstream: stateless
// (store: false, the whole conversation in input), asking for reasoning's
// encrypted content when reasoning is on, so that the next turn can send it
// back. It returns the canonical fields the format has no place for.
func EncodeRequest(req *wire.Request) ([]byte, []string, error) {
	var dropped []string
	note := func(what string) { dropped = wire.Note(dropped, what) }
	f := false
	out := request{
		Model:           req.Model,
		MaxOutputTokens: req.MaxTokens,
		Temperature:     req.Temperature,
		TopP:            req.TopP,
		Stream:          req.Stream,
		Store:           &f,
		User:            req.User,
		Input:           json.RawMessage("[]"),
	}
	if req.TopK != nil {
		note("top_k")
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
	if len(req.Stop) > 0 {
		note("stop")
	}
	if r := req.Reasoning; r != nil {
		if r.Disabled {
			note("reasoning.disabled")
		} else {
			out.Reasoning = &reasoning{Effort: r.EffortLevel()}
			out.Include = []string{includeReasoning}
		}
	}
	if rf := req.ResponseFormat; rf != nil {
		out.Text = &textOptions{Format: &textFormat{Type: rf.Type}}
		if rf.Type == "json_schema" {
			out.Text.Format.Name, out.Text.Format.Schema = rf.Name, rf.Schema
			out.Text.Format.Strict = &rf.Strict
		}
	}
	if len(req.System) > 0 {
		texts := make([]string, 0, len(req.System))
		for _, p := range req.System {
			if p.CacheControl != nil {
				note("cache_control")
			}
			if p.Type != wire.PartText {
				note("system." + string(p.Type) + " part")
				continue
			}
			texts = append(texts, p.Text)
		}
		out.Instructions, _ = json.Marshal(strings.Join(texts, "\n\n"))
	}
	for _, t := range req.Tools {
		params := t.Parameters
		if len(params) == 0 || string(params) == "null" {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		// Responses function tools are strict unless told otherwise, and
		// strict mode rejects most schemas other formats take.
		out.Tools = append(out.Tools, tool{Type: "function", Name: t.Name, Description: t.Description, Parameters: params, Strict: &f})
		if t.CacheControl != nil {
			note("tools.cache_control")
		}
	}
	if tc := req.ToolChoice; tc != nil {
		switch tc.Mode {
		case wire.ToolNamed:
			out.ToolChoice, _ = json.Marshal(choice{Type: "function", Name: tc.Name})
		case wire.ToolAuto, wire.ToolNone, wire.ToolRequired:
			out.ToolChoice, _ = json.Marshal(string(tc.Mode))
		}
		if tc.DisableParallel && len(req.Tools) > 0 {
			out.ParallelToolCalls = &f
		}
	}
	items := make([]item, 0, len(req.Messages))
	for _, m := range req.Messages {
		items = encodeMessage(items, m, note)
	}
	if len(items) > 0 {
		out.Input, _ = json.Marshal(items)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, dropped, fmt.Errorf("responses: encode request: %w", err)
	}
	return body, dropped, nil
}

// encodeMessage appends a canonical message as input items: a user
// message's tool results as function_call_output items ahead of the rest;
// an assistant message's parts in order, its text runs as messages.
func encodeMessage(items []item, m wire.Message, note func(string)) []item {
	if m.Role == wire.RoleAssistant {
		var text []contentPart
		flush := func() {
			if len(text) > 0 {
				content, _ := json.Marshal(text)
				items = append(items, item{Type: "message", Role: "assistant", Content: content})
				text = nil
			}
		}
		for _, p := range m.Content {
			if p.CacheControl != nil {
				note("cache_control")
			}
			switch p.Type {
			case wire.PartText:
				text = append(text, contentPart{Type: "output_text", Text: &p.Text})
			case wire.PartToolCall:
				flush()
				args := p.ToolCall.Arguments
				items = append(items, item{Type: "function_call", CallID: p.ToolCall.ID, Name: p.ToolCall.Name, Arguments: &args})
				if p.ToolCall.Signature != "" {
					note("tool_call.signature")
				}
			case wire.PartReasoning:
				flush()
				if p.Signature == "" {
					// Without its encrypted content a reasoning item
					// refers to one stored upstream, which there is not.
					note("reasoning without signature")
					continue
				}
				// No id: the encrypted content is the item, as the Codex
				// CLI sends it back.
				items = append(items, reasoningItem(p, ""))
			default:
				note("assistant." + string(p.Type) + " part")
			}
		}
		flush()
		return items
	}
	var rest []wire.Part
	for _, p := range m.Content {
		if p.Type != wire.PartToolResult {
			rest = append(rest, p)
			continue
		}
		if p.ToolResult.IsError {
			note("tool_result.is_error")
		}
		items = append(items, item{Type: "function_call_output", CallID: p.ToolResult.CallID, Output: encodeOutput(p.ToolResult.Content, note)})
	}
	if len(rest) > 0 {
		content, _ := json.Marshal(encodeParts(rest, note))
		items = append(items, item{Type: "message", Role: "user", Content: content})
	}
	return items
}

// reasoningItem is a reasoning part as an item: its text as one summary
// part, its signature as the encrypted content.
func reasoningItem(p wire.Part, id string) item {
	summary := []summaryPart{}
	if p.Text != "" && !p.Redacted {
		summary = append(summary, summaryPart{Type: "summary_text", Text: p.Text})
	}
	it := item{Type: "reasoning", ID: id, Summary: &summary}
	if p.Signature != "" {
		sig := p.Signature
		it.EncryptedContent = &sig
	}
	return it
}

// encodeParts writes text and image parts as input content parts.
func encodeParts(parts []wire.Part, note func(string)) []contentPart {
	out := make([]contentPart, 0, len(parts))
	for _, p := range parts {
		if p.CacheControl != nil {
			note("cache_control")
		}
		switch p.Type {
		case wire.PartText:
			out = append(out, contentPart{Type: "input_text", Text: &p.Text})
		case wire.PartImage:
			out = append(out, contentPart{Type: "input_image", ImageURL: openai.ImageURL(p.Image), Detail: orAuto(p.Image.Detail)})
		default:
			note(string(p.Type) + " part")
		}
	}
	return out
}

// encodeOutput writes a tool result's content: text alone as a string,
// anything else as content parts.
func encodeOutput(parts []wire.Part, note func(string)) json.RawMessage {
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Type != wire.PartText {
			b, _ := json.Marshal(encodeParts(parts, note))
			return b
		}
		if p.CacheControl != nil {
			note("cache_control")
		}
		texts = append(texts, p.Text)
	}
	b, _ := json.Marshal(strings.Join(texts, "\n"))
	return b
}

// orAuto is an image's detail, which the Responses API requires.
func orAuto(detail string) string {
	if detail == "" {
		return "auto"
	}
	return detail
}
