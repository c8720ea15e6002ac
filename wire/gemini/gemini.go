// Package gemini is the Gemini API format of the translation core (see
// package wire): generateContent and streamGenerateContent requests,
// responses, stream chunks and errors, decoded into and encoded out of the
// canonical form, both directions.
//
// The model is not in a Gemini body but in its path: see [Path].
package gemini

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/llmoneapi/llmoneapi/wire"
)

// Path returns the path, under a base URL ending in the API version (e.g.
// https://generativelanguage.googleapis.com/v1beta), of a model's
// generateContent method, or of streamGenerateContent as server-sent
// events.
func Path(model string, stream bool) string {
	model = strings.TrimPrefix(model, "models/")
	if stream {
		return "/models/" + url.PathEscape(model) + ":streamGenerateContent?alt=sse"
	}
	return "/models/" + url.PathEscape(model) + ":generateContent"
}

type request struct {
	Contents          []content         `json:"contents"`
	SystemInstruction *content          `json:"systemInstruction,omitempty"`
	Tools             []tool            `json:"tools,omitempty"`
	ToolConfig        *toolConfig       `json:"toolConfig,omitempty"`
	GenerationConfig  *generationConfig `json:"generationConfig,omitempty"`
}

var requestFields = wire.Fields("contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model")

type content struct {
	Role  string `json:"role,omitempty"`
	Parts []part `json:"parts"`
}

type part struct {
	Text             *string           `json:"text,omitempty"`
	Thought          bool              `json:"thought,omitempty"`
	ThoughtSignature string            `json:"thoughtSignature,omitempty"`
	InlineData       *blob             `json:"inlineData,omitempty"`
	FileData         *fileData         `json:"fileData,omitempty"`
	FunctionCall     *functionCall     `json:"functionCall,omitempty"`
	FunctionResponse *functionResponse `json:"functionResponse,omitempty"`
}

type blob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

type fileData struct {
	MimeType string `json:"mimeType,omitempty"`
	FileURI  string `json:"fileUri"`
}

type functionCall struct {
	ID   string          `json:"id,omitempty"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

type functionResponse struct {
	ID       string          `json:"id,omitempty"`
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"`
}

type tool struct {
	FunctionDeclarations []functionDeclaration `json:"functionDeclarations,omitempty"`
}

type functionDeclaration struct {
	Name                 string          `json:"name"`
	Description          string          `json:"description,omitempty"`
	Parameters           json.RawMessage `json:"parameters,omitempty"`
	ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema,omitempty"`
}

type toolConfig struct {
	FunctionCallingConfig *functionCallingConfig `json:"functionCallingConfig,omitempty"`
}

type functionCallingConfig struct {
	Mode                 string   `json:"mode,omitempty"`
	AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
}

type generationConfig struct {
	Temperature        *float64        `json:"temperature,omitempty"`
	TopP               *float64        `json:"topP,omitempty"`
	TopK               *int            `json:"topK,omitempty"`
	MaxOutputTokens    int             `json:"maxOutputTokens,omitempty"`
	StopSequences      []string        `json:"stopSequences,omitempty"`
	Seed               *int64          `json:"seed,omitempty"`
	PresencePenalty    *float64        `json:"presencePenalty,omitempty"`
	FrequencyPenalty   *float64        `json:"frequencyPenalty,omitempty"`
	ResponseMimeType   string          `json:"responseMimeType,omitempty"`
	ResponseJSONSchema json.RawMessage `json:"responseJsonSchema,omitempty"`
	ResponseSchema     json.RawMessage `json:"responseSchema,omitempty"`
	ThinkingConfig     *thinkingConfig `json:"thinkingConfig,omitempty"`
}

var generationFields = wire.Fields("temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "seed",
	"presencePenalty", "frequencyPenalty", "responseMimeType", "responseJsonSchema", "responseSchema", "thinkingConfig")

type thinkingConfig struct {
	IncludeThoughts bool   `json:"includeThoughts,omitempty"`
	ThinkingBudget  *int   `json:"thinkingBudget,omitempty"`
	ThinkingLevel   string `json:"thinkingLevel,omitempty"`
}

// DecodeRequest reads a generateContent request. The model is the caller's
// to set, from the path; so is Stream.
func DecodeRequest(body []byte) (*wire.Request, error) {
	var in request
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("gemini: decode request: %w", err)
	}
	out := &wire.Request{Dropped: wire.UnknownFields(body, "", requestFields)}
	if g := in.GenerationConfig; g != nil {
		var raw struct {
			GenerationConfig json.RawMessage `json:"generationConfig"`
		}
		_ = json.Unmarshal(body, &raw)
		out.Dropped = append(out.Dropped, wire.UnknownFields(raw.GenerationConfig, "generationConfig.", generationFields)...)
		out.Temperature, out.TopP, out.TopK, out.Seed = g.Temperature, g.TopP, g.TopK, g.Seed
		out.PresencePenalty, out.FrequencyPenalty = g.PresencePenalty, g.FrequencyPenalty
		out.MaxTokens, out.Stop = g.MaxOutputTokens, g.StopSequences
		if g.ResponseMimeType == "application/json" {
			out.ResponseFormat = &wire.ResponseFormat{Type: "json_object"}
			if schema := firstNonEmpty(g.ResponseJSONSchema, g.ResponseSchema); schema != nil {
				out.ResponseFormat = &wire.ResponseFormat{Type: "json_schema", Name: "response", Schema: schema}
			}
		}
		if th := g.ThinkingConfig; th != nil {
			r := &wire.Reasoning{Effort: strings.ToLower(th.ThinkingLevel)}
			if th.ThinkingBudget != nil {
				switch b := *th.ThinkingBudget; {
				case b == 0:
					r.Disabled = true
				case b > 0:
					r.BudgetTokens = b
				}
			}
			out.Reasoning = r
		}
	}
	if in.SystemInstruction != nil {
		sys, err := decodeParts(in.SystemInstruction.Parts, out)
		if err != nil {
			return nil, fmt.Errorf("gemini: systemInstruction: %w", err)
		}
		out.System = sys
	}
	for _, t := range in.Tools {
		for _, f := range t.FunctionDeclarations {
			out.Tools = append(out.Tools, wire.Tool{Name: f.Name, Description: f.Description, Parameters: firstNonEmpty(f.ParametersJSONSchema, f.Parameters)})
		}
	}
	if tc := in.ToolConfig; tc != nil && tc.FunctionCallingConfig != nil {
		fc := tc.FunctionCallingConfig
		switch fc.Mode {
		case "AUTO", "":
			out.ToolChoice = &wire.ToolChoice{Mode: wire.ToolAuto}
		case "NONE":
			out.ToolChoice = &wire.ToolChoice{Mode: wire.ToolNone}
		case "ANY", "VALIDATED":
			out.ToolChoice = &wire.ToolChoice{Mode: wire.ToolRequired}
			if len(fc.AllowedFunctionNames) == 1 {
				out.ToolChoice = &wire.ToolChoice{Mode: wire.ToolNamed, Name: fc.AllowedFunctionNames[0]}
			}
		}
	}
	for i, c := range in.Contents {
		parts, err := decodeParts(c.Parts, out)
		if err != nil {
			return nil, fmt.Errorf("gemini: contents[%d]: %w", i, err)
		}
		role := wire.RoleUser
		if c.Role == "model" {
			role = wire.RoleAssistant
		}
		out.Messages = append(out.Messages, wire.Message{Role: role, Content: parts})
	}
	return out, nil
}

func firstNonEmpty(raws ...json.RawMessage) json.RawMessage {
	for _, r := range raws {
		if len(r) > 0 && string(r) != "null" {
			return r
		}
	}
	return nil
}

func decodeParts(parts []part, req *wire.Request) ([]wire.Part, error) {
	out := make([]wire.Part, 0, len(parts))
	for _, p := range parts {
		switch {
		case p.FunctionCall != nil:
			fc := p.FunctionCall
			id := fc.ID
			if id == "" {
				// Without ids, Gemini pairs calls and responses by name.
				id = fc.Name
			}
			out = append(out, wire.Part{Type: wire.PartToolCall, ToolCall: &wire.ToolCall{ID: id, Name: fc.Name, Arguments: wire.JSONText(fc.Args), Signature: p.ThoughtSignature}})
		case p.FunctionResponse != nil:
			fr := p.FunctionResponse
			id := fr.ID
			if id == "" {
				id = fr.Name
			}
			out = append(out, wire.Part{Type: wire.PartToolResult, ToolResult: &wire.ToolResult{
				CallID: id, Name: fr.Name, Content: []wire.Part{{Type: wire.PartText, Text: resultText(fr.Response)}},
			}})
		case p.InlineData != nil:
			out = append(out, wire.Part{Type: wire.PartImage, Image: &wire.Image{MediaType: p.InlineData.MimeType, Data: p.InlineData.Data}})
		case p.FileData != nil:
			out = append(out, wire.Part{Type: wire.PartImage, Image: &wire.Image{URL: p.FileData.FileURI, MediaType: p.FileData.MimeType}})
		case p.Thought:
			out = append(out, wire.Part{Type: wire.PartReasoning, Text: deref(p.Text), Signature: p.ThoughtSignature})
		case p.Text != nil:
			out = append(out, wire.Part{Type: wire.PartText, Text: *p.Text})
		default:
			req.Dropped = wire.Note(req.Dropped, "part without text, data or function")
		}
	}
	return out, nil
}

// resultText is a function response as a tool result's text: the value of
// its "result" (or "output") when that is all it holds, the whole object
// otherwise.
func resultText(resp json.RawMessage) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(resp, &obj) == nil && len(obj) == 1 {
		for _, k := range []string{"result", "output", "content"} {
			if v, ok := obj[k]; ok {
				var s string
				if json.Unmarshal(v, &s) == nil {
					return s
				}
				return wire.JSONText(v)
			}
		}
	}
	return wire.JSONText(resp)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Encoder writes requests for a Gemini upstream.
type Encoder struct {
	// LegacySchema sends tool parameters as "parameters", Gemini's OpenAPI
	// subset, cleaned of what it rejects (see CleanSchema), instead of as
	// "parametersJsonSchema", for endpoints that lack the latter.
	LegacySchema bool
}

// EncodeRequest writes a generateContent request with the default Encoder.
func EncodeRequest(req *wire.Request) ([]byte, []string, error) {
	return Encoder{}.EncodeRequest(req)
}

// signatureSentinel is the thoughtSignature Gemini documents for function
// calls whose real signature is unknown (history from another model): Gemini
// 3 models refuse a call in the history without one.
const signatureSentinel = "skip_thought_signature_validator"

// EncodeRequest writes a generateContent request for an upstream, and
// returns the canonical fields the format has no place for.
func (e Encoder) EncodeRequest(req *wire.Request) ([]byte, []string, error) {
	var dropped []string
	note := func(what string) { dropped = wire.Note(dropped, what) }
	out := request{Contents: []content{}}
	g := generationConfig{
		Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, Seed: req.Seed,
		PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty,
		MaxOutputTokens: req.MaxTokens, StopSequences: req.Stop,
	}
	if rf := req.ResponseFormat; rf != nil && rf.Type != "text" {
		g.ResponseMimeType = "application/json"
		if rf.Type == "json_schema" {
			g.ResponseJSONSchema = rf.Schema
		}
	}
	if r := req.Reasoning; r != nil {
		if r.Disabled {
			zero := 0
			g.ThinkingConfig = &thinkingConfig{ThinkingBudget: &zero}
		} else {
			budget := r.Budget()
			g.ThinkingConfig = &thinkingConfig{IncludeThoughts: true, ThinkingBudget: &budget}
		}
	}
	if b, _ := json.Marshal(g); string(b) != "{}" {
		out.GenerationConfig = &g
	}
	if len(req.System) > 0 {
		out.SystemInstruction = &content{Parts: encodeParts(req.System, nil, false, note)}
	}
	if len(req.Tools) > 0 {
		decls := make([]functionDeclaration, len(req.Tools))
		for i, t := range req.Tools {
			decls[i] = functionDeclaration{Name: t.Name, Description: t.Description}
			if len(t.Parameters) > 0 && string(t.Parameters) != "null" {
				if e.LegacySchema {
					decls[i].Parameters = CleanSchema(t.Parameters)
				} else {
					decls[i].ParametersJSONSchema = t.Parameters
				}
			}
			if t.CacheControl != nil {
				note("tools.cache_control")
			}
		}
		out.Tools = []tool{{FunctionDeclarations: decls}}
	}
	if tc := req.ToolChoice; tc != nil {
		fc := &functionCallingConfig{}
		switch tc.Mode {
		case wire.ToolAuto:
			fc.Mode = "AUTO"
		case wire.ToolNone:
			fc.Mode = "NONE"
		case wire.ToolRequired:
			fc.Mode = "ANY"
		case wire.ToolNamed:
			fc.Mode, fc.AllowedFunctionNames = "ANY", []string{tc.Name}
		}
		if fc.Mode != "" && len(req.Tools) > 0 {
			out.ToolConfig = &toolConfig{FunctionCallingConfig: fc}
		}
		if tc.DisableParallel {
			note("tool_choice.disable_parallel")
		}
	}
	names := map[string]string{} // tool-call id to function name
	sentinel := needsSignature(req.Model)
	for _, m := range req.Messages {
		role := "user"
		if m.Role == wire.RoleAssistant {
			role = "model"
			for _, p := range m.Content {
				if p.Type == wire.PartToolCall {
					names[p.ToolCall.ID] = p.ToolCall.Name
				}
			}
		}
		parts := encodeParts(m.Content, names, sentinel, note)
		if len(parts) == 0 {
			note("empty message")
			continue
		}
		out.Contents = append(out.Contents, content{Role: role, Parts: parts})
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, dropped, fmt.Errorf("gemini: encode request: %w", err)
	}
	return body, dropped, nil
}

// needsSignature reports whether model is a Gemini 3 or later model, which
// refuses function calls in the history without a thought signature.
func needsSignature(model string) bool {
	v, ok := strings.CutPrefix(path.Base(model), "gemini-")
	if !ok {
		return false
	}
	major, _, _ := strings.Cut(v, ".")
	major, _, _ = strings.Cut(major, "-")
	n, err := strconv.Atoi(major)
	return err == nil && n >= 3
}

func encodeParts(parts []wire.Part, names map[string]string, sentinel bool, note func(string)) []part {
	out := make([]part, 0, len(parts))
	signed := false // one signature per turn: the first call's
	for _, p := range parts {
		if p.CacheControl != nil {
			note("cache_control")
		}
		switch p.Type {
		case wire.PartText:
			out = append(out, part{Text: &p.Text})
		case wire.PartImage:
			if p.Image.Data != "" {
				out = append(out, part{InlineData: &blob{MimeType: p.Image.MediaType, Data: p.Image.Data}})
			} else {
				out = append(out, part{FileData: &fileData{MimeType: mediaType(p.Image), FileURI: p.Image.URL}})
			}
		case wire.PartToolCall:
			tc := p.ToolCall
			gp := part{FunctionCall: &functionCall{ID: tc.ID, Name: tc.Name, Args: wire.ArgumentsJSON(tc.Arguments)}, ThoughtSignature: tc.Signature}
			if gp.ThoughtSignature == "" && sentinel && !signed {
				gp.ThoughtSignature = signatureSentinel
			}
			signed = true
			out = append(out, gp)
		case wire.PartToolResult:
			tr := p.ToolResult
			name := tr.Name
			if name == "" {
				name = names[tr.CallID]
			}
			if name == "" {
				name = tr.CallID
			}
			var text strings.Builder
			for _, c := range tr.Content {
				if c.Type == wire.PartText {
					text.WriteString(c.Text)
				} else {
					note("tool_result." + string(c.Type))
				}
			}
			out = append(out, part{FunctionResponse: &functionResponse{ID: tr.CallID, Name: name, Response: resultObject(text.String(), tr.IsError)}})
		case wire.PartReasoning:
			// A signature from another provider would be refused, and
			// thought text alone tells Gemini nothing.
			note("reasoning part")
		default:
			note(string(p.Type) + " part")
		}
	}
	return out
}

// resultObject is a tool result as the object a function response holds:
// the result itself when it is a JSON object, {"result": ...} (or
// {"error": ...}) otherwise.
func resultObject(text string, isError bool) json.RawMessage {
	if !isError {
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(text), &obj) == nil && obj != nil {
			return json.RawMessage(wire.JSONText(json.RawMessage(text)))
		}
	}
	key := "result"
	if isError {
		key = "error"
	}
	b, _ := json.Marshal(map[string]string{key: text})
	return b
}

// mediaType is an image's media type, guessed from its URL's extension
// when it has none, since fileData needs one.
func mediaType(img *wire.Image) string {
	if img.MediaType != "" {
		return img.MediaType
	}
	u := img.URL
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	switch strings.ToLower(path.Ext(u)) {
	case ".png":
		return "image/png"
	case ".webp":
		return "image/webp"
	case ".gif":
		return "image/gif"
	case ".heic":
		return "image/heic"
	case ".pdf":
		return "application/pdf"
	}
	return "image/jpeg"
}

// schemaKeys are the keywords of Gemini's OpenAPI-subset Schema.
var schemaKeys = wire.Fields("type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
	"properties", "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
	"anyOf", "propertyOrdering", "default", "items", "minimum", "maximum")

// CleanSchema returns a JSON Schema in the OpenAPI subset that Gemini's
// "parameters" accepts: keywords outside it ($schema, additionalProperties,
// $ref, ...) are removed at every depth, a type list with "null" becomes
// nullable, and const becomes a one-value enum. A schema that is not an
// object is returned as it is.
func CleanSchema(schema json.RawMessage) json.RawMessage {
	var v any
	if json.Unmarshal(schema, &v) != nil {
		return schema
	}
	b, err := json.Marshal(cleanSchema(v))
	if err != nil {
		return schema
	}
	return b
}

func cleanSchema(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, val := range m {
		switch {
		case k == "const":
			out["enum"] = []any{val}
		case k == "type":
			if list, ok := val.([]any); ok {
				for _, t := range list {
					if t == "null" {
						out["nullable"] = true
					} else if _, set := out["type"]; !set {
						out["type"] = t
					}
				}
			} else {
				out["type"] = val
			}
		case k == "properties":
			props, _ := val.(map[string]any)
			clean := make(map[string]any, len(props))
			for name, p := range props {
				clean[name] = cleanSchema(p)
			}
			out[k] = clean
		case k == "items":
			out[k] = cleanSchema(val)
		case k == "anyOf":
			list, _ := val.([]any)
			clean := make([]any, len(list))
			for i, s := range list {
				clean[i] = cleanSchema(s)
			}
			out[k] = clean
		case schemaKeys(k):
			out[k] = val
		}
	}
	return out
}
