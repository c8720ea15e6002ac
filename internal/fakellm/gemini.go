package fakellm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The fake's Gemini API: POST /v1beta/models/{model}:generateContent,
// :streamGenerateContent (server-sent events with ?alt=sse, a streamed JSON
// array without) and :countTokens, also under /v1. A request must carry the
// server's APIKey in x-goog-api-key or a key query parameter. Replies are
// made as for OpenAI, in Gemini's shapes: a thought part first when
// generationConfig.thinkingConfig.includeThoughts is set, a functionCall
// part last when Behavior.ToolCall scripts one, usageMetadata in every
// chunk (cachedContentTokenCount, thoughtsTokenCount), finishReason STOP or
// MAX_TOKENS, and Google's error bodies
// ({"error":{"code","message","status"}}, 429 RESOURCE_EXHAUSTED). Like
// Gemini, it rejects a tool whose "parameters" hold JSON Schema keywords
// outside its OpenAPI subset ($schema, additionalProperties);
// "parametersJsonSchema" takes them.

type geminiRequest struct {
	Contents          []geminiContent `json:"contents"`
	SystemInstruction *geminiContent  `json:"systemInstruction"`
	Tools             []struct {
		FunctionDeclarations []struct {
			Name                 string          `json:"name"`
			Parameters           json.RawMessage `json:"parameters"`
			ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema"`
		} `json:"functionDeclarations"`
	} `json:"tools"`
	GenerationConfig *struct {
		MaxOutputTokens int      `json:"maxOutputTokens"`
		StopSequences   []string `json:"stopSequences"`
		ThinkingConfig  *struct {
			IncludeThoughts bool `json:"includeThoughts"`
		} `json:"thinkingConfig"`
	} `json:"generationConfig"`
}

type geminiContent struct {
	Role  string `json:"role"`
	Parts []struct {
		Text             string          `json:"text"`
		FunctionResponse json.RawMessage `json:"functionResponse"`
	} `json:"parts"`
}

// geminiStatuses are Google's status names for HTTP statuses.
var geminiStatuses = map[int]string{
	400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
	409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
	500: "INTERNAL", 501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

func (x *exchange) geminiFail(status int, msg string) {
	name, ok := geminiStatuses[status]
	if !ok {
		name = "UNKNOWN"
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": status, "message": msg, "status": name}})
	x.send(status, b)
}

func (x *exchange) geminiFailAs(b Behavior, model string) {
	status := b.Status
	if status < 400 {
		status = http.StatusInternalServerError
	}
	if b.ErrorBody != "" {
		x.send(status, []byte(b.ErrorBody))
		return
	}
	msg := http.StatusText(status) + "."
	switch status {
	case http.StatusNotFound:
		msg = "models/" + model + " is not found for API version v1beta, or is not supported for generateContent."
	case http.StatusTooManyRequests:
		msg = "You exceeded your current quota, please check your plan and billing details."
	case http.StatusServiceUnavailable:
		msg = "The model is overloaded. Please try again later."
	case http.StatusInternalServerError:
		msg = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
	}
	x.geminiFail(status, msg)
}

// unsupportedSchemaKey finds a key, at any depth, that Gemini's
// OpenAPI-subset schema rejects.
func unsupportedSchemaKey(schema json.RawMessage) string {
	var v any
	if json.Unmarshal(schema, &v) != nil {
		return ""
	}
	return findSchemaKey(v)
}

func findSchemaKey(v any) string {
	switch t := v.(type) {
	case map[string]any:
		for _, k := range []string{"$schema", "additionalProperties"} {
			if _, ok := t[k]; ok {
				return k
			}
		}
		for _, c := range t {
			if k := findSchemaKey(c); k != "" {
				return k
			}
		}
	case []any:
		for _, c := range t {
			if k := findSchemaKey(c); k != "" {
				return k
			}
		}
	}
	return ""
}

func serveGemini(s *Server, x *exchange, body []byte, readErr error) {
	r := x.r
	rest := r.URL.Path[strings.Index(r.URL.Path, "/models/")+len("/models/"):]
	colon := strings.LastIndexByte(rest, ':')
	if colon < 0 {
		s.recordAs(x, body, rest, false)
		x.geminiFail(http.StatusNotFound, "Method not found.")
		return
	}
	model, method := rest[:colon], rest[colon+1:]
	stream := method == "streamGenerateContent"
	s.recordAs(x, body, model, stream)
	var req geminiRequest
	parseErr := readErr
	if readErr == nil {
		parseErr = json.Unmarshal(body, &req)
	}
	key := r.Header.Get("x-goog-api-key")
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	switch {
	case method != "generateContent" && !stream && method != "countTokens":
		x.geminiFail(http.StatusNotFound, "Method not found.")
		return
	case r.Method != http.MethodPost:
		x.geminiFail(http.StatusMethodNotAllowed, "Method not allowed.")
		return
	case s.APIKey != "" && key == "":
		x.geminiFail(http.StatusForbidden, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
		return
	case s.APIKey != "" && key != s.APIKey:
		x.geminiFail(http.StatusBadRequest, "API key not valid. Please pass a valid API key.")
		return
	case readErr != nil:
		status, msg := readError(readErr)
		x.geminiFail(status, msg)
		return
	case parseErr != nil:
		x.geminiFail(http.StatusBadRequest, "Invalid JSON payload received. "+parseErr.Error())
		return
	case len(req.Contents) == 0:
		x.geminiFail(http.StatusBadRequest, "* GenerateContentRequest.contents: contents is not specified")
		return
	}
	var t turn
	for i, tool := range req.Tools {
		for j, f := range tool.FunctionDeclarations {
			at := "tools[" + strconv.Itoa(i) + "].function_declarations[" + strconv.Itoa(j) + "]"
			if len(f.Parameters) > 0 && len(f.ParametersJSONSchema) > 0 {
				x.geminiFail(http.StatusBadRequest, "* GenerateContentRequest."+at+": parameters and parameters_json_schema cannot both be set")
				return
			}
			if k := unsupportedSchemaKey(f.Parameters); k != "" {
				x.geminiFail(http.StatusBadRequest, `Invalid JSON payload received. Unknown name "`+k+`" at '`+at+`.parameters': Cannot find field.`)
				return
			}
			t.tools = append(t.tools, f.Name)
		}
	}
	var texts []string
	if req.SystemInstruction != nil {
		for _, p := range req.SystemInstruction.Parts {
			texts = append(texts, p.Text)
		}
	}
	for i, c := range req.Contents {
		for _, p := range c.Parts {
			texts = append(texts, p.Text)
			if len(p.FunctionResponse) > 0 {
				// The response is any JSON object; its text is enough to
				// find what a command printed.
				t.results = append(t.results, string(p.FunctionResponse))
				t.answered = t.answered || i == len(req.Contents)-1
			}
		}
	}
	b := s.behaviorFor(x, model)
	prompt := max(words(texts...), 1) + b.CachedTokens
	if method == "countTokens" {
		x.reply(map[string]int{"totalTokens": prompt})
		return
	}
	if !x.sleep(b.Latency) {
		return
	}
	if b.Status >= 400 || b.ErrorBody != "" {
		x.geminiFailAs(b, model)
		return
	}
	var maxTokens int
	var stops []string
	thinks := false
	if g := req.GenerationConfig; g != nil {
		maxTokens, stops = g.MaxOutputTokens, g.StopSequences
		thinks = g.ThinkingConfig != nil && g.ThinkingConfig.IncludeThoughts
	}
	p, toolName, toolArgs, calls := reply(b, t, maxTokens, stops)
	finish := "STOP"
	if p.finish == "length" {
		finish = "MAX_TOKENS"
	}
	g := geminiReply{b: b, model: model, id: newID(""), prompt: prompt, thinks: thinks}
	var parts []map[string]any
	if thinks {
		parts = append(parts, map[string]any{"text": fakeThought, "thought": true})
	}
	for _, piece := range p.pieces {
		parts = append(parts, map[string]any{"text": piece})
	}
	if calls {
		parts = append(parts, map[string]any{"functionCall": map[string]any{"name": toolName, "args": json.RawMessage(toolArgs)}})
	}
	if !stream {
		if !x.sleep(time.Duration(len(p.pieces)) * b.ChunkDelay) {
			return
		}
		if b.DropAfter > 0 {
			x.abort()
		}
		if len(parts) == 0 {
			parts = append(parts, map[string]any{"text": ""})
		}
		g.output = len(p.pieces)
		if calls {
			g.output++
		}
		x.reply(g.chunk(parts, finish))
		return
	}
	sse := r.URL.Query().Get("alt") == "sse"
	h := x.w.Header()
	if sse {
		h.Set("Content-Type", "text/event-stream")
	} else {
		h.Set("Content-Type", "application/json")
	}
	x.w.WriteHeader(http.StatusOK)
	send := func(v any, first bool) bool {
		b, _ := json.Marshal(v)
		var out []byte
		switch {
		case sse:
			// Gemini ends its events with CRLF pairs.
			out = append(append([]byte("data: "), b...), "\r\n\r\n"...)
		case first:
			out = append([]byte("["), b...)
		default:
			out = append([]byte(",\r\n"), b...)
		}
		return x.write(out) && x.flush()
	}
	first, pieces := true, 0
	for i, part := range parts {
		_, isCall := part["functionCall"]
		content := !isCall && part["thought"] == nil
		if content {
			if !x.sleep(b.ChunkDelay) {
				return
			}
			pieces++
		}
		g.output = pieces
		if isCall {
			g.output++
		}
		reason := ""
		if i == len(parts)-1 {
			reason = finish
		}
		if !send(g.chunk([]map[string]any{part}, reason), first) {
			return
		}
		first = false
		if content && pieces == b.DropAfter {
			x.abort()
		}
	}
	if len(parts) == 0 && !send(g.chunk([]map[string]any{{"text": ""}}, finish), true) {
		return
	}
	if !sse {
		x.write([]byte("]"))
	}
}

// geminiReply makes the chunks of one reply.
type geminiReply struct {
	b      Behavior
	model  string
	id     string
	prompt int
	output int
	thinks bool
}

func (g *geminiReply) chunk(parts []map[string]any, finish string) map[string]any {
	cand := map[string]any{"content": map[string]any{"role": "model", "parts": parts}, "index": 0}
	if finish != "" {
		cand["finishReason"] = finish
	}
	c := map[string]any{"candidates": []any{cand}, "modelVersion": g.model, "responseId": g.id}
	if !g.b.NoUsage {
		u := map[string]int{"promptTokenCount": g.prompt, "candidatesTokenCount": g.output, "totalTokenCount": g.prompt + g.output}
		if g.b.CachedTokens > 0 {
			u["cachedContentTokenCount"] = g.b.CachedTokens
		}
		if g.thinks {
			u["thoughtsTokenCount"] = 1
			u["totalTokenCount"]++
		}
		c["usageMetadata"] = u
	}
	return c
}
