// Package fakellm is a fake LLM provider that speaks the OpenAI API, for the
// gateway's tests and benchmarks, and also Anthropic's Messages API, the
// Gemini API and Azure OpenAI's deployment paths, each in its own shapes
// (see anthropic.go, gemini.go and azure.go) with the same Behavior.
//
// A [Server] is an [http.Handler]; serve it with httptest.NewServer in tests,
// or with an [http.Server] (as cmd/mockllm does) for demos and benchmarks:
//
//	fake := &fakellm.Server{APIKey: "sk-upstream-key"}
//	ts := httptest.NewServer(fake)
//	defer ts.Close()
//	// point the gateway (or an OpenAI client) at ts.URL or ts.URL+"/v1"
//
// It answers POST /v1/chat/completions, POST /v1/completions,
// POST /v1/embeddings, GET /v1/models and GET /v1/models/{id}, each also
// without the /v1 prefix, because providers are configured with a base URL
// that may or may not end in /v1. Replies are deterministic: a completion is
// made of numbered chunks ("chunk0 chunk1 ..."), its prompt_tokens is the
// number of whitespace-separated words in the prompt (at least 1) and its
// completion_tokens the number of chunks; an embedding depends only on the
// model, the input and the number of dimensions.
//
// [Behavior] sets how it answers (chunks, delays, errors, dropped
// connections, missing usage), for every model or for one, and can be changed
// while it serves. Every request is recorded so that tests can assert what
// reached the upstream: see [Server.Requests], [Server.Cancelled].
package fakellm

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultChunks is the number of content chunks in a reply when
// Behavior.Chunks is not set.
const DefaultChunks = 5

// DefaultDimensions is the length of an embedding when the request does not
// ask for one.
const DefaultDimensions = 8

// maxBody bounds what a request may send, so that a runaway client cannot
// exhaust the memory of a benchmark.
const maxBody = 64 << 20

// Behavior says how the server answers. The zero value answers at once with
// DefaultChunks chunks and reports usage.
type Behavior struct {
	// Chunks is the number of content chunks in a completion; 0 or less
	// means DefaultChunks. A request's max_completion_tokens (or max_tokens)
	// lowers it, and the reply then ends with finish_reason "length".
	Chunks int
	// ChunkDelay is the pause before each content chunk of a stream. A reply
	// that is not streamed waits Chunks times ChunkDelay before it is sent, as
	// a real model takes as long to write a whole answer.
	ChunkDelay time.Duration
	// Buffered sends a stream's events without a flush each: they leave in
	// as few writes as the server's response buffer allows, as from an
	// upstream that has the whole answer at hand (a cache, a small fast
	// model, or one behind a buffering proxy). Before a pause (ChunkDelay,
	// Latency, Stall) what was written is flushed, so nothing sent waits on
	// it. A benchmark uses it so that the fake's own write calls, one per
	// event otherwise, do not take the CPU the proxies under test share.
	Buffered bool
	// Latency is the pause before anything of the response is sent: the
	// headers, and for a stream its first chunk (the one with the role).
	Latency time.Duration
	// Status, when 400 or more, makes every request fail after Latency with
	// this status and an OpenAI-style error body fitting it (429
	// rate_limit_exceeded, 5xx server_error, ...).
	Status int
	// ErrorBody, when set, is sent as the error body instead of the one
	// made for Status, with Content-Type application/json; when Status is
	// under 400 the status is 500.
	ErrorBody string
	// DropAfter, when more than 0, aborts the connection once that many
	// content chunks of a stream are sent: no finish chunk, no usage, no
	// [DONE]. If the stream has fewer chunks it ends normally. A reply that
	// is not streamed (embeddings and models too) has no chunks to count, so
	// any DropAfter aborts it before anything is sent.
	DropAfter int
	// DropBeforeContent aborts a stream right after its headers and role
	// chunk, before any content: a stream that breaks before its first token.
	DropBeforeContent bool
	// Stall, when more than 0, makes a stream go silent for that long after
	// StallAfter content chunks (0: right after the headers, before the role
	// chunk), as a hung upstream does; the stream then goes on.
	Stall      time.Duration
	StallAfter int
	// Header holds extra headers for error responses (see Status), such as
	// Retry-After, retry-after-ms or x-ratelimit-reset-requests with a 429.
	Header map[string]string
	// NoUsage leaves usage out of every reply, streamed or not, as some
	// OpenAI-compatible servers do, even when the request asks for it with
	// stream_options.include_usage.
	NoUsage bool
	// ToolCall, when set, makes a request that offers tools (OpenAI chat,
	// Responses, Anthropic and Gemini) answer with a call of one of them
	// after its text, unless the request's last turn already carries a
	// tool result: then the answer is text alone, so that a two-turn tool
	// loop ends.
	ToolCall *ToolCall
	// Agent, when set, scripts a coding agent's turns: a call of its shell
	// tool, then an answer quoting what the command printed (see Agent).
	Agent *Agent
	// NoResponses makes POST /v1/responses answer 404, as a server that
	// speaks chat completions only does.
	NoResponses bool
	// CachedTokens and CacheCreationTokens are reported as prompt tokens
	// read from and written to a prompt cache, on top of the prompt's
	// words, in each API's own usage fields.
	CachedTokens        int
	CacheCreationTokens int
}

// ToolCall is the tool call a Behavior scripts.
type ToolCall struct {
	// Name is the tool to call; empty means the request's first tool.
	Name string
	// Arguments is the call's arguments, a JSON object; empty means {}.
	Arguments string
}

// Request is one request as the server received it.
type Request struct {
	// Time is when the request arrived.
	Time time.Time
	// Method, Path, RawQuery and Host are those of the request line.
	Method   string
	Path     string
	RawQuery string
	Host     string
	// Header is a copy of the request's headers, Authorization included.
	Header http.Header
	// Body is the whole request body.
	Body []byte
	// Model, Stream and IncludeUsage are read from a JSON body, for
	// convenience; they are zero when the body is not JSON.
	Model        string
	Stream       bool
	IncludeUsage bool // stream_options.include_usage
}

// Server is the fake provider. Set its exported fields before it serves
// and do not change them after, except Behavior through SetBehavior. It is
// safe for concurrent use.
type Server struct {
	// APIKey, when set, is the key every request must carry as
	// "Authorization: Bearer <APIKey>". A request without it gets a 401
	// OpenAI-style error which, like OpenAI's, echoes the wrong key with
	// only its first 3 and last 4 characters shown (a key shorter than 8
	// characters is echoed whole), so that a gateway can be tested for not
	// passing the upstream's key back to its client.
	APIKey string
	// Models are the model ids GET /v1/models lists; empty means
	// gpt-4o-mini, gpt-4o and text-embedding-3-small. Completions and
	// embeddings accept any model whatever this list says.
	Models []string
	// KeepRequests bounds how many requests Requests returns: 0 keeps them
	// all, n > 0 the last n, and a negative value none, for benchmarks that
	// must not grow in memory. Count and Cancelled count every request.
	KeepRequests int
	// Behavior is how the server answers for models without their own (see
	// SetModelBehavior), and for GET /v1/models. Once the server serves,
	// change it with SetBehavior.
	Behavior Behavior

	mu        sync.Mutex
	perModel  map[string]Behavior
	requests  []Request
	count     int
	cancelled int
	active    int
}

// SetBehavior changes how the server answers for every model that has no
// behavior of its own.
func (s *Server) SetBehavior(b Behavior) {
	s.mu.Lock()
	s.Behavior = b
	s.mu.Unlock()
}

// SetModelBehavior makes the server answer requests for model (the "model"
// of a completion or embedding request) with b instead of the server-wide
// Behavior; b replaces that whole behavior, it is not merged with it.
func (s *Server) SetModelBehavior(model string, b Behavior) {
	s.mu.Lock()
	if s.perModel == nil {
		s.perModel = make(map[string]Behavior)
	}
	s.perModel[model] = b
	s.mu.Unlock()
}

// ClearModelBehavior makes requests for model follow the server-wide
// Behavior again.
func (s *Server) ClearModelBehavior(model string) {
	s.mu.Lock()
	delete(s.perModel, model)
	s.mu.Unlock()
}

// behaviorFor is how x, a request for model, is answered.
func (s *Server) behaviorFor(x *exchange, model string) Behavior {
	s.mu.Lock()
	b, ok := s.perModel[model]
	if !ok {
		b = s.Behavior
	}
	s.mu.Unlock()
	if b.Chunks <= 0 {
		b.Chunks = DefaultChunks
	}
	x.buffered = b.Buffered
	return b
}

// Requests returns the recorded requests, oldest first. They share their
// headers and bodies with the server's record: do not modify them.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// LastRequest returns the latest recorded request, and false when there is
// none.
func (s *Server) LastRequest() (Request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return Request{}, false
	}
	return s.requests[len(s.requests)-1], true
}

// Count returns how many requests the server has received, whatever became
// of them.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Cancelled returns how many requests ended because the client went away
// (its request's context was done, or a write to it failed) before the reply
// was complete. A request is counted when its handler returns, which may be a
// little after the client left: poll for it.
func (s *Server) Cancelled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancelled
}

// Active returns how many requests are being answered now.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// Reset forgets the recorded requests and zeroes Count and Cancelled, so that
// one server can serve several subtests. Behaviors are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	s.requests = nil
	s.count = 0
	s.cancelled = 0
	s.mu.Unlock()
}

func (s *Server) record(r *http.Request, body []byte, req *apiRequest) {
	s.keep(Request{
		Time:         time.Now(),
		Method:       r.Method,
		Path:         r.URL.Path,
		RawQuery:     r.URL.RawQuery,
		Host:         r.Host,
		Header:       r.Header.Clone(),
		Body:         body,
		Model:        req.Model,
		Stream:       req.Stream,
		IncludeUsage: req.includeUsage(),
	})
}

// keep records a request and counts it as active until finish.
func (s *Server) keep(rec Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	s.active++
	if s.KeepRequests < 0 {
		return
	}
	s.requests = append(s.requests, rec)
	if s.KeepRequests > 0 && len(s.requests) > s.KeepRequests {
		// Re-slicing keeps memory bounded: append copies only the live tail
		// when it outgrows the backing array.
		s.requests = s.requests[len(s.requests)-s.KeepRequests:]
	}
}

func (s *Server) finish(x *exchange) {
	s.mu.Lock()
	s.active--
	if x.gone {
		s.cancelled++
	}
	s.mu.Unlock()
}

// ServeHTTP answers one OpenAI API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{w: w, r: r, rc: http.NewResponseController(w)}
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if api := providerAPI(r.URL.Path); api != nil {
		// Anthropic's, Gemini's and Azure's APIs, each in its own file.
		defer s.finish(x)
		api(s, x, body, readErr)
		return
	}
	var req apiRequest
	parseErr := readErr
	if readErr == nil && len(body) > 0 {
		parseErr = json.Unmarshal(body, &req)
	}
	s.record(r, body, &req)
	defer s.finish(x)

	ep, id := route(r.URL.Path)
	switch {
	case ep == nil:
		x.fail(errInvalidURL(r))
		return
	case r.Method != ep.method:
		x.fail(errMethod(r))
		return
	}
	if e := s.checkKey(r); e != nil {
		x.fail(e)
		return
	}
	s.serveOpenAI(x, ep, id, &req, readErr, parseErr)
}

// serveOpenAI answers an authenticated request of the OpenAI API, on
// OpenAI's paths or an Azure deployment's.
func (s *Server) serveOpenAI(x *exchange, ep *endpoint, id string, req *apiRequest, readErr, parseErr error) {
	if ep.method == http.MethodPost {
		if e := validate(ep, req, readErr, parseErr); e != nil {
			x.fail(e)
			return
		}
	}
	b := s.behaviorFor(x, req.Model)
	if !x.sleep(b.Latency) {
		return
	}
	if b.Status >= 400 || b.ErrorBody != "" {
		x.failAs(b, req.Model)
		return
	}
	ep.serve(s, x, req, b, id)
}
