package fakellm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// exchange is one request being answered.
type exchange struct {
	w  http.ResponseWriter
	r  *http.Request
	rc *http.ResponseController
	// gone records that the client left before the reply was complete.
	gone bool
	// buffered leaves events in the response's buffer (Behavior.Buffered)
	// until the next pause, and pending says a flush waits for it.
	buffered, pending bool
}

// sleep pauses for d, and reports false, the client being gone, if the
// request is cancelled first.
func (x *exchange) sleep(d time.Duration) bool {
	done := x.r.Context().Done()
	if d > 0 && x.pending && !x.flushNow() {
		return false
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-done:
		}
	}
	if x.r.Context().Err() != nil {
		x.gone = true
		return false
	}
	return true
}

func (x *exchange) write(p []byte) bool {
	x.pending = x.buffered
	if _, err := x.w.Write(p); err != nil {
		x.gone = true
		return false
	}
	return true
}

// flush sends what was written at once, or with Behavior.Buffered before
// the next pause.
func (x *exchange) flush() bool {
	if x.buffered {
		x.pending = true
		return true
	}
	return x.flushNow()
}

func (x *exchange) flushNow() bool {
	x.pending = false
	if err := x.rc.Flush(); err != nil {
		x.gone = true
		return false
	}
	return true
}

// event sends v as one server-sent event, at once unless Buffered.
func (x *exchange) event(v any) bool {
	if x.r.Context().Err() != nil {
		x.gone = true
		return false
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the server's own types always marshal
	}
	p := make([]byte, 0, len(b)+8)
	p = append(p, "data: "...)
	p = append(p, b...)
	p = append(p, "\n\n"...)
	return x.write(p) && x.flush()
}

// abort drops the connection as a failing upstream would: net/http closes it
// (HTTP/1) or resets the stream (HTTP/2) without ending the response.
func (x *exchange) abort() {
	panic(http.ErrAbortHandler)
}

func (x *exchange) send(status int, body []byte) {
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	x.w.WriteHeader(status)
	x.write(body)
}

func (x *exchange) reply(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the server's own types always marshal
	}
	x.send(http.StatusOK, b)
}

func (x *exchange) fail(e *apiError) {
	b, err := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{e})
	if err != nil {
		panic(err)
	}
	x.send(e.status, b)
}

// failAs answers with the error a Behavior asks for.
func (x *exchange) failAs(b Behavior, model string) {
	status := b.Status
	if status < 400 {
		status = http.StatusInternalServerError
	}
	for name, value := range b.Header {
		x.w.Header().Set(name, value)
	}
	if b.ErrorBody != "" {
		x.send(status, []byte(b.ErrorBody))
		return
	}
	x.fail(errorFor(status, model))
}

// apiError is an error in OpenAI's shape, which always has param and code,
// null when they do not apply.
type apiError struct {
	status  int
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func invalidParam(param, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, Message: msg, Type: "invalid_request_error", Param: &param}
}

func modelNotFound(model string) *apiError {
	code := "model_not_found"
	return &apiError{
		status:  http.StatusNotFound,
		Message: "The model `" + model + "` does not exist or you do not have access to it.",
		Type:    "invalid_request_error",
		Code:    &code,
	}
}

func errInvalidURL(r *http.Request) *apiError {
	return &apiError{status: http.StatusNotFound, Message: "Invalid URL (" + r.Method + " " + r.URL.Path + ")", Type: "invalid_request_error"}
}

func errMethod(r *http.Request) *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, Message: "Invalid method for URL (" + r.Method + " " + r.URL.Path + ")", Type: "invalid_request_error"}
}

// errorFor is the error OpenAI answers with the given status, or one like it.
func errorFor(status int, model string) *apiError {
	e := &apiError{status: status, Message: http.StatusText(status) + ".", Type: "invalid_request_error"}
	code := func(c string) *string { return &c }
	switch {
	case status == http.StatusUnauthorized:
		e.Message, e.Code = "Incorrect API key provided.", code("invalid_api_key")
	case status == http.StatusNotFound:
		return modelNotFound(model)
	case status == http.StatusTooManyRequests:
		e.Message = "Rate limit reached for " + model + " on requests per min (RPM): Limit 1, Used 1, Requested 1. Please try again in 1s."
		e.Type, e.Code = "requests", code("rate_limit_exceeded")
	case status == http.StatusServiceUnavailable:
		e.Message, e.Type = "The engine is currently overloaded, please try again later.", "server_error"
	case status >= 500:
		e.Message, e.Type = "The server had an error while processing your request. Sorry about that!", "server_error"
	}
	return e
}

// checkKey checks the request's bearer key against APIKey.
func (s *Server) checkKey(r *http.Request) *apiError {
	if s.APIKey == "" {
		return nil
	}
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	var key string
	if len(auth) > len(prefix) && strings.EqualFold(auth[:len(prefix)], prefix) {
		key = strings.TrimSpace(auth[len(prefix):])
	}
	if key == s.APIKey {
		return nil
	}
	if key == "" {
		return &apiError{
			status:  http.StatusUnauthorized,
			Message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
			Type:    "invalid_request_error",
		}
	}
	code := "invalid_api_key"
	return &apiError{
		status:  http.StatusUnauthorized,
		Message: "Incorrect API key provided: " + maskKey(key) + ". You can find your API key at https://platform.openai.com/account/api-keys.",
		Type:    "invalid_request_error",
		Code:    &code,
	}
}

// maskKey shows a key as OpenAI's errors do: its first 3 and last 4
// characters, stars between. Short keys are shown whole, as there would be
// nothing left to hide.
func maskKey(key string) string {
	if len(key) < 8 {
		return key
	}
	return key[:3] + strings.Repeat("*", len(key)-7) + key[len(key)-4:]
}
