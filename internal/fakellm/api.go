package fakellm

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// apiRequest is what the server reads of a request body, for every endpoint.
type apiRequest struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	Prompt              json.RawMessage `json:"prompt"`
	Input               json.RawMessage `json:"input"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"`
	Dimensions          *int            `json:"dimensions"`
	EncodingFormat      string          `json:"encoding_format"`

	// Filled by the endpoint's check.
	promptTokens int
	inputs       []input
	turn         turn
}

func (req *apiRequest) includeUsage() bool {
	return req.StreamOptions != nil && req.StreamOptions.IncludeUsage
}

// input is one of the texts (or token arrays) of a prompt or embedding input.
type input struct {
	key    string // what an embedding is derived from
	tokens int
}

type endpoint struct {
	method string
	check  func(*apiRequest) *apiError
	serve  func(s *Server, x *exchange, req *apiRequest, b Behavior, id string)
}

var (
	chatEndpoint       = &endpoint{http.MethodPost, checkChat, serveChat}
	completionEndpoint = &endpoint{http.MethodPost, checkCompletion, serveCompletion}
	embeddingEndpoint  = &endpoint{http.MethodPost, checkEmbedding, serveEmbedding}
	modelsEndpoint     = &endpoint{method: http.MethodGet, serve: serveModels}
	modelEndpoint      = &endpoint{method: http.MethodGet, serve: serveModel}
)

// route finds the endpoint of a path, with or without the /v1 prefix, and
// the model id of /models/{id}.
func route(path string) (*endpoint, string) {
	if p, ok := strings.CutPrefix(path, "/v1"); ok && strings.HasPrefix(p, "/") {
		path = p
	}
	switch path {
	case "/chat/completions":
		return chatEndpoint, ""
	case "/completions":
		return completionEndpoint, ""
	case "/embeddings":
		return embeddingEndpoint, ""
	case "/models":
		return modelsEndpoint, ""
	}
	if id, ok := strings.CutPrefix(path, "/models/"); ok && id != "" {
		return modelEndpoint, id
	}
	return nil, ""
}

func validate(ep *endpoint, req *apiRequest, readErr, parseErr error) *apiError {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(readErr, &tooLarge):
		return &apiError{status: http.StatusRequestEntityTooLarge, Message: "Request body too large.", Type: "invalid_request_error"}
	case readErr != nil:
		return &apiError{status: http.StatusBadRequest, Message: "Could not read the request body: " + readErr.Error(), Type: "invalid_request_error"}
	case parseErr != nil:
		return &apiError{status: http.StatusBadRequest, Message: "We could not parse the JSON body of your request: " + parseErr.Error(), Type: "invalid_request_error"}
	case req.Model == "":
		return &apiError{status: http.StatusBadRequest, Message: "you must provide a model parameter", Type: "invalid_request_error"}
	}
	return ep.check(req)
}

func checkChat(req *apiRequest) *apiError {
	if len(req.Messages) == 0 {
		return invalidParam("messages", "[] is too short - 'messages'")
	}
	n := 0
	for i, m := range req.Messages {
		texts, err := contentTexts(m.Content)
		if err != nil {
			return invalidParam("messages", "Invalid message content: "+err.Error())
		}
		n += words(texts...)
		if m.Role == "tool" {
			req.turn.results = append(req.turn.results, strings.Join(texts, "\n"))
			req.turn.answered = i == len(req.Messages)-1
		}
	}
	for _, t := range req.Tools {
		req.turn.tools = append(req.turn.tools, t.Function.Name)
	}
	req.promptTokens = max(n, 1)
	return nil
}

func checkCompletion(req *apiRequest) *apiError {
	// OpenAI reads a missing prompt as <|endoftext|>: one token.
	req.promptTokens = 1
	if len(req.Prompt) == 0 || string(req.Prompt) == "null" {
		return nil
	}
	in, err := parseInputs(req.Prompt)
	if err != nil {
		return invalidParam("prompt", "Invalid prompt: "+err.Error())
	}
	req.promptTokens = max(sumTokens(in), 1)
	return nil
}

func checkEmbedding(req *apiRequest) *apiError {
	in, err := parseInputs(req.Input)
	if err != nil || len(in) == 0 {
		return invalidParam("input", "'$.input' is invalid: expected a string, an array of strings, an array of tokens or an array of token arrays.")
	}
	if d := req.Dimensions; d != nil && (*d < 1 || *d > 1<<16) {
		return invalidParam("dimensions", "Invalid 'dimensions': must be between 1 and 65536.")
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return invalidParam("encoding_format", "Invalid 'encoding_format': expected 'float' or 'base64'.")
	}
	req.inputs = in
	req.promptTokens = max(sumTokens(in), 1)
	return nil
}

// contentTexts returns the texts of a message's content: a string, or an
// array of parts of which only the text ones count (OpenAI chat's and the
// Responses API's alike).
func contentTexts(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, errors.New("expected a string or an array of content parts")
	}
	texts := make([]string, len(parts))
	for i, p := range parts {
		texts[i] = p.Text
	}
	return texts, nil
}

// parseInputs reads a legacy prompt or an embedding input: a string, an
// array of strings, an array of tokens or an array of token arrays.
func parseInputs(raw json.RawMessage) ([]input, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []input{textInput(s)}, nil
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		in := make([]input, len(ss))
		for i, s := range ss {
			in[i] = textInput(s)
		}
		return in, nil
	}
	var tokens []int
	if json.Unmarshal(raw, &tokens) == nil {
		return []input{tokenInput(tokens)}, nil
	}
	var arrays [][]int
	if err := json.Unmarshal(raw, &arrays); err != nil {
		return nil, errors.New("expected a string, an array of strings, an array of tokens or an array of token arrays")
	}
	in := make([]input, len(arrays))
	for i, a := range arrays {
		in[i] = tokenInput(a)
	}
	return in, nil
}

func textInput(s string) input {
	return input{key: s, tokens: len(strings.Fields(s))}
}

func tokenInput(tokens []int) input {
	b, _ := json.Marshal(tokens)
	return input{key: string(b), tokens: len(tokens)}
}

func sumTokens(in []input) int {
	n := 0
	for _, i := range in {
		n += i.tokens
	}
	return n
}

// completion is the shape shared by chat completions, legacy completions
// and their stream chunks.
type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices any    `json:"choices"`
	// Usage is left out, null, or the usage object, as OpenAI does in each
	// case.
	Usage json.RawMessage `json:"usage,omitempty"`
}

type usage struct {
	PromptTokens        int             `json:"prompt_tokens"`
	CompletionTokens    int             `json:"completion_tokens"`
	TotalTokens         int             `json:"total_tokens"`
	PromptTokensDetails *map[string]int `json:"prompt_tokens_details,omitempty"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	Logprobs     any         `json:"logprobs"`
	FinishReason string      `json:"finish_reason"`
}

type chatMessage struct {
	Role      string         `json:"role"`
	Content   string         `json:"content"`
	Refusal   any            `json:"refusal"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
}

// chatToolCall is a tool call of a chat message, and in a stream's deltas
// a piece of one, which carries its index and, in its first piece only, its
// id, type and name.
type chatToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     any       `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatDelta struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content,omitempty"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
}

type textChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

var nullJSON = json.RawMessage("null")

// piece is the text of content chunk i; the pieces joined make the reply.
func piece(i int) string {
	if i == 0 {
		return "chunk0"
	}
	return " chunk" + strconv.Itoa(i)
}

// answer lays out a chat or legacy completion: its pieces, why it ends
// ("stop", "length" or "tool_calls"), and for chat the tool call it makes
// (nil when none).
func (req *apiRequest) answer(b Behavior, chat bool) (plan, *chatToolCall) {
	limit := req.MaxCompletionTokens
	if limit <= 0 {
		limit = req.MaxTokens
	}
	if !chat {
		return planReply(b, limit, nil), nil
	}
	p, name, args, calls := reply(b, req.turn, limit, nil)
	if !calls {
		return p, nil
	}
	p.finish = "tool_calls"
	c := &chatToolCall{ID: newID("call_"), Type: "function"}
	c.Function.Name, c.Function.Arguments = name, args
	return p, c
}

// output is the completion tokens of an answer: one per piece, and one
// for a tool call.
func output(p plan, call *chatToolCall) int {
	if call != nil {
		return len(p.pieces) + 1
	}
	return len(p.pieces)
}

// usageJSON is a reply's usage; prompt tokens read from a prompt cache
// (Behavior.CachedTokens) come on top of the prompt's, as OpenAI counts them.
func usageJSON(req *apiRequest, b Behavior, completionTokens int) json.RawMessage {
	prompt := req.promptTokens + b.CachedTokens
	u := usage{PromptTokens: prompt, CompletionTokens: completionTokens, TotalTokens: prompt + completionTokens}
	if b.CachedTokens > 0 {
		u.PromptTokensDetails = &map[string]int{"cached_tokens": b.CachedTokens}
	}
	out, _ := json.Marshal(u)
	return out
}

func newID(prefix string) string {
	return prefix + rand.Text()
}

func serveChat(_ *Server, x *exchange, req *apiRequest, b Behavior, _ string) {
	serveReply(x, req, b, true)
}

func serveCompletion(_ *Server, x *exchange, req *apiRequest, b Behavior, _ string) {
	serveReply(x, req, b, false)
}

// serveReply answers a chat or a legacy completion, which differ only in
// their object names and the shape of a choice.
func serveReply(x *exchange, req *apiRequest, b Behavior, chat bool) {
	if req.Stream {
		x.stream(req, b, chat)
		return
	}
	p, call := req.answer(b, chat)
	if !x.sleep(time.Duration(len(p.pieces)) * b.ChunkDelay) {
		return
	}
	if b.DropAfter > 0 {
		x.abort()
	}
	c := completion{Created: time.Now().Unix(), Model: req.Model}
	if chat {
		c.ID, c.Object = newID("chatcmpl-"), "chat.completion"
		m := chatMessage{Role: "assistant", Content: p.text()}
		if call != nil {
			m.ToolCalls = []chatToolCall{*call}
		}
		c.Choices = []chatChoice{{Message: m, FinishReason: p.finish}}
	} else {
		c.ID, c.Object = newID("cmpl-"), "text_completion"
		c.Choices = []textChoice{{Text: p.text(), FinishReason: &p.finish}}
	}
	if !b.NoUsage {
		c.Usage = usageJSON(req, b, output(p, call))
	}
	x.reply(c)
}

func (x *exchange) stream(req *apiRequest, b Behavior, chat bool) {
	p, call := req.answer(b, chat)
	head := completion{ID: newID("cmpl-"), Object: "text_completion", Created: time.Now().Unix(), Model: req.Model}
	if chat {
		head.ID, head.Object = newID("chatcmpl-"), "chat.completion.chunk"
	}
	withUsage := req.includeUsage() && !b.NoUsage
	if withUsage {
		head.Usage = nullJSON
	}
	choice := func(text *string, reason *string) any {
		if chat {
			return []chatChunkChoice{{Delta: chatDelta{Content: text}, FinishReason: reason}}
		}
		c := textChoice{FinishReason: reason}
		if text != nil {
			c.Text = *text
		}
		return []textChoice{c}
	}

	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	x.w.WriteHeader(http.StatusOK)
	if b.Stall > 0 && b.StallAfter == 0 && !(x.flush() && x.sleep(b.Stall)) {
		return
	}
	if chat {
		c := head
		empty := ""
		c.Choices = []chatChunkChoice{{Delta: chatDelta{Role: "assistant", Content: &empty}}}
		if !x.event(c) {
			return
		}
	} else if !x.flush() {
		// Legacy streams have no role chunk; the headers still go out at
		// once, as they do from OpenAI.
		return
	}
	if b.DropBeforeContent {
		x.abort()
	}
	for i, text := range p.pieces {
		if !x.sleep(b.ChunkDelay) {
			return
		}
		c := head
		c.Choices = choice(&text, nil)
		if !x.event(c) {
			return
		}
		if i+1 == b.DropAfter {
			x.abort()
		}
		if b.Stall > 0 && i+1 == b.StallAfter && !x.sleep(b.Stall) {
			return
		}
	}
	if call != nil {
		// The call's first delta names it; its arguments follow in two
		// pieces, as a model streams them.
		zero, half := 0, len(call.Function.Arguments)/2
		first, rest := *call, chatToolCall{Index: &zero}
		first.Index = &zero
		first.Function.Arguments = ""
		for _, d := range []chatToolCall{first, withArgs(rest, call.Function.Arguments[:half]), withArgs(rest, call.Function.Arguments[half:])} {
			c := head
			c.Choices = []chatChunkChoice{{Delta: chatDelta{ToolCalls: []chatToolCall{d}}}}
			if !x.event(c) {
				return
			}
		}
	}
	c := head
	c.Choices = choice(nil, &p.finish)
	if !x.event(c) {
		return
	}
	if withUsage {
		c := head
		c.Choices = []any{}
		c.Usage = usageJSON(req, b, output(p, call))
		if !x.event(c) {
			return
		}
	}
	x.write([]byte("data: [DONE]\n\n"))
}

func withArgs(c chatToolCall, args string) chatToolCall {
	c.Function.Arguments = args
	return c
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embedding     `json:"data"`
	Model  string          `json:"model"`
	Usage  *embeddingUsage `json:"usage,omitempty"`
}

type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

func serveEmbedding(_ *Server, x *exchange, req *apiRequest, b Behavior, _ string) {
	if b.DropAfter > 0 {
		x.abort()
	}
	dims := DefaultDimensions
	if req.Dimensions != nil {
		dims = *req.Dimensions
	}
	list := embeddingList{Object: "list", Model: req.Model, Data: make([]embedding, len(req.inputs))}
	for i, in := range req.inputs {
		v := vector(req.Model, in.key, dims)
		e := embedding{Object: "embedding", Index: i}
		if req.EncodingFormat == "base64" {
			raw := make([]byte, 0, 4*len(v))
			for _, f := range v {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			e.Embedding = base64.StdEncoding.EncodeToString(raw)
		} else {
			// Widened from float32 so that both encodings decode to the
			// same numbers.
			fs := make([]float64, len(v))
			for j, f := range v {
				fs[j] = float64(f)
			}
			e.Embedding = fs
		}
		list.Data[i] = e
	}
	if !b.NoUsage {
		list.Usage = &embeddingUsage{PromptTokens: req.promptTokens, TotalTokens: req.promptTokens}
	}
	x.reply(list)
}

// vector is a unit vector that depends only on its arguments. Its first
// values are the same whatever dims, so a shorter one is a truncated longer
// one renormalised, as OpenAI's dimensions parameter makes them.
func vector(model, key string, dims int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(model))
	h.Write([]byte{0})
	h.Write([]byte(key))
	state := h.Sum64()
	v := make([]float64, dims)
	var norm float64
	for i := range v {
		// splitmix64: cheap, well mixed, and the same on every platform.
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		v[i] = float64(z>>11)/(1<<53)*2 - 1
		norm += v[i] * v[i]
	}
	norm = math.Sqrt(norm)
	out := make([]float32, dims)
	for i, f := range v {
		if norm > 0 {
			f /= norm
		}
		out[i] = float32(f)
	}
	return out
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelsCreated is a fixed creation time, so that listings are
// deterministic.
const modelsCreated = 1700000000

func (s *Server) models() []string {
	if len(s.Models) == 0 {
		return []string{"gpt-4o-mini", "gpt-4o", "text-embedding-3-small"}
	}
	return s.Models
}

func serveModels(s *Server, x *exchange, _ *apiRequest, b Behavior, _ string) {
	if b.DropAfter > 0 {
		x.abort()
	}
	ids := s.models()
	data := make([]model, len(ids))
	for i, id := range ids {
		data[i] = model{ID: id, Object: "model", Created: modelsCreated, OwnedBy: "fakellm"}
	}
	x.reply(struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", data})
}

func serveModel(s *Server, x *exchange, _ *apiRequest, b Behavior, id string) {
	if b.DropAfter > 0 {
		x.abort()
	}
	for _, m := range s.models() {
		if m == id {
			x.reply(model{ID: id, Object: "model", Created: modelsCreated, OwnedBy: "fakellm"})
			return
		}
	}
	x.fail(modelNotFound(id))
}
