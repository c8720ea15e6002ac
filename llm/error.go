package llm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Error is an error the gateway answers a client with, written in the
// OpenAI error shape: {"error":{"message":...,"type":...,"code":...}}.
type Error struct {
	// Status is the HTTP status of the response.
	Status int `json:"-"`
	// Message says what went wrong and, where it can, what to do about it.
	Message string `json:"message"`
	// Type is the OpenAI error type, e.g. "invalid_request_error".
	Type string `json:"type"`
	// Code is a stable, machine-readable code, e.g. "model_not_found".
	Code string `json:"code,omitempty"`
	// Param names the request field at fault, if any.
	Param string `json:"param,omitempty"`
}

// Error types, as OpenAI names them where OpenAI has a name for the case.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeUpstream       = "upstream_error"
	TypeServer         = "server_error"
)

// Errorf returns an Error with a formatted message.
func Errorf(status int, typ, code, format string, args ...any) *Error {
	return &Error{Status: status, Type: typ, Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	return strconv.Itoa(e.Status) + " " + e.Code + ": " + e.Message
}

// JSON returns the error's response body.
func (e *Error) JSON() []byte {
	b, _ := json.Marshal(struct {
		Error *Error `json:"error"`
	}{e})
	return b
}

// Write sends the error to the client in the format of the client's API
// (the Call's, told by the request's path: an Anthropic Messages client
// gets Anthropic's error shape), and records it in the request's Call.
func (e *Error) Write(w http.ResponseWriter, r *http.Request) {
	c := CallFrom(r)
	var status int
	var body []byte
	if enc := errorEncoders[c.API]; enc != nil {
		status, body = enc(e)
	} else {
		status, body = e.Status, e.JSON()
	}
	c.Status = status
	c.Error = e.Message
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ErrorEncoder writes an error as one client API has it: the status and
// the body.
type ErrorEncoder func(e *Error) (status int, body []byte)

// errorEncoders are the error formats of the APIs whose errors are not
// OpenAI's. They are registered at init time and only read after.
var errorEncoders = map[API]ErrorEncoder{}

// RegisterErrorEncoder makes Error.Write answer clients of api in enc's
// format. The package of an API's wire format registers it when imported
// (wire/anthropic does for Anthropic's Messages API), since that package
// imports this one. Call it only from an init function.
func RegisterErrorEncoder(api API, enc ErrorEncoder) { errorEncoders[api] = enc }

// ErrMissingModel is the error for a request body without a model.
func ErrMissingModel() *Error {
	e := Errorf(http.StatusBadRequest, TypeInvalidRequest, "missing_model", "the request body has no 'model' field; name the model to use")
	e.Param = "model"
	return e
}
