package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// Endpoint names an API a client calls.
type Endpoint string

// The endpoints the gateway serves.
const (
	EndpointChat        Endpoint = "chat.completions"
	EndpointCompletions Endpoint = "completions"
	EndpointEmbeddings  Endpoint = "embeddings"
	EndpointModels      Endpoint = "models"
	// EndpointMessages is Anthropic's Messages API, /v1/messages.
	EndpointMessages Endpoint = "messages"
	// EndpointCountTokens is Anthropic's /v1/messages/count_tokens.
	EndpointCountTokens Endpoint = "messages.count_tokens"
	// EndpointResponses is OpenAI's Responses API, /v1/responses.
	EndpointResponses Endpoint = "responses"
)

// API returns the client API the endpoint belongs to, "" for none.
func (e Endpoint) API() API {
	switch e {
	case EndpointChat:
		return APIOpenAIChat
	case EndpointCompletions:
		return APIOpenAICompletions
	case EndpointEmbeddings:
		return APIOpenAIEmbeddings
	case EndpointModels:
		return APIOpenAIModels
	case EndpointResponses:
		return APIOpenAIResponses
	case EndpointMessages, EndpointCountTokens:
		return APIAnthropicMessages
	}
	return ""
}

// EndpointOf returns the endpoint a request path calls, "" for none. Paths
// are matched by their ending, so that the API can sit under any prefix
// (/v1/chat/completions, /openai/v1/chat/completions, ...); a query string
// is not part of the path. /models/{model} is EndpointModels.
func EndpointOf(path string) Endpoint {
	path = strings.TrimRight(path, "/")
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return EndpointChat
	case strings.HasSuffix(path, "/completions"):
		return EndpointCompletions
	case strings.HasSuffix(path, "/embeddings"):
		return EndpointEmbeddings
	case strings.HasSuffix(path, "/messages/count_tokens"):
		return EndpointCountTokens
	case strings.HasSuffix(path, "/messages"):
		return EndpointMessages
	case strings.HasSuffix(path, "/responses"):
		return EndpointResponses
	case strings.HasSuffix(path, "/models"):
		return EndpointModels
	}
	// Model names may hold slashes (meta-llama/Llama-3.1-8B), so the model
	// is everything after the first /models/.
	if _, id, ok := strings.Cut(path, "/models/"); ok && id != "" {
		return EndpointModels
	}
	return ""
}

// APIOf returns the client API a request path belongs to, "" for none: the
// API whose format the gateway answers in, errors included.
func APIOf(path string) API { return EndpointOf(path).API() }

// DefaultMaxBodySize is the request body limit when a handler sets none.
const DefaultMaxBodySize = 32 << 20

// Request is a client's JSON request body as the gateway read it. Only the
// top-level fields the gateway acts on are decoded; the rest of the body is
// left as it came, so that an upstream speaking the client's API gets it
// byte for byte, with at most a few fields patched (see Span).
type Request struct {
	// Body is the whole request body.
	Body []byte
	// Model is the top-level "model" field.
	Model string
	// Stream is the top-level "stream" field.
	Stream bool
	// IncludeUsage is "stream_options.include_usage": whether the client
	// asked for the usage chunk at the end of a stream.
	IncludeUsage bool

	// ModelSpan and StreamOptionsSpan locate those fields' values in Body;
	// a zero Span means the field is absent.
	ModelSpan, StreamOptionsSpan Span
}

// Span is the byte range [Start, End) of a value in a body.
type Span struct{ Start, End int }

// IsZero reports whether the span locates nothing.
func (s Span) IsZero() bool { return s.End == 0 }

// ReadRequest reads the request body once, at most limit bytes, and parses
// its top-level fields. The body stays readable for handlers further down the
// chain, and later calls return the same Request. The errors are ready to
// send: 413 over the limit, 400 for a body that is not a JSON object or
// whose model or stream field has the wrong type.
func ReadRequest(r *http.Request, limit int64) (*Request, *Error) {
	if limit <= 0 {
		limit = DefaultMaxBodySize
	}
	c := CallFrom(r)
	if c.Request != nil {
		if int64(len(c.Request.Body)) > limit {
			return nil, tooLarge(limit)
		}
		return c.Request, nil
	}
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= limit {
		// The length is known: one allocation, not io.ReadAll's doublings
		// (a coding agent's 200 KB body would take ten, and twice its size
		// in garbage). net/http ends the body at Content-Length.
		body = make([]byte, n)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = ReadAll(r.Body, limit)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.Is(err, ErrTooLarge) {
			return nil, tooLarge(limit)
		} else if errors.As(err, &mbe) {
			return nil, tooLarge(mbe.Limit)
		}
		return nil, Errorf(http.StatusBadRequest, TypeInvalidRequest, "body_unreadable", "could not read the request body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	req, perr := ParseRequest(body)
	if perr != nil {
		return nil, perr
	}
	c.Request = req
	c.Model = req.Model
	c.Stream = req.Stream
	return req, nil
}

// ErrTooLarge is returned by ReadAll for a body over its limit.
var ErrTooLarge = errors.New("body too large")

// ReadAll reads body whole, failing with ErrTooLarge beyond limit bytes.
func ReadAll(body io.Reader, limit int64) ([]byte, error) {
	if body == nil || body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrTooLarge
	}
	return b, nil
}

func tooLarge(limit int64) *Error {
	return Errorf(http.StatusRequestEntityTooLarge, TypeInvalidRequest, "request_too_large",
		"the request body is larger than the gateway's limit of %d bytes", limit)
}

// ParseRequest parses the top-level fields of a JSON request body. A body
// that repeats the model, stream or stream_options key is refused: JSON
// parsers disagree on which copy wins, so an upstream could serve a model
// other than the one the gateway checked the key's scope against.
func ParseRequest(body []byte) (*Request, *Error) {
	req := &Request{Body: body}
	var seen struct{ model, stream, options bool }
	once := func(field string, seen *bool) error {
		if *seen {
			return &fieldError{field, "appears more than once; send each top-level key once"}
		}
		*seen = true
		return nil
	}
	err := ScanObject(body, func(key []byte, v Span) error {
		val := body[v.Start:v.End]
		switch string(key) {
		case "model":
			if err := once("model", &seen.model); err != nil {
				return err
			}
			if val[0] != '"' {
				return &fieldError{"model", "must be a string"}
			}
			m, err := Unquote(val)
			if err != nil {
				return err
			}
			req.Model, req.ModelSpan = m, v
		case "stream":
			if err := once("stream", &seen.stream); err != nil {
				return err
			}
			switch string(val) {
			case "true":
				req.Stream = true
			case "false", "null":
				req.Stream = false
			default:
				return &fieldError{"stream", "must be true or false"}
			}
		case "stream_options":
			if err := once("stream_options", &seen.options); err != nil {
				return err
			}
			req.StreamOptionsSpan = v
			if val[0] == 'n' {
				return nil
			}
			var so struct {
				IncludeUsage *bool `json:"include_usage"`
			}
			if err := json.Unmarshal(val, &so); err != nil {
				return &fieldError{"stream_options", "must be an object"}
			}
			req.IncludeUsage = so.IncludeUsage != nil && *so.IncludeUsage
		}
		return nil
	})
	if err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			e := Errorf(http.StatusBadRequest, TypeInvalidRequest, "invalid_value", "'%s' %s", fe.field, fe.problem)
			e.Param = fe.field
			return nil, e
		}
		return nil, Errorf(http.StatusBadRequest, TypeInvalidRequest, "invalid_json", "the request body is not a valid JSON object: %v", err)
	}
	return req, nil
}

type fieldError struct{ field, problem string }

func (e *fieldError) Error() string { return e.field + " " + e.problem }

// Unquote returns the text of a JSON string literal s (quotes included),
// without decoding when it holds no escapes.
func Unquote(s []byte) (string, error) {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s[1 : len(s)-1]), nil
	}
	var out string
	err := json.Unmarshal(s, &out)
	return out, err
}
