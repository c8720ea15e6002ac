package fakellm

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// providerHandler answers one request of a provider API other than
// OpenAI's own (anthropic.go, gemini.go, azure.go), and OpenAI's
// Responses API (responses.go). It records the request
// itself, since each API names its model in its own place.
type providerHandler func(s *Server, x *exchange, body []byte, readErr error)

// providerAPI finds the handler of a path that belongs to Anthropic's,
// Gemini's or Azure OpenAI's API, or nil for the OpenAI paths.
func providerAPI(path string) providerHandler {
	switch {
	case path == "/v1/messages" || path == "/messages":
		return serveAnthropic
	case path == "/v1/messages/count_tokens" || path == "/messages/count_tokens":
		return serveAnthropicCount
	case path == "/v1/responses" || path == "/responses":
		return serveResponses
	case strings.HasPrefix(path, "/v1beta/models/") || strings.HasPrefix(path, "/v1/models/") && strings.Contains(path, ":"):
		return serveGemini
	case strings.HasPrefix(strings.TrimPrefix(path, "/v1"), "/openai/deployments/"):
		// Under /v1 too, for gateways configured with an OpenAI-style
		// base URL.
		return serveAzure
	}
	return nil
}

func (s *Server) recordAs(x *exchange, body []byte, model string, stream bool) {
	s.keep(Request{
		Time:     time.Now(),
		Method:   x.r.Method,
		Path:     x.r.URL.Path,
		RawQuery: x.r.URL.RawQuery,
		Host:     x.r.Host,
		Header:   x.r.Header.Clone(),
		Body:     body,
		Model:    model,
		Stream:   stream,
	})
}

// readError says why a body could not be read, as a status and message.
func readError(err error) (int, string) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge, "Request body too large."
	}
	return http.StatusBadRequest, "Could not read the request body: " + err.Error()
}

// plan is what a reply says: its content pieces, why it ends, and the stop
// sequence that ended it, if one did.
type plan struct {
	pieces  []string
	finish  string // "stop", "length" or "stop_sequence"
	stopSeq string
}

// planReply lays out a reply of b.Chunks pieces (fewer when maxTokens is
// lower), cut before the first of the stop sequences that the text comes
// to contain, as a model stops on one.
func planReply(b Behavior, maxTokens int, stops []string) plan {
	n, finish := b.Chunks, "stop"
	if maxTokens > 0 && maxTokens < n {
		n, finish = maxTokens, "length"
	}
	p := plan{finish: finish}
	var text strings.Builder
	for i := range n {
		piece := piece(i)
		before := text.Len()
		text.WriteString(piece)
		for _, s := range stops {
			if s == "" {
				continue
			}
			if at := strings.Index(text.String(), s); at >= 0 {
				if at > before {
					p.pieces = append(p.pieces, text.String()[before:at])
				}
				p.finish, p.stopSeq = "stop_sequence", s
				return p
			}
		}
		p.pieces = append(p.pieces, piece)
	}
	return p
}

func (p plan) text() string { return strings.Join(p.pieces, "") }

// words counts the whitespace-separated words of texts, the fake's token
// count.
func words(texts ...string) int {
	n := 0
	for _, t := range texts {
		n += len(strings.Fields(t))
	}
	return n
}

// toolFor is the tool call a reply makes, if any: b scripts one, the
// request offers tools, and its last turn is not a tool result.
func toolFor(b Behavior, tools []string, answered bool) (name, args string, ok bool) {
	if b.ToolCall == nil || len(tools) == 0 || answered {
		return "", "", false
	}
	name, args = b.ToolCall.Name, b.ToolCall.Arguments
	if name == "" {
		name = tools[0]
	}
	if args == "" {
		args = "{}"
	}
	return name, args, true
}
